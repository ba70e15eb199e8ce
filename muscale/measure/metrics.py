"""The metric table: every recorded statistic, what it is a statistic of, and its function."""

from collections.abc import Callable
from dataclasses import dataclass

import torch


def rms(t: torch.Tensor) -> torch.Tensor:
    return t.square().mean().sqrt()


@dataclass(frozen=True)
class Metric:
    """A recorded statistic: its group (the target whose collector records it), what it is a
    statistic of, and for a statistic of that one tensor its function. Where `fn` is None the
    metric needs more than the tensor (state kept between steps, the layer's input, a probe
    point's own measure), and its group's collector or the probe point computes it."""

    group: str  # activation, matrix, multiplier or optimizer
    of: str  # output, point, matrix, update, scalar, row, col, pair or optimizer
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None


VECTOR_STATISTICS = {"rms": rms, "mean": torch.mean, "min": torch.min, "max": torch.max}
# Every metric, as mup's FDICT holds its statistics: a new statistic of a layer's output, its
# matrix, its update or a multiplier vector is one row with its function.
METRIC_TABLE = {
    "act_l1": Metric("activation", "output", lambda y: y.abs().mean()),  # mean |y|, mup's l1
    "act_rms": Metric("activation", "output", rms),
    "dact_rms": Metric("activation", "output"),  # RMS of y_t − y_0 on the same batch
    "act_max": Metric("activation", "point"),  # largest |y| at a probe point (QK logits, SSM dt)
    "act_mean": Metric("activation", "point"),  # the SSM's mean dt
    "attn_entropy": Metric("activation", "point"),  # mean entropy of the causal attention rows
    # What a multiplied layer would output without its multiplier (x·Wᵀ with the trained W), and
    # the QK logits without the query's and key's scalars: raw ∝ d, multiplier ∝ d⁻¹, product flat.
    "raw_act_rms": Metric("activation", "output"),
    # What a residual block adds to the stream (its output less its input), and how that has
    # changed since step 0 on the same batch: per block, the size a depth rule scales by L^−α.
    "contrib_rms": Metric("activation", "block"),
    "dcontrib_rms": Metric("activation", "block"),
    # The part of the stream after a block that the blocks so far have added to the stream
    # entering the first: uncorrelated contributions make it grow like sqrt(L)·L^−α.
    "built_rms": Metric("activation", "block"),
    # CompleteP's laziness: a block's change since init less its linearisation in its own
    # parameters, relative to the change (laziness.py); Θ(1) for a block that learns features.
    "nonlin_rel": Metric("activation", "block"),
    "weight_fro": Metric("matrix", "matrix", torch.linalg.vector_norm),
    # ‖W‖_F / sqrt(numel): the per-entry size the noise–WD equilibrium fixes.
    "weight_rms": Metric("matrix", "matrix", lambda w: torch.linalg.vector_norm(w) / w.numel() ** 0.5),
    "weight_spec": Metric("matrix", "matrix"),  # σ₁(W): exact for thin matrices, else Lanczos, warm-started
    "spec_ratio": Metric("matrix", "matrix"),  # σ₁(W) / sqrt(fan_out / fan_in), flat under μP
    "update_fro": Metric("matrix", "update", torch.linalg.vector_norm),  # of the last optimizer step
    "update_spec": Metric("matrix", "update"),
    "mult_scalar": Metric("multiplier", "scalar"),
    # log(a/b) of a symmetric pair (symmetry.py) since step 0, and a·b, the one combination the
    # output sees.
    "mult_drift": Metric("multiplier", "pair"),
    "mult_path": Metric("multiplier", "pair"),
    # A vector multiplier's statistics by the layer's side: row scales its outputs, col its inputs.
    **{
        f"mult_{side}_{stat}": Metric("multiplier", side, fn)
        for side in ("row", "col")
        for stat, fn in VECTOR_STATISTICS.items()
    },
    # The last step's clip factor min(1, NORM/‖g‖) (module and role "optimizer"), and per layer
    # the share of entries where Adam's ε outweighs sqrt(v̂).
    "clip_factor": Metric("optimizer", "optimizer"),
    "eps_share": Metric("optimizer", "optimizer"),
}
METRICS = tuple(METRIC_TABLE)
# How one statistic measured on each process's share of a batch combines into the statistic
# of the whole batch (equal shares): an RMS from its mean square, a maximum as the largest,
# everything else (means, and the replicated weights' statistics) as the mean.
POOLED = {
    "act_rms": "rms",
    "dact_rms": "rms",
    "raw_act_rms": "rms",
    "contrib_rms": "rms",
    "dcontrib_rms": "rms",
    "built_rms": "rms",
    "act_max": "max",
}


def statistics(of: str, wanted: set[str]) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The wanted metrics that are one function of a tensor of kind `of`, in table order."""
    return [(m, d.fn) for m, d in METRIC_TABLE.items() if d.of == of and d.fn is not None and m in wanted]


def any_of(group: str, wanted: set[str]) -> bool:
    """Whether a metric of `group` is wanted: a collector with none costs nothing."""
    return any(d.group == group and m in wanted for m, d in METRIC_TABLE.items())
