"""The width exponents quoted in the README, re-measured.

Runs the built-in families through the short horizon (sp, mup, mup+lrm; widths 64…1024,
3 seeds, 5 Adam steps) and the learnable-multiplier default (lrm, long horizon), then
prints, per setting, the summary statistics the README quotes. Takes about 3 minutes on 2 cores.

    python benchmarks/science_summary.py [--quick]
"""

import argparse

import polars as pl

import muscale
from muscale.analysis.fit import first_and_last

HIDDEN = ~pl.col("role").is_in(["embed", "head", "loss", "attn_qk"])  # logits: benchmarks/attention_ssm_summary.py


def short_horizon(family: str, mode: str, widths) -> dict:
    ex = muscale.fit_exponents(muscale.coord_check(mode, family, widths=widths, device="cpu", jobs=2))
    hidden = ex.filter(HIDDEN)
    acts = hidden.filter(pl.col("metric").is_in(["act_rms", "act_l1"]))["alpha"]
    dacts = hidden.filter((pl.col("metric") == "dact_rms") & (pl.col("step") >= 2))["alpha"]
    return {
        "family": family,
        "mode": mode,
        "max |α| act": acts.abs().max(),
        "median α dact (step≥2)": dacts.median(),
        "max |α| dact (step≥2)": dacts.abs().max(),
        "verdicts": " ".join(f"{k}={v}" for k, v in sorted(ex.group_by("verdict").len().iter_rows())),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="widths 64…256 only")
    args = parser.parse_args()
    widths = (64, 128, 256) if args.quick else (64, 128, 256, 512, 1024)
    rows = [short_horizon(f, m, widths) for f in ("mlp", "transformer") for m in ("sp", "mup", "mup+lrm")]
    with pl.Config(
        tbl_rows=50,
        tbl_width_chars=160,
        float_precision=3,
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=60,
    ):
        print(f"short horizon, widths {widths}, hidden layers (not embed/head):")
        print(pl.DataFrame(rows))
        lrm = muscale.fit_exponents(muscale.coord_check("lrm", "transformer", device="cpu", jobs=2))
        print("lrm default (transformer, long horizon): median α over a role's modules")
        print(first_and_last(lrm).filter(pl.col("metric") != "mult_scalar"))


if __name__ == "__main__":
    main()
