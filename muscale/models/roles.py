"""What a layer is, from its name (built-in families name layers for this) or its type."""

import re

from mup import MuReadout
from torch import nn

from .points import ProbePoint

# Matched against the last one or two components of a module name, first match wins.
_BY_NAME = [
    (r"(^|\.)(embed|wte|tok_embeddings|embed_tokens|input)$", "embed"),
    (r"(^|\.)in_proj$", "ssm_in"),
    (r"(^|\.)dt_proj$", "ssm_dt_proj"),  # the SSM time step's own projection (Mamba2 here, Mamba's dt_proj)
    (r"mixer\.out_proj$|ssm\.out_proj$", "ssm_out"),
    (r"(^|\.)(q|q_proj|query|wq)$", "attn_q"),
    (r"(^|\.)(k|k_proj|key|wk)$", "attn_k"),
    (r"(^|\.)(v|v_proj|value|wv)$", "attn_v"),
    (r"(^|\.)(c_attn|qkv_proj|Wqkv|query_key_value)$", "attn_qkv"),  # q, k and v fused in one matrix
    (r"attn\.(o|c_proj|out_proj|wo)$|(^|\.)(o_proj|wo)$", "attn_out"),
    (r"(^|\.)(gate|gate_proj|w1)$", "mlp_gate"),
    (r"(^|\.)(up|up_proj|w3|fc1|c_fc)$", "mlp_up"),
    (r"(^|\.)(down|down_proj|w2|fc2)$|mlp\.c_proj$", "mlp_down"),
    (r"(^|\.)(head|lm_head|readout|classifier|output)$", "head"),
    (r"norm|(^|\.)ln", "norm"),
    (r"(^|\.)hidden\.\d+$", "hidden"),
]
# Every role, in layer order: what a study may name, and how reports order them.
ROLES = (
    "embed",
    "attn_q",
    "attn_k",
    "attn_qk",
    "attn_v",
    "attn_qkv",
    "attn_out",
    "ssm_in",
    "ssm_dt_proj",
    "ssm_dt",
    "ssm_out",
    "mlp_up",
    "mlp_gate",
    "mlp_down",
    "hidden",
    "block",  # a residual block as a whole (models/depth.py): its output is the residual stream
    "head",
    "norm",
    "other",
)
_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def is_conv1d(module: nn.Module) -> bool:
    """GPT-2's `Conv1D`: a linear layer whose weight is stored (fan_in, fan_out). Named, not
    imported, so that transformers stays an optional extra; looked up along the class's bases
    because a parametrized layer's class is a subclass (ParametrizedConv1D)."""
    return hasattr(module, "nf") and any(c.__name__ == "Conv1D" for c in type(module).__mro__)


def role_of(name: str, module: nn.Module) -> str:
    if isinstance(module, ProbePoint):
        return module.role
    for pattern, role in _BY_NAME:
        if re.search(pattern, name):
            return role
    if isinstance(module, MuReadout):
        return "head"
    if isinstance(module, nn.Embedding):
        return "embed"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, nn.Linear) or is_conv1d(module):
        return "hidden"
    return "other"
