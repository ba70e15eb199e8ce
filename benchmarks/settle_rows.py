"""What the settle rule (muscale/analysis/settle.py) says about the rows of coordinate checks
already run: for each result directory, the rows a claim judges and the multipliers behind
them, at the last step, with α, the slope of α against ln(step) over the last third of the
run and its 95% half-width, the move one more doubling projects and the least move the window
resolves, the directory's own `settled` and verdict, and the two-point rule it replaced (|α at
the end − α at the recorded step nearest 70% of the run|, unsettled above 0.1). Then the
jitter of α over the last third: the residual sd of that regression, over every series.

    muscale coord-check --mode lrm --data stdlib --out DIR
    python benchmarks/settle_rows.py DIR [DIR …]
"""

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from muscale.analysis import settle
from muscale.config.spec import SETTLE_FROM

SERIES = ["mode", "module", "metric"]
SHOWN = ("mult_path", "mult_scalar", "mult_row_rms", "raw_act_rms")
OLD_FROM = 0.7


def rows(exponents: pl.DataFrame) -> pl.DataFrame:
    last = exponents["step"].max()
    windows = settle.window_slopes(exponents, SERIES)
    off = (pl.col("step") - OLD_FROM * last).abs()
    old = exponents.filter(off == off.min()).select(*SERIES, alpha_70=pl.col("alpha"))
    shown = exponents.filter(
        (pl.col("step") == last) & (pl.col("expected").is_not_null() | pl.col("metric").is_in(SHOWN))
    )
    return (
        shown.join(windows, on=SERIES, how="left")
        .join(old, on=SERIES, how="left")
        .select(
            "module",
            "metric",
            "alpha",
            "slope",
            "slope_half",
            "n_window",
            "move",
            "resolution",
            "settled",
            "verdict",
            two_point=(pl.col("alpha") - pl.col("alpha_70")).abs(),
        )
        .sort("metric", "module")
    )


def jitter(exponents: pl.DataFrame) -> list[float]:
    last = exponents["step"].max()
    window = exponents.filter((pl.col("step") >= SETTLE_FROM * last) & pl.col("alpha").is_finite())
    sds = []
    for _, part in window.group_by(SERIES):
        if part.height < 3:
            continue
        u, a = np.log(part["step"].to_numpy()), part["alpha"].to_numpy()
        sds.append(float(np.std(a - np.polyval(np.polyfit(u, a, 1), u), ddof=2)))
    return sds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    for out in args.dirs:
        exponents = pl.read_csv(out / "exponents.csv").with_columns(pl.col("alpha").cast(pl.Float64))
        print(f"{out}: last step {exponents['step'].max()}")
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=3, tbl_hide_dataframe_shape=True):
            print(rows(exponents))
        sds = jitter(exponents)
        if sds:
            q = np.quantile(sds, [0.5, 0.75, 0.9])
            print(
                f"residual sd of α over the last third, {len(sds)} series: median {q[0]:.3f}, "
                f"75% {q[1]:.3f}, 90% {q[2]:.3f}"
            )
        else:
            print("fewer than three recorded steps in the last third: no residual sd")


if __name__ == "__main__":
    main()
