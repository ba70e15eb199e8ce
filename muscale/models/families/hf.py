"""Hugging Face architectures as families: `hf:MODEL_TYPE` (llama, qwen2, gpt2, …) at random init.

`AutoConfig.for_model` gives the architecture's own defaults and `from_config` the model,
so nothing is downloaded. Width rules follow the built-in transformer: hidden size = d, the
MLP's size the config's own ratio × d, the head count fixed (head_dim grows with d).

μP needs two changes that muscale can make from outside: the head becomes a `MuReadout`, and
the attention logits are scaled by 1/head_dim through the attention module's own `scaling`
attribute, which the model passes to its attention function at every call. The hidden
matrices, which Hugging Face initialises at one std whatever their fan-in, are scaled by
sqrt(base_width / d) so their std goes like 1/sqrt(fan_in) and equals the model's own at the
base width. A model type whose attention has no such attribute, or does not use
1/sqrt(head_dim), is refused under μP in one line.

The QK logits are measured through an attention function registered with transformers,
which hands the query and key (after rotary) to a `QKLogits` probe point of each attention
module and then runs the model's own SDPA attention unchanged."""

import ast
import math

import torch
import transformers
from mup import MuReadout
from torch import nn
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ...errors import InputError
from ..points import QKLogits

transformers.logging.set_verbosity_error()

HEADS, LAYERS = 4, 2  # as the built-in transformer: a coordinate check needs width, not depth
# muscale's own options; every other option names a config field.
OPTIONS = {"layers": "num_hidden_layers", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads"}
WIDTH_RULES = (
    "hidden_size = d; MLP size = mlp_ratio · d (default: the config's own ratio); heads fixed "
    "(default 4), head_dim = d / heads; 2 layers unless layers=N; vocab = the data's; dropout 0, "
    "untied head, no KV cache"
)
ATTENTION = "muscale"


def _attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    qk = getattr(module, "qk", None)
    if qk is not None:
        qk.scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        qk(query, key)
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)


AttentionInterface.register(ATTENTION, _attention)


def _config(model_type: str):
    try:
        return AutoConfig.for_model(model_type)
    except ValueError:
        raise InputError(
            "--family",
            f"transformers knows no model type '{model_type}'",
            "use a model type such as hf:llama, hf:qwen2 or hf:gpt2",
        ) from None


def _number(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _value(config, field: str, text):
    """An option's text as the type of the config field's default (a number where it has none)."""
    default = getattr(config, field)
    try:
        if isinstance(default, bool):
            return str(text).lower() in ("1", "true", "yes", "on")
        if default is None:
            return _number(str(text))
        return type(default)(text) if isinstance(default, int | float) else text
    except ValueError:
        raise InputError(
            "--option",
            f"{field}={text!r} is not a {type(default).__name__}",
            f"give {field} a {type(default).__name__} value",
        ) from None


def config(model_type: str, width: int, vocab: int, options: dict):
    """The config at `width` with the user's options; unknown fields are refused by name."""
    default = _config(model_type)
    fields = {OPTIONS.get(k, k): v for k, v in options.items() if k not in ("mlp_ratio", "attn_scale")}
    unknown = sorted(f for f in fields if not hasattr(default, f))
    if unknown:
        raise InputError(
            "--option",
            f"hf:{model_type}'s config has no field {', '.join(unknown)}",
            "use layers, heads, kv_heads, mlp_ratio, attn_scale=model or a field of its config",
        )
    mlp_field = "intermediate_size" if hasattr(default, "intermediate_size") else "n_inner"
    own_mlp = getattr(default, mlp_field, None) or 4 * default.hidden_size
    ratio = float(options.get("mlp_ratio", own_mlp / default.hidden_size))
    heads = int(fields.get("num_attention_heads", HEADS))
    values = {
        "hidden_size": width,
        mlp_field: int(ratio * width),
        "num_attention_heads": heads,
        "num_hidden_layers": LAYERS,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "use_cache": False,
    }
    if hasattr(default, "num_key_value_heads"):
        values["num_key_value_heads"] = heads
    if hasattr(default, "head_dim"):
        values["head_dim"] = width // heads
    # Dropout would make a coordinate check measure noise; token ids must lie in the data's vocabulary.
    values |= {
        f: 0.0 for f, v in default.to_dict().items() if ("dropout" in f or "pdrop" in f) and isinstance(v, float)
    }
    values |= {
        f: None
        for f in ("bos_token_id", "eos_token_id", "pad_token_id")
        if isinstance(getattr(default, f, None), int) and getattr(default, f) >= vocab
    }
    values |= {f: _value(default, f, v) for f, v in fields.items() if f != "num_attention_heads"}
    return AutoConfig.for_model(model_type, **values)


def known(model_type: str) -> None:
    """Raise, in one line, unless transformers knows `model_type`."""
    _config(model_type)


def check_width(model_type: str, width: int, options: dict) -> str | None:
    heads = int(options.get("heads", HEADS))
    kv = int(options.get("kv_heads", heads))
    if width % heads:
        return f"width {width} is not divisible by heads={heads}"
    if heads % kv:
        return f"heads={heads} is not divisible by kv_heads={kv}"
    return None


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "scaling", None), float) and isinstance(getattr(m, "head_dim", None), int)
    ]


def build(model_type: str, width: int, hooks, vocab: int, **options) -> nn.Module:
    if options.get("attn_scale", "model") != "model":
        raise InputError(
            "--option",
            f"attn_scale={options['attn_scale']!r} is not a choice",
            "give attn_scale=model to keep the model's own 1/sqrt(head_dim) under μP, or drop it",
        )
    cfg = config(model_type, width, vocab, options)
    try:
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=ATTENTION)
    except ValueError as exc:
        raise InputError(
            "--family",
            f"hf:{model_type} is not a causal LM transformers can build ({exc})",
            "use a decoder model type such as llama, qwen2 or gpt2",
        ) from None
    attention = _attention_modules(model)
    if hooks.base_width is not None:
        _make_mup(model, model_type, attention, hooks, width, vocab, options)
    for module in attention:
        module.qk = QKLogits(module.scaling)
    return model


def _make_mup(
    model: nn.Module, model_type: str, attention: list[nn.Module], hooks, width: int, vocab: int, options: dict
):
    why = f"mode mup cannot make hf:{model_type} μP"
    if not attention:
        raise InputError(
            "--mode",
            f"{why}: its attention modules have no `scaling` attribute to set 1/head_dim",
            "use mode mup-lr, lrm or sp for this model type",
        )
    if any(not math.isclose(m.scaling, m.head_dim**-0.5) for m in attention):
        raise InputError(
            "--mode",
            f"{why}: its attention scale is not 1/sqrt(head_dim) (scaling "
            f"{attention[0].scaling:g} at head_dim {attention[0].head_dim})",
            "use mode mup-lr, lrm or sp, or the config's default attention scaling",
        )
    if "attn_scale" not in options:
        for module in attention:
            module.scaling = hooks.attn_scale(module.head_dim, width)
    head = model.get_output_embeddings()
    readout = hooks.readout(width, vocab)
    if not isinstance(readout, MuReadout) or head is None:
        raise InputError(
            "--mode",
            f"{why}: it has no output layer to swap for a MuReadout",
            "use mode mup-lr, lrm or sp for this model type",
        )
    with torch.no_grad():
        readout.weight.copy_(head.weight)
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if (
                module is not head
                and isinstance(weight, torch.Tensor)
                and weight.ndim == 2
                and not isinstance(module, nn.Embedding)
            ):
                weight.mul_(math.sqrt(hooks.base_width / width))
    model.set_output_embeddings(readout)
