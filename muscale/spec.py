"""Run specs: plain, picklable data that fully determines one run, seed included."""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

OPTIMIZERS = ("adam", "adamw", "sgd", "muon")
# torch.optim.Muon's learning-rate adjustments (its adjust_lr_fn).
MUON_ADJUST_LR = ("original", "match_rms_adamw")
# decoupled: the optimizer's own W ← W − η·λ·W; spectral: W ← W − η·λ·σ₁u₁v₁ᵀ (spectral.py).
WEIGHT_DECAY_KINDS = ("decoupled", "spectral")
# How learnable multipliers are computed (lrm.py): equal trajectories, different cost.
LRM_IMPLS = ("autograd", "fused")
# How a learnable multiplier is stored (lrm.py): s itself, or θ with s = e^θ.
MULT_PARAMS = ("linear", "log")
# The multipliers' default decoupled weight decay: small, to hold the directions along which
# a product of learnable factors can drift without changing the output (lrm.py, probes.py).
MULT_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Mode:
    """What a parametrization is made of. Every question the code asks of a mode is answered
    here, so a new mode is one row of MODE_TABLE.

    mup: a μP model (MuReadout head, 1/head_dim attention, Falcon-H1's fixed multipliers).
    mup_lr: mup's base shapes, and with them μP's per-layer learning rates (MuAdam, MuAdamW,
    MuSGD, Muon's width scale, ε scaling); `mup-lr` has these on an SP model, to ask whether
    μP's optimizer alone, without its forward, makes width scaling right.
    fixed_weight_decay: `mup-lr-only`, the paper's "LR-only μP": μP's learning rates
    (η/width_mult on hidden matrices) with λ left as given, so η·λ falls like 1/d and larger
    widths reach their equilibrium later (per-entry size ∝ d^-½); `mup-lr` keeps mup's own
    rule, λ·width_mult, so η·λ stays what it is at the base width.
    multipliers: `vector` (W̄_ij = r_i·W_ij·c_j, by placement), `scalar` (W̄ = s·W) or None.
    frozen: the multipliers stay at their start value (learning rate 0), the lrm model's
    must-fail control for the claims that they learn a width exponent; a learnable norm gain
    in front of a multiplied layer still carries its path (README, the width studies).
    horizon: `long` where the multipliers need training to show anything (DESIGN.md, fact 5)."""

    mup: bool = False
    mup_lr: bool = False
    fixed_weight_decay: bool = False
    multipliers: str | None = None
    frozen: bool = False
    horizon: str = "short"


MODE_TABLE = {
    "sp": Mode(),
    "mup": Mode(mup=True, mup_lr=True),
    "mup-lr": Mode(mup_lr=True),
    "mup-lr-only": Mode(mup_lr=True, fixed_weight_decay=True),
    "lrm": Mode(multipliers="vector", horizon="long"),
    "lrm-vector": None,  # another name for lrm (ALIASES)
    "lrm-scalar": Mode(multipliers="scalar", horizon="long"),
    "lrm-frozen": Mode(multipliers="vector", frozen=True, horizon="long"),
    "mup+lrm": Mode(mup=True, mup_lr=True, multipliers="vector"),
}
ALIASES = {"lrm-vector": "lrm"}
MODE_TABLE |= {alias: MODE_TABLE[target] for alias, target in ALIASES.items()}
MODES = tuple(MODE_TABLE)
LONG_MODES = tuple(m for m, d in MODE_TABLE.items() if d.horizon == "long" and m not in ALIASES)
SHORT_MODES = tuple(m for m, d in MODE_TABLE.items() if d.horizon == "short")


def canonical_mode(mode: str) -> str:
    return ALIASES.get(mode, mode)


def has_mup(mode: str) -> bool:
    return MODE_TABLE[mode].mup


def has_mup_lr(mode: str) -> bool:
    return MODE_TABLE[mode].mup_lr


def fixed_weight_decay(mode: str) -> bool:
    return MODE_TABLE[mode].fixed_weight_decay


def multiplier_kind(mode: str) -> str | None:
    return MODE_TABLE[mode].multipliers


def multiplier_lr(mode: str, mult_lr: float | None) -> float | None:
    """The multipliers' learning rate a run gets: 0 where the mode freezes them."""
    return 0.0 if MODE_TABLE[mode].frozen else mult_lr


def merged_mode(mode: str) -> str:
    """The mode whose model a merged checkpoint (multipliers folded into W) loads into."""
    return "mup" if has_mup(mode) else "sp"


@dataclass(frozen=True)
class Horizon:
    """How long a check trains. Short checks μP's from-the-first-step promise on a fixed
    batch; long lets learnable multipliers adapt under streamed, noisy batches and weight decay."""

    name: str
    steps: int
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    seq_len: int
    widths: tuple[int, ...]
    seeds: int
    beta2: float | None = None
    mult_param: str = "linear"
    mult_lr: float | None = None
    options: tuple[tuple[str, str], ...] = ()


ONE_BLOCK_FAMILIES = ("transformer", "mamba2", "hybrid")


