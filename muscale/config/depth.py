"""Depth rules: how a parametrization scales with the number of blocks L.

Each residual branch is multiplied by m_L^−α, m_L = L / L_base, and the parameters inside
the blocks get the learning rate that keeps each block's update the size the rule wants
(Tensor Programs VI, arXiv 2310.02244; Bordelon et al., arXiv 2309.16620; CompleteP, Dey et
al., arXiv 2505.01618, whose reference code, EleutherAI nanoGPT-mup branch `completep`,
applies the same factors):

  branch output        × m_L^−α
  block matrices, norm gains and biases: Adam, AdamW, Muon lr × m_L^(α−1); SGD lr × m_L^(2α−1)
  Adam's ε on them     × m_L^−α (completep: their gradients shrink like the branch multiplier)
  embedding, final norm, head: unchanged; init: unchanged (the multiplier does the scaling)

Why these learning rates: under Adam a step moves every entry by about η whatever the
gradient's size, so a branch's output moves by m_L^−α·η; η ∝ m_L^(α−1) makes that m_L^−1,
and the L blocks together move the residual stream by Θ(1). SGD's step is η times the
gradient, which the multiplier scales by m_L^−α once more: η ∝ m_L^(2α−1). At α = 0 nothing
changes (`sp`); α = ½ is Depth-μP; α = 1 CompleteP, the one rule whose blocks stay non-lazy
as L grows. Weight decay is left as given: torch's decoupled decay η·λ then follows the
learning rate, as in the reference code."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DepthRule:
    """alpha: the branch exponent (None: the run's depth_alpha). eps: whether Adam's ε is scaled."""

    alpha: float | None
    eps: bool = False


DEPTH_TABLE = {
    "sp": DepthRule(0.0),
    "depth-mup": DepthRule(0.5),
    "completep": DepthRule(1.0, eps=True),
    "alpha": DepthRule(None),
}
DEPTH_PARAMS = tuple(DEPTH_TABLE)
# What each rule's exponent is called in messages: the inferred α is named by the nearest one.
NAMED_ALPHAS = {0.0: "sp", 0.5: "depth-mup", 1.0: "completep"}


def exponent(depth_param: str, depth_alpha: float | None) -> float:
    """α of a run's depth rule."""
    rule = DEPTH_TABLE[depth_param]
    return float(depth_alpha) if rule.alpha is None else rule.alpha


def scaled(depth_param: str) -> bool:
    """Whether the rule changes anything: `sp` leaves the model and the optimizer as they are."""
    return depth_param != "sp"


def ratio(depth: int, base_depth: int) -> float:
    """m_L."""
    return depth / base_depth


def branch_multiplier(depth_param: str, depth_alpha: float | None, depth: int, base_depth: int) -> float:
    return ratio(depth, base_depth) ** -exponent(depth_param, depth_alpha)


def lr_factor(depth_param: str, depth_alpha: float | None, depth: int, base_depth: int, optimizer: str) -> float:
    """The learning-rate factor of the parameters inside the blocks."""
    a = exponent(depth_param, depth_alpha)
    return ratio(depth, base_depth) ** ((2 * a - 1) if optimizer == "sgd" else (a - 1))


def eps_factor(depth_param: str, depth_alpha: float | None, depth: int, base_depth: int) -> float:
    """Adam's ε factor inside the blocks: m_L^−α where the rule scales ε, else 1."""
    if not DEPTH_TABLE[depth_param].eps:
        return 1.0
    return branch_multiplier(depth_param, depth_alpha, depth, base_depth)


def label(depth_param: str, depth_alpha: float | None) -> str:
    """A rule as records name it: its name, or alpha=A for a general one."""
    return f"alpha={depth_alpha:g}" if DEPTH_TABLE[depth_param].alpha is None else depth_param


def exponent_of(rule: str | None) -> float | None:
    """α of a rule as records name it; None for a rule muscale does not know (a recorder's label)."""
    if rule is None:
        return None
    if rule.startswith("alpha="):
        return float(rule.partition("=")[2])
    known = DEPTH_TABLE.get(rule)
    return None if known is None or known.alpha is None else known.alpha


def named(alpha: float) -> str:
    """The rule nearest to an inferred α, by name."""
    return NAMED_ALPHAS[min(NAMED_ALPHAS, key=lambda a: abs(a - alpha))]
