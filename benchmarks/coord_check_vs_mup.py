"""muscale's coordinate check against mup's `get_coord_data` and against a bare training loop.

All three sides train the same runs: muscale's built-in `mlp` in mode `mup`, built by
muscale's own builder (so init is identical), μP Adam, muscale's fixed batch, the same
seeds. Agreement is the point of the script: muscale's `act_l1` must equal mup's `l1` for
every module both record and every step, or the script exits non-zero. mup's t=1 is the
forward pass at init and t=k sees the weights after k−1 steps, so muscale step s is mup
t = s + 1. mup passes no `foreach` to MuAdam (single-tensor Adam on CPU) while muscale asks
for foreach=True, so the agreement also covers that difference.

Cost is reported as wall-time ratios measured in one process, the sides taking turns width
by width, so the machine's speed and most of its load cancel out; targets are printed, not
enforced. muscale is timed twice: recording every metric, and recording `act_l1` alone
(`--metric act_l1`), which separates muscale's own machinery from the price of its extra
statistics (spectral and update norms of every matrix at every step).
mup's loop steps after its last forward too (6 steps for 6 forwards), one step more than
muscale and the bare loop, so muscale/mup flatters muscale slightly.

    python benchmarks/coord_check_vs_mup.py [--quick] [--threads N] [--reps N]
"""

import argparse
import dataclasses
import statistics
import time

import polars as pl
import torch
import torch.nn.functional as F
from docs_section import written
from mup.coord_check import get_coord_data

import muscale
from muscale.models import data, families, modes, optim
from muscale.run import coordcheck

TOLERANCE = 1e-5
TARGETS = {"mup": 1.0, "bare": 1.15}  # muscale's wall time over that side's (issue 24's targets)
OURS = ("muscale", "muscale-l1")
WIDTHS = {"full": (64, 128, 256, 512, 1024, 2048), "quick": (64, 128, 256)}
SEEDS, STEPS, LR = 3, 5, 1e-2


def mup_models(specs, family) -> dict:
    """mup calls torch.manual_seed(i) before building seed i's widths; torch.initial_seed()
    reads i back and muscale's builder re-seeds with it, so each model gets exactly the init
    muscale gives run (width, seed i)."""

    def factory(spec):
        return lambda: modes.build(dataclasses.replace(spec, seed=torch.initial_seed()), family)[0]

    return {s.width: factory(s) for s in specs if s.seed == 0}


def run_mup(specs, family, batch):
    return get_coord_data(
        mup_models(specs, family),
        [batch],
        optimizer="adam",
        lr=LR,
        mup=True,
        nsteps=STEPS + 1,
        nseeds=SEEDS,
        cuda=False,
        fix_data=True,
        lossfn="xent",
        show_progress=False,
    )


def run_muscale(specs, family, batch):
    return coordcheck.execute(specs, device="cpu", jobs=1)


def run_muscale_l1(specs, family, batch):
    """muscale recording only what mup records: its own cost, without the extra metrics'."""
    return coordcheck.execute([dataclasses.replace(s, metrics=("act_l1",)) for s in specs], device="cpu", jobs=1)


