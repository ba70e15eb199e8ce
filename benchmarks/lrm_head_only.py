"""The simplest layer whose scale the loss sees (DESIGN.md, fact 5): the head-only byte LM of
tests/test_lrm_width.py (an embedding, a gainless RMSNorm, a head with one scalar multiplier)
under `lrm-scalar` on the default long horizon, on the stdlib's bytes and on the synthetic
Markov tokens, with the multiplier learning and frozen. Prints the head's width exponents at
the last step, with their intervals, `settled` and verdicts (README, "What we measured").

    python benchmarks/lrm_head_only.py [--jobs 2]
"""

import argparse
import sys
from pathlib import Path

import polars as pl

import muscale

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
METRICS = ("act_rms", "raw_act_rms", "weight_rms", "mult_scalar")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    for data in ("stdlib", "synthetic"):
        for label, kw in (("learning", {}), ("frozen", {"mult_lr": 1e-12})):
            records = muscale.coord_check(
                "lrm-scalar",
                "families_for_tests:head_lm",
                device="cpu",
                jobs=args.jobs,
                metrics=METRICS,
                data=data,
                **kw,
            )
            ex = muscale.fit_exponents(records).filter(pl.col("module") == "head")
            last = ex.filter(pl.col("step") == ex["step"].max()).sort("metric")
            print(f"{data}, multiplier {label}, step {last['step'][0]}:")
            with pl.Config(tbl_rows=-1, float_precision=2, tbl_hide_dataframe_shape=True):
                print(last.select("metric", "alpha", "ci_low", "ci_high", "settled", "verdict"))


if __name__ == "__main__":
    main()
