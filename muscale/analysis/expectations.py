"""What theory says each exponent should be: μP's Θ(1) promise on the short horizon and the
learnable-multiplier claims on the long one. Kept apart from the fitting so that a claim is
changed in one place and the fit stays a measurement."""

from ..config.depth import exponent_of
from ..config.spec import LONG_MODES

ACT = ("act_l1", "act_rms")

# μP's promise (DESIGN.md, fact 1): activations and their change since init stay Θ(1).
# dact_rms gets a wider band: at finite width the first Adam steps make it drift slightly.
TOLERANCE = {"act_l1": 0.15, "act_rms": 0.15, "dact_rms": 0.35}

# The learnable-multiplier claims (arXiv 2601.04890; DESIGN.md, fact 5), judged at the last
# step of a long horizon once settled: what the loss sees is flat (the head's logits, the QK
# logits), AdamW's equilibrium fixes every matrix's per-entry size (weight_rms flat), so the
# head's multiplier learns d⁻¹ (its raw output grows like d once W is aligned with its
# input). The QK logits are raw × s_q·s_k exactly, so "flat" already says that the QK product
# learns minus the raw logits' exponent (fit.py judges the logits, not the product too). Where
# the head's multiplier trades its scale with the gain of the norm in front of it, only their
# product along the path (mult_path) is seen. The head's output is judged by act_rms alone:
# act_l1 measures the same size.
# Tolerances: ±0.15 as for μP's activations; ±0.25 on the multiplier, whose exponent comes
# from raw ∝ d reached only once W is aligned (the head-only reference: −0.92 over 16…256).
LRM_CLAIMS = {
    ("head", "act_rms"): (0.0, 0.15),
    ("attn_qk", "act_rms"): (0.0, 0.15),
    ("head", "mult_scalar"): (-1.0, 0.25),
    ("head", "mult_row_rms"): (-1.0, 0.25),
    ("head", "mult_path"): (-1.0, 0.25),
}
WEIGHT_RMS = (0.0, 0.15)


def expectation(mode: str, role: str, metric: str) -> tuple[float | None, float | None]:
    """Expected α and tolerance, or (None, None) where theory makes no claim here."""
    if mode in LONG_MODES:
        if metric == "weight_rms" and role not in ("loss", "norm"):
            return WEIGHT_RMS
        return LRM_CLAIMS.get((role, metric), (None, None))
    if mode not in ("mup", "mup+lrm") or role == "loss" or metric not in TOLERANCE:
        return None, None
    if role == "head" and metric in ACT:
        return None, None  # μP readout logits start at Θ(1/d) and grow to Θ(1) as training moves them
    if role == "attn_qk" and metric in ACT:
        return (
            None,
            None,
        )  # under 1/head_dim attention the logits at init shrink like d^(-1/2); their change is the claim
    return 0.0, TOLERANCE[metric]


# Depth theory at init (config/depth.py), for a rule with branch exponent α, blocks compared
# by position (positions.py). Each pre-norm block reads a normalised stream, so what it adds,
# m_L^−α times a branch output of depth-free size, shrinks like L^−α exactly (contrib_rms).
# The L blocks' weights are independent, so their contributions are uncorrelated and the part
# of the stream they build grows like sqrt(L)·L^−α (built_rms, at the last block: L^½ under sp).
# Under depth-μP and CompleteP the whole stream (act_rms of a block) stays flat; under sp it
# grows toward L^½ only once the blocks' part outweighs the embedding, so no number is claimed.
DEPTH_TOLERANCE = 0.15


# After init, CompleteP's laziness (laziness.py): a block's nonlinear share of its change
# follows the size of its parameters' step, which the rule's learning rate sets to m_L^(α−1)
# under Adam (and under SGD, whose m_L^(2α−1) meets gradients shrunk by m_L^−α): β = α − 1,
# flat under CompleteP, L^−½ under depth-μP; `sp` scales no learning rate, so β = 0 there.


def depth_expectation(row: dict) -> tuple[float | None, float | None]:
    """Expected β in value ∝ L^β and tolerance for a depth fit's row, or (None, None)."""
    alpha = exponent_of(row.get("depth_rule"))
    if alpha is None or row["role"] != "block":
        return None, None
    if row["metric"] == "nonlin_rel":
        return (alpha - 1 if alpha > 0 else 0.0), DEPTH_TOLERANCE
    if row["step"] != 0:
        return None, None
    last = row["module"].rsplit(".", 1)[-1] == "last"
    if row["metric"] == "contrib_rms":
        return -alpha, DEPTH_TOLERANCE
    if row["metric"] == "built_rms" and last:
        return 0.5 - alpha, DEPTH_TOLERANCE
    if row["metric"] == "act_rms" and last and alpha >= 0.5:
        return 0.0, DEPTH_TOLERANCE
    return None, None
