"""Run specs: plain, picklable data that fully determines one run, seed included."""

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from . import depth as depth_rules

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
# a product of learnable factors can drift without changing the output (lrm.py, symmetry.py).
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
    frozen_gains: the norm gains stay at their start value. With frozen multipliers too
    (`lrm-frozen-scales`) no learnable scale is left but the matrices' own norms, which weight
    decay pins: the control for the claims that learnable scales keep what the loss sees flat.
    With the multipliers learning (`lrm-frozen-gains`), only they can carry a path's scale:
    the contrast that says the multipliers, not the gains, do it. (`lrm-frozen` learns the
    gains alone, which is `sp` with multipliers held at 1: the same model, the same numbers.)
    horizon: `long` where the multipliers need training to show anything (DESIGN.md, fact 5)."""

    mup: bool = False
    mup_lr: bool = False
    fixed_weight_decay: bool = False
    multipliers: str | None = None
    frozen: bool = False
    frozen_gains: bool = False
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
    "lrm-frozen-scales": Mode(multipliers="vector", frozen=True, frozen_gains=True, horizon="long"),
    "lrm-frozen-gains": Mode(multipliers="vector", frozen_gains=True, horizon="long"),
    "mup+lrm": Mode(mup=True, mup_lr=True, multipliers="vector"),
}
ALIASES = {"lrm-vector": "lrm"}
MODE_TABLE |= {alias: MODE_TABLE[target] for alias, target in ALIASES.items()}
MODES = tuple(MODE_TABLE)
LONG_MODES = tuple(m for m, d in MODE_TABLE.items() if d.horizon == "long" and m not in ALIASES)
SHORT_MODES = tuple(m for m, d in MODE_TABLE.items() if d.horizon == "short")
VECTOR_MODES = tuple(m for m, d in MODE_TABLE.items() if d.multipliers == "vector" and m not in ALIASES)


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


def frozen_gains(mode: str) -> bool:
    return MODE_TABLE[mode].frozen_gains


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
    data: str = "synthetic"


ONE_BLOCK_FAMILIES = ("transformer", "mamba2", "hybrid")
# Built-in families that are not token LMs: they bring their own data, so no text default applies.
OWN_DATA_FAMILIES = ("mlp",)


def default_horizon(mode: str, family: str) -> Horizon:
    """The long horizon is sized by what learnable multipliers need (DESIGN.md, fact 5): η·λ·steps
    = 4, so the matrices reach AdamW's noise–WD equilibrium; Adam's β₂ window 1/(1 − β₂) = 20
    steps, far shorter than 1/(η·λ) = 250; log multipliers at lr 0.02, so each can travel up to
    0.02·1000 = 20 in log s, against log(128/16) = 2.1 that d⁻¹ needs over the widths. At 750
    steps the head-only byte LM's multiplier was still moving (d^−0.82 at 70%, −0.92 at the end).
    The built-in block families train one block (their `layers` option, which the user's
    --option overrides): every claim is about one layer's width scaling, and a second block
    costs about a third of the check's time. The long horizon trains token LMs on real text
    (the stdlib's bytes): on the synthetic Markov chain a 16…128-wide model cannot represent
    the 256-token chain, so the function learned changes with width and the head's logits
    shrink for a reason that is the data's, not the parametrization's (DESIGN.md, fact 5).
    Four seeds: a claim passes only when its whole 95% interval lies in its band, and over two
    seeds the t-interval is 12.7 standard deviations of the seed slopes wide (the head's logits
    then span [−0.49, +0.38] against ±0.15); over four it is 3.2 (measured: [−0.14, −0.02])."""
    if MODE_TABLE[mode].horizon == "long":
        return Horizon(
            "long",
            steps=1000,
            optimizer="adamw",
            lr=4e-3,
            weight_decay=1.0,
            batch_size=8,
            seq_len=32,
            widths=(16, 32, 64, 128),
            seeds=4,
            beta2=0.95,
            mult_param="log",
            mult_lr=0.02,
            options=(("layers", "1"),) if family in ONE_BLOCK_FAMILIES else (),
            data="synthetic" if family in OWN_DATA_FAMILIES else "stdlib",
        )
    batch = 8 if family == "mlp" else 2
    return Horizon(
        "short",
        steps=5,
        optimizer="adam",
        lr=1e-2,
        weight_decay=0.0,
        batch_size=batch,
        seq_len=16,
        widths=(64, 128, 256, 512, 1024),
        seeds=3,
    )


# A long-horizon exponent is settled when one more doubling of the run, at the slope of α against
# ln(step) over the last third of the run, would move α by at most SETTLE_TOLERANCE and the
# slope's 95% half-width resolves that much (analysis/settle.py). SETTLE_POINTS log-spaced
# recorded steps span that third.
SETTLE_FROM, SETTLE_TOLERANCE, SETTLE_POINTS = 2 / 3, 0.1, 13


def record_steps(steps: int, horizon: str) -> tuple[int, ...]:
    """Short horizons record every step; long ones 0, 1, 2, 4, … for the figures and
    SETTLE_POINTS log-spaced steps from SETTLE_FROM of the run to its end, enough for a slope
    with an interval there; sweeps every eighth of the run, since each recorded step costs a
    held-out evaluation."""
    if horizon == "short":
        return tuple(range(steps + 1))
    if horizon == "sweep":
        return tuple(sorted({*range(0, steps, max(1, steps // 8)), steps}))
    out, s = [0], 1
    while s < steps:
        out.append(s)
        s *= 2
    start = SETTLE_FROM * steps
    window = {min(steps, math.ceil(start / SETTLE_FROM ** (k / (SETTLE_POINTS - 1)))) for k in range(SETTLE_POINTS)}
    return tuple(sorted({*out, *window, steps}))


def option(help: str, default=dataclasses.MISSING, **spelling) -> dataclasses.Field:
    """A RunSpec field a person sets. Its default and help are declared here and nowhere else:
    `muscale coord-check`'s options, the study files' keys and coordcheck.plan's keywords are
    made from them (options.py). `spelling` says where those differ from the field:
      name: plan's keyword and the study key's stem;
      flag, key: the command-line option and the study key (None: there is none);
      axis: "study", one run per value a study file lists; "both", on the command line too;
      pairs, example: KEY=VALUE entries with values of this type, and one such pair;
      keys: "module:NAME" of the names a KEY or a list entry may take;
      unset: what leaving it out means; check: the coordinate check's default where RunSpec
      has none; metavar."""
    return field(default=default, metadata={"help": help, **spelling})


# The coordinate check's parametrization and family when none is asked for.
CHECK_MODE, CHECK_FAMILY = "lrm", "transformer"
# Which training batches a seed sees (RunSpec.data_offset).
DATA_ORDERS = ("seed", "shared")
DATA_SOURCES = (
    "synthetic (a sparse Markov chain, vocab 256), stdlib (the bytes of Python's own library sources on "
    "this machine), text:PATH (a file's bytes) or tokens:PATH (an llm.c or uint16 token file)"
)


@dataclass(frozen=True)
class RunSpec:
    family: str = option(
        "mlp, transformer, mamba2, hybrid, hf:MODEL_TYPE (a Hugging Face architecture, the hf "
        "extra), or package.module:function returning an nn.Module for a width (and its options as "
        "keywords).",
        key="families",
        axis="study",
        check=CHECK_FAMILY,
    )
    mode: str = option(f"Parametrization: {', '.join(MODES)}.", key="modes", axis="study", check=CHECK_MODE)
    optimizer: str = option(
        f"{', '.join(OPTIMIZERS)} (Muon on hidden matrices, AdamW on the rest).", key="optimizers", axis="study"
    )
    lr: float = option("Learning rate (μP modes scale it per layer).")
    width: int = option("Widths, increasing, at least two.", name="widths", axis="both")
    seed: int = option("Runs seeds 0…N−1.", name="seeds")
    steps: int = option(
        "Optimizer steps; the long horizon records steps 0,1,2,4,… and log-spaced steps over the last "
        "third of the run, where `settled` reads the slope of α."
    )
    horizon: str = field()
    depth: int | None = option(
        "Depths (the number of blocks), increasing: a depth check fits value ∝ L^β at each width as a width "
        "check fits d^α at each depth; with one width, or a width × depth grid.",
        None,
        name="depths",
        axis="both",
        unset="the family's own (no depth axis)",
    )
    base_depth: int | None = option(
        "The depth rule's base depth L_base: branches are multiplied by (L_base / L)^α.",
        None,
        unset="the smallest depth",
    )
    depth_param: str = option(
        f"Depth rule (config/depth.py): {', '.join(depth_rules.DEPTH_PARAMS)}. depth-mup multiplies each residual branch by "
        "(L_base/L)^½ and the blocks' Adam learning rate by (L/L_base)^−½; completep by (L_base/L)^1, with the "
        "blocks' learning rate unchanged and their Adam ε × L_base/L; alpha by (L_base/L)^α with --depth-alpha.",
        "sp",
        key="depth_params",
        axis="study",
        keys="muscale.config.depth:DEPTH_PARAMS",
    )
    depth_alpha: float | None = option(
        "α of --depth-param alpha (0 is sp, ½ depth-mup, 1 completep).", None, unset="none"
    )
    weight_decay: float = option("Weight decay on matrices.", 0.0)
    batch_size: int = option("Sequences (or examples) per batch.", 8)
    seq_len: int = option("Tokens per sequence.", 16)
    batch: str | None = option(
        "package.module:function returning (inputs, targets) for a user family that is not a token LM: called "
        "with no arguments, one fixed batch; with (step, batch_size), a stream (negative steps are held out).",
        None,
        key=None,
        unset="synthetic tokens (vocab 256)",
    )
    loss: str = option(
        "cross_entropy, mse, or package.module:function taking (output, target) and returning a "
        "scalar tensor (losses.py).",
        "cross_entropy",
    )
    mult_lr: float | None = option("Learning rate of the learnable multipliers.", None, unset="the learning rate")
    mult_weight_decay: float = option(
        "Weight decay of the learnable multipliers: small, so that directions of the product the output cannot "
        "see (s·W = (a·s)·(W/a)) do not drift without bound.",
        MULT_WEIGHT_DECAY,
    )
    multipliers: tuple[tuple[str, str], ...] = option(
        "lrm modes: learnable multipliers placed by role (lrm.placement), ROLE=KIND; kinds: none, scalar, row, "
        f"col, both. The default ({', '.join(VECTOR_MODES)}): a scalar on the head and on the query (the QK "
        "product), a row vector on attn_out, mlp_down, ssm_out and ssm_dt_proj (the SSM's time step), nothing elsewhere (no two learnable factors the "
        "output cannot tell apart); lrm-scalar: scalar everywhere.",
        (),
        flag="--multiplier",
        pairs=str,
        example=("attn_k", "scalar"),
        keys="muscale.models.lrm:PLACEABLE_ROLES",
    )
    mult_init: float = option("Start value of every learnable multiplier.", 1.0)
    base_width: int = option("μP base width (delta at 2×).", 64)
    family_options: tuple[tuple[str, str], ...] = option(
        "Family options (transformer: layers, heads, kv_heads, mlp_ratio, zero_query=1 to start the query at zero "
        "as mup recommends; mamba2: layers, expand, ssm_head_dim, d_state, chunk, mlp_ratio; hybrid: all of both; "
        "mlp: depth, norm=layernorm; hf:TYPE: layers, heads, mlp_ratio and any config field; a user family: its "
        "function's keyword parameters).",
        (),
        name="options",
        flag="--option",
        pairs=str,
        example=("kv_heads", 2),
    )
    mup_multipliers: tuple[tuple[str, float], ...] = option(
        "Fixed μP multipliers where Falcon-H1 places them, mup modes only.",
        (),
        flag="--mup-multiplier",
        pairs=float,
        example=("embed", 2.0),
        keys="muscale.models.families:MULTIPLIER_POINTS",
        unset="none (1)",
    )
    data: str = option(f"The token LMs' training text: {DATA_SOURCES}.", "synthetic")
    data_order: str = option(
        "Which training batches each seed sees: seed (seed s trains on batches s·steps … s·steps + steps − 1 "
        "of the stream, so an interval over seeds covers the data's noise as well as the init's) or shared "
        "(every seed the same batches). Held-out and probe batches are the same for every seed.",
        "seed",
        keys="muscale.config.spec:DATA_ORDERS",
        hashed=True,
    )
    metrics: tuple[str, ...] | None = option(
        "The probe metrics to record (the loss is always recorded): a check that skips the spectral and update "
        "norms of every matrix runs faster.",
        None,
        flag="--metric",
        keys="muscale.measure.metrics:METRICS",
        unset="every metric",
    )
    eval_batches: int = option("Held-out batches behind each recorded eval_loss; 0 records none.", 0, flag=None)
    diverge_factor: float = option(
        "A run whose held-out loss rises above this multiple of its step-0 value has diverged.", 1.5, flag=None
    )
    clip: float | None = option(
        "The largest global gradient norm, counting every parameter but the learnable "
        "multipliers; the clip factor is recorded.",
        None,
        metavar="NORM",
        unset="no clipping",
    )
    clip_multipliers: bool = option("Count and clip the multipliers' gradients too (lrm modes, with clip).", False)
    muon_adjust_lr: str = option(
        "torch Muon's learning-rate adjustment: original or match_rms_adamw (update RMS ≈ AdamW's, so the lr "
        "means what it means for AdamW). μP modes scale it further with width so that ‖ΔW‖₂ ∝ "
        "sqrt(fan_out/fan_in).",
        "match_rms_adamw",
    )
    adam_eps_scaling: bool = option(
        "μP modes: give each Adam parameter ε / width_mult, following its gradients, "
        "which shrink like 1/width under μP (optim.py).",
        False,
    )
    weight_decay_kind: str = option(
        "decoupled (W ← W − η·λ·W) or spectral (W ← W − η·λ·σ₁u₁v₁ᵀ: only the top singular value shrinks).", "decoupled"
    )
    lrm_impl: str = option(
        "lrm modes: autograd (the product r·W·c in the forward pass) or fused (the forward and backward on W̄ "
        "alone, its gradient turned into the factors' in closed form); the two train alike.",
        "autograd",
    )
    mult_param: str = option(
        "lrm modes: linear (the multiplier s is the parameter) or log (the parameter is θ, "
        "s = e^θ, so an Adam step moves log s).",
        "linear",
    )
    beta2: float | None = option(
        "Adam's β₂; its window 1/(1 − β₂) should be shorter than 1/(lr·weight decay).", None, unset="torch's 0.999"
    )

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
        leaves the runs of older sweeps recognisable. A field marked `hashed` is always in it:
        its default changed what a run computes (data_order: before it, every seed trained on
        the same batches), so a run of old must not be taken for one of now."""
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(self)
            if (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
            and not f.metadata.get("hashed")
        }
        # Every field is a scalar or a tuple of them: to_dict's deep copy would change nothing.
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields = {k: v for k, v in given.items() if k not in defaults or v != defaults[k]}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        family = self.family.replace(":", "_").replace("/", "_")
        depth = "" if self.depth is None else f"-L{self.depth}"
        return f"{family}-{self.mode}-{self.optimizer}-w{self.width}{depth}-s{self.seed}-{digest}"

    @property
    def data_offset(self) -> int:
        """The index of the first training batch: seeds train on disjoint stretches of the
        stream, so any batch function (index, batch_size, seq_len) serves them unchanged."""
        return self.seed * self.steps if self.data_order == "seed" else 0

    @property
    def depth_rule(self) -> str:
        return depth_rules.label(self.depth_param, self.depth_alpha)

    @property
    def branch_multiplier(self) -> float:
        """What each residual branch is multiplied by: 1 outside a depth rule."""
        if self.depth is None or not depth_rules.scaled(self.depth_param):
            return 1.0
        return depth_rules.branch_multiplier(self.depth_param, self.depth_alpha, self.depth, self.base_depth)

    def depth_factors(self) -> tuple[float, float]:
        """The learning-rate and Adam-ε factors of the parameters inside the blocks."""
        if self.depth is None or not depth_rules.scaled(self.depth_param):
            return 1.0, 1.0
        args = (self.depth_param, self.depth_alpha, self.depth, self.base_depth)
        return depth_rules.lr_factor(*args, self.optimizer), depth_rules.eps_factor(*args)

    @property
    def record_steps(self) -> tuple[int, ...]:
        return record_steps(self.steps, self.horizon)