def run_bare(specs, family, batch):
    x, y = batch
    for spec in specs:
        model, multipliers = modes.build(spec, family)
        model.train()
        opt = optim.build(spec, model, multipliers)
        for _ in range(spec.steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        F.cross_entropy(model(x), y)  # the forward that muscale measures as step `steps`


def mup_l1(frame, modules: set[str]) -> pl.DataFrame:
    """mup's rows carry no seed; they arrive seed by seed, so a module's n-th row at a given
    (width, t) is seed n. That holds for modules called once per forward, which muscale's
    probed modules are."""
    frame = frame[frame["module"].isin(modules)]
    rows = pl.DataFrame({c: frame[c].tolist() for c in ("width", "module", "t", "l1")})
    return rows.with_columns(seed=pl.int_range(pl.len()).over("width", "module", "t"), step=pl.col("t") - 1)


def agreement(records: pl.DataFrame, mup_frame) -> pl.DataFrame:
    """Max relative difference of act_l1 vs l1 per (module, step); a row muscale or mup has
    and the other lacks counts as infinite difference."""
    ours = records.filter(metric="act_l1").select("width", "seed", "step", "module", "value")
    modules = ours["module"].unique(maintain_order=True).to_list()
    theirs = mup_l1(mup_frame, set(modules))
    both = ours.join(theirs, on=["width", "seed", "step", "module"], how="full", coalesce=True)
    diff = (pl.col("value") - pl.col("l1")).abs()
    scale = pl.max_horizontal(pl.col("value").abs(), pl.col("l1").abs())
    rel = (
        pl.when(pl.col("value").is_null() | pl.col("l1").is_null())
        .then(float("inf"))
        .when(scale == 0)
        .then(0.0)
        .otherwise(diff / scale)
    )
    table = both.group_by("module", "step").agg(rel=rel.max())
    return table.sort(pl.col("module").cast(pl.Enum(modules)), "step")


def print_agreement(table: pl.DataFrame) -> float:
    steps = sorted(table["step"].unique())
    print("max relative difference, muscale act_l1 vs mup l1 (over widths and seeds)")
    print(f"  {'module':<10}" + "".join(f"{'step ' + str(s):>10}" for s in steps))
    for module in table["module"].unique(maintain_order=True):
        row = table.filter(module=module)
        cells = {s: r for s, r in zip(row["step"], row["rel"])}
        print(f"  {module:<10}" + "".join(f"{cells.get(s, float('nan')):>10.1e}" for s in steps))
    worst = table["rel"].max()
    print(
        f"  max relative difference {worst:.3e} (tolerance {TOLERANCE:.0e}): "
        f"{'OK' if worst <= TOLERANCE else 'DISAGREE'}"
    )
    return worst


def time_sides(sides: dict, reps: int, specs, family, batch) -> dict[tuple[str, int], list[float]]:
    """Wall time of each side per (side, width), one entry per repetition. Sides take turns
    width by width, in an order that rotates each repetition, so a change in machine load or
    cache state hits all of them alike."""
    widths = list(dict.fromkeys(s.width for s in specs))
    names = list(sides)
    times = {(name, w): [] for name in names for w in widths}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for w in widths:
            group = [s for s in specs if s.width == w]
            for name in order:
                start = time.perf_counter()
                sides[name](group, family, batch)
                times[name, w].append(time.perf_counter() - start)
    return times


def print_ratios(times: dict[tuple[str, int], list[float]], reps: int) -> None:
    """Per width, then over all widths: the median of each repetition's total, which the
    targets are for."""
    widths = sorted({w for _, w in times})
    rows = [(str(w), [w]) for w in widths] + [("all", widths)]

    def median(name, ws):
        return statistics.median(sum(times[name, w][rep] for w in ws) for rep in range(reps))

    pairs = [(ours, other) for ours in OURS for other in TARGETS]
    ratio = {(label, ours, other): median(ours, ws) / median(other, ws) for label, ws in rows for ours, other in pairs}
    print(
        f"\nwall-time ratio, median of {reps} repetition(s); below 1 muscale is faster "
        f"(muscale: every metric; muscale-l1: act_l1 alone, what mup records)"
    )
    print(f"  {'width':<8}" + "".join(f"{ours + ' / ' + other:>20}" for ours, other in pairs))
    for label, _ in rows:
        print(f"  {label:<8}" + "".join(f"{ratio[label, ours, other]:>20.2f}" for ours, other in pairs))
    print(f"  {'target':<8}" + "".join(f"{'≤ ' + format(TARGETS[other], '.2f'):>20}" for _, other in pairs))
    print(
        f"  {'':<8}"
        + "".join(
            f"{'met' if ratio['all', ours, other] <= TARGETS[other] else 'over target':>20}" for ours, other in pairs
        )
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths 64,128,256 and one timed repetition")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for every side (default 1)")
    parser.add_argument("--reps", type=int, help="timed repetitions per side, median taken (default 3; 1 with --quick)")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    widths = WIDTHS["quick" if args.quick else "full"]
    torch.set_num_threads(args.threads)

    specs = muscale.plan("mup", "mlp", widths=widths, seeds=SEEDS, steps=STEPS, optimizer="adam", lr=LR)
    family = families.resolve("mlp")
    batch = data.mlp_batch(data.PROBE_INDEX, specs[0].batch_size)
    inputs = (specs, family, batch)
    print(
        f"mlp, mode mup, adam lr {LR}, widths {','.join(map(str, widths))}, {SEEDS} seeds, {STEPS} steps, "
        f"batch {specs[0].batch_size}, {torch.get_num_threads()} torch thread(s)\n"
    )

    # The first call of each side is both the warm-up and the data for the agreement check.
    mup_frame, records = run_mup(*inputs), run_muscale(*inputs)
    run_bare(*inputs)
    worst = print_agreement(agreement(records, mup_frame))

    times = time_sides(
        {"muscale": run_muscale, "muscale-l1": run_muscale_l1, "mup": run_mup, "bare": run_bare}, reps, *inputs
    )
    print_ratios(times, reps)
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    with written(__file__):
        status = main()
    raise SystemExit(status)
