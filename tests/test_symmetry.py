"""The mult_drift probe: which symmetric pairs it follows, that a move along a pair's direction
leaves the output unchanged and shows up as exactly that move, and that a decay on one side
of a pair only (multipliers decayed, norm gains not) makes the pair run away."""

import math

import polars as pl
import pytest
import torch

import muscale
from muscale.measure import symmetry
from muscale.measure.probes import Probes
from muscale.models import lrm, modes
from muscale.models.families import resolve


def build(multipliers=None, **kw):
    """The paper's placement (rows and columns on every projector), where the pairs are, with
    linear multipliers, which the tests move by hand."""
    spec = muscale.plan(
        "lrm",
        "transformer",
        widths=(32, 64),
        seeds=1,
        options={"layers": 1},
        mult_param="linear",
        multipliers=lrm.PAPER_PLACEMENT | (multipliers or {}),
        **kw,
    )[0]
    family = resolve("transformer")
    model, _ = modes.build(spec, family)
    return model, family.batch(0, 2, 16)[0]


def traced(model, x) -> Probes:
    probes = Probes(model, ("mult_drift",))
    with probes.watch(0):
        model(x)
    probes.collect(0)
    return probes


def drift(probes: Probes, step: int) -> dict[str, float]:
    rows = probes.collect(step)
    return {m: v for m, k, v in zip(rows["module"], rows["metric"], rows["value"]) if k == "mult_drift"}


def test_pairs_of_the_papers_placement():
    model, x = build()
    names = {p.name for p in traced(model, x).multipliers.pairs}
    own = {
        f"blocks.0.{layer}[{pair}]"
        for layer in ("attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
        for pair in ("mult~W", "row~col")
    }
    assert names == own | {
        "blocks.0.attn.q[mult~W]",
        "head[mult~W]",
        "blocks.0.attn[attn_v~attn_out]",
        "blocks.0.mlp[mlp_up~mlp_down]",
        "blocks.0.mlp_norm[gain~col]",
    }
    # The key has no multiplier, so nothing pairs with the query or with the attention norm's gain.


def test_a_scalar_on_the_key_adds_the_qk_pair_and_the_attention_gain():
    model, x = build(multipliers={"attn_k": "scalar"})
    names = {p.name for p in traced(model, x).multipliers.pairs}
    assert {"blocks.0.attn[attn_q~attn_k]", "blocks.0.attn_norm[gain~col]"} <= names


def test_a_move_along_a_symmetric_direction_changes_nothing_but_its_drift():
    model, x = build(multipliers={"attn_k": "scalar"})
    probes = traced(model, x)
    before = model(x)
    m = dict(model.named_modules())
    mult = lambda name: m[name].parametrizations.weight[0]  # noqa: E731
    with torch.no_grad():
        mult("blocks.0.attn.q").scalar.mul_(2.0)  # s_q·s_k: q up, k down
        mult("blocks.0.attn.k").scalar.div_(2.0)
        mult("blocks.0.attn.v").row.mul_(3.0)  # r_v·c_o
        mult("blocks.0.attn.o").col.div_(3.0)
        m["blocks.0.mlp_norm"].weight.mul_(1.5)  # gain against both readers' columns
        mult("blocks.0.mlp.gate").col.div_(1.5)
        mult("blocks.0.mlp.up").col.div_(1.5)
        mult("head").row.mul_(4.0)  # s·W = (a·s)·(W/a)
        m["head"].parametrizations.weight.original.div_(4.0)
    assert torch.allclose(model(x), before, rtol=1e-5, atol=1e-5)
    got = drift(probes, 1)
    expect = {
        "blocks.0.attn[attn_q~attn_k]": math.log(4),
        "blocks.0.attn[attn_v~attn_out]": math.log(9),
        "blocks.0.mlp_norm[gain~col]": 2 * math.log(1.5),
        "head[mult~W]": math.log(16),
        "blocks.0.mlp.down[mult~W]": 0.0,
    }
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name


def test_gain_pairs_are_found_by_tracing_so_a_renamed_norm_is_found_too():
    model, x = build()
    block = model.blocks[0]
    block.post = block.mlp_norm  # a name no rule knows, in a block of a class of its own
    del block.mlp_norm

    def forward(self, h):
        h = h + self.attn(self.attn_norm(h))
        return h + self.mlp(self.post(h))

    block.__class__ = type("UserBlock", (type(block),), {"forward": forward})
    names = {p.name for p in traced(model, x).multipliers.pairs}
    assert "blocks.0.post[gain~col]" in names


def runaway(mult_weight_decay: float) -> pl.Series:
    records = muscale.coord_check(
        "lrm",
        "transformer",
        widths=(16, 32),
        steps=32,
        seeds=1,
        device="cpu",
        lr=1e-2,
        mult_weight_decay=mult_weight_decay,
        options={"layers": 1},
        multipliers=lrm.PAPER_PLACEMENT,
        mult_param="linear",
        mult_lr=1e-2,
        beta2=0.999,
    )
    rows = records.filter(
        (pl.col("module") == "blocks.0.mlp_norm[gain~col]")
        & (pl.col("metric") == "mult_drift")
        & (pl.col("width") == 32)
    )
    return rows.sort("step")["value"]


def test_teeth_decaying_one_side_of_a_pair_makes_it_run_away():
    """Gains are not decayed; a strong decay on the column multipliers shrinks them while the
    gains grow to keep the product: log(gain / col) climbs at every recorded step. Without
    the decay nothing pushes along the direction and the pair stays near 0."""
    held, pushed = runaway(0.0), runaway(1.0)
    assert pushed[0] == held[0] == 0.0
    assert (pushed.diff().drop_nulls() > 0).all(), pushed.to_list()
    assert pushed[-1] > 5 * held.abs().max(), (pushed.to_list(), held.to_list())


def test_the_default_placement_leaves_one_pair_the_head_cannot_avoid():
    """Every learnable factor of the default placement is identifiable but the head's scalar,
    which trades its scale with the final norm's gain: the claims judge their product. Each
    layer's own [mult~W] direction is held by its matrix's weight decay."""
    spec = muscale.plan("lrm", "transformer", widths=(32, 64), seeds=1, options={"layers": 1})[0]
    model, _ = modes.build(spec, resolve("transformer"))
    names = {p.name for p in traced(model, resolve("transformer").batch(0, 2, 16)[0]).multipliers.pairs}
    assert {n for n in names if not n.endswith("[mult~W]")} == {"final_norm[gain~col]"}
    assert {"blocks.0.attn.q[mult~W]", "blocks.0.attn.o[mult~W]", "blocks.0.mlp.down[mult~W]", "head[mult~W]"} <= names


def test_pairs_are_skipped_when_the_probe_is_not_wanted():
    model, _ = build()
    assert Probes(model, ("act_rms",)).multipliers.pairs == [] and symmetry.pairs(model)


def test_mult_path_alone_finds_the_pairs_it_is_the_product_of():
    """The pairs serve both pair metrics: asked for alone, mult_path is the product along
    every pair but a layer's own [mult~W], gain pairs (found by tracing step 0) included."""
    model, x = build()
    probes = Probes(model, ("mult_path",))
    with probes.watch(0):
        model(x)
    rows = probes.collect(0)
    assert set(rows["metric"]) == {"mult_path"}
    assert set(rows["module"]) == {p.name for p in probes.multipliers.pairs if not p.name.endswith("[mult~W]")}
    assert "blocks.0.mlp_norm[gain~col]" in rows["module"]