def default_horizon(mode: str, family: str) -> Horizon:
    """The long horizon is sized by what learnable multipliers need (DESIGN.md, fact 5): η·λ·steps
    = 4, so the matrices reach AdamW's noise–WD equilibrium; Adam's β₂ window 1/(1 − β₂) = 20
    steps, far shorter than 1/(η·λ) = 250; log multipliers at lr 0.02, so each can travel up to
    0.02·1000 = 20 in log s, against log(128/16) = 2.1 that d⁻¹ needs over the widths. At 750
    steps the head-only byte LM's multiplier was still moving (d^−0.82 at 70%, −0.92 at the end).
    The built-in block families train one block (their `layers` option, which the user's
    --option overrides): every claim is about one layer's width scaling, and a second block
    costs about a third of the check's time."""
    if MODE_TABLE[mode].horizon == "long":
        return Horizon("long", steps=1000, optimizer="adamw", lr=4e-3, weight_decay=1.0,
                       batch_size=8, seq_len=32, widths=(16, 32, 64, 128), seeds=2, beta2=0.95,
                       mult_param="log", mult_lr=0.02,
                       options=(("layers", "1"),) if family in ONE_BLOCK_FAMILIES else ())
    batch = 8 if family == "mlp" else 2
    return Horizon("short", steps=5, optimizer="adam", lr=1e-2, weight_decay=0.0,
                   batch_size=batch, seq_len=16, widths=(64, 128, 256, 512, 1024), seeds=3)


# A long-horizon exponent is settled when α at the last recorded step is within SETTLE_TOLERANCE
# of α at SETTLE_FROM of the run (fit.py): the last ~30% of training moved it by less than that.
SETTLE_FROM, SETTLE_TOLERANCE = 0.7, 0.1


def record_steps(steps: int, horizon: str) -> tuple[int, ...]:
    """Short horizons record every step; long ones 0, 1, 2, 4, …, SETTLE_FROM of the run and the
    last step; sweeps every eighth of the run, since each recorded step costs a held-out evaluation."""
    if horizon == "short":
        return tuple(range(steps + 1))
    if horizon == "sweep":
        return tuple(sorted({*range(0, steps, max(1, steps // 8)), steps}))
    out, s = [0], 1
    while s < steps:
        out.append(s)
        s *= 2
    return tuple(sorted({*out, round(SETTLE_FROM * steps), steps}))


@dataclass(frozen=True)
class RunSpec:
    family: str
    mode: str
    optimizer: str
    lr: float
    width: int
    seed: int
    steps: int
    horizon: str
    weight_decay: float = 0.0
    batch_size: int = 8
    seq_len: int = 16
    batch: str | None = None
    # cross_entropy, mse, or package.module:function taking (output, target) to a scalar (losses.py).
    loss: str = "cross_entropy"
    mult_lr: float | None = None
    mult_weight_decay: float = MULT_WEIGHT_DECAY
    # Learnable multipliers per role (lrm.placement): overrides of the mode's placement, and their start.
    multipliers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    mult_init: float = 1.0
    base_width: int = 64
    family_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Falcon-H1-style fixed μP multipliers (families.MULTIPLIER_POINTS → value), μP modes only.
    mup_multipliers: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    data: str = "synthetic"
    # Which probe metrics to record; None records all of them.
    metrics: tuple[str, ...] | None = None
    # Held-out batches behind each recorded eval_loss; 0 records none.
    eval_batches: int = 0
    # A run whose held-out loss rises above this multiple of its step-0 value has diverged.
    diverge_factor: float = 1.5
    # Largest global gradient norm (None: no clipping); multipliers count only with clip_multipliers.
    clip: float | None = None
    clip_multipliers: bool = False
    muon_adjust_lr: str = "match_rms_adamw"
    # μP modes: each Adam group's ε scaled with its expected gradient scale (optim.py).
    adam_eps_scaling: bool = False
    weight_decay_kind: str = "decoupled"
    lrm_impl: str = "autograd"
    mult_param: str = "linear"
    # Adam's β₂ (None: torch's 0.999); its window 1/(1 − β₂) should be shorter than 1/(η·λ).
    beta2: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "RunSpec":
        """Inverse of to_dict after a trip through JSON, which turns tuples into lists."""
        fields = dict(fields)
        for key in ("family_options", "mup_multipliers", "multipliers"):
            if key in fields:  # a plan written before a field existed lacks it
                fields[key] = tuple(tuple(kv) for kv in fields[key])
        if fields["metrics"] is not None:
            fields["metrics"] = tuple(fields["metrics"])
        return cls(**fields)

    @property
    def run_id(self) -> str:
        """Readable prefix plus a hash of every field, so a finished run is recognised on re-run.
        Fields at their default are left out of the hash: a field added in a later version
        leaves the runs of older sweeps recognisable."""
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(self)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        fields = {k: v for k, v in self.to_dict().items() if k not in defaults or v != defaults[k]}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        family = self.family.replace(":", "_").replace("/", "_")
        return f"{family}-{self.mode}-{self.optimizer}-w{self.width}-s{self.seed}-{digest}"

    @property
    def record_steps(self) -> tuple[int, ...]:
        return record_steps(self.steps, self.horizon)
