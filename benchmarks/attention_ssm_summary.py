"""The attention-logit and SSM exponents quoted in the README, re-measured.

Short horizon (widths 64…512, 2 seeds, 5 Adam steps, 2×16 tokens): per family and mode, the
range of α of the QK-logit change (dact_rms of attn_qk) over layers and steps 1…5, the same
for the μP model that keeps 1/sqrt(head_dim) attention, and the act/dact exponents of SSM
dt and projectors. Then the hybrid's long-horizon lrm default, first and last recorded step.
About 4 minutes on 2 cores.

    python benchmarks/attention_ssm_summary.py
"""

import polars as pl

import muscale
from muscale.analysis.fit import first_and_last
from muscale.models import modes
from muscale.models.families import Hooks

WIDTHS = (64, 128, 256, 512)
SSM_ROLES = ["ssm_dt", "ssm_in", "ssm_out"]


def short(family: str, mode: str, jobs: int = 2) -> pl.DataFrame:
    records = muscale.coord_check(mode, family, widths=WIDTHS, steps=5, seeds=2, device="cpu", jobs=jobs)
    return muscale.fit_exponents(records).filter(pl.col("step") >= 1)


def spread(alphas: pl.Series) -> str:
    return f"{alphas.min():+.2f} … {alphas.max():+.2f} (median {alphas.median():+.2f})" if len(alphas) else "—"


def row(family: str, label: str, ex: pl.DataFrame) -> dict:
    qk = ex.filter((pl.col("role") == "attn_qk") & (pl.col("metric") == "dact_rms"))["alpha"]
    ssm = ex.filter(pl.col("role").is_in(SSM_ROLES))
    acts = ssm.filter(pl.col("metric").is_in(["act_rms", "act_l1"]))["alpha"]
    dacts = ssm.filter(pl.col("metric") == "dact_rms")["alpha"]
    return {
        "family": family,
        "mode": label,
        "α QK-logit change": spread(qk),
        "max |α| SSM dt/projector act": f"{acts.abs().max():.3f}" if len(acts) else "—",
        "median |α| SSM dt/projector dact": f"{dacts.abs().median():.3f}" if len(dacts) else "—",
    }


MUP_HOOKS = modes.hooks


def sqrt_scale(mode, base_width, multipliers=()):
    h = MUP_HOOKS(mode, base_width, multipliers)
    return Hooks(readout=h.readout, attn_scale=lambda head_dim, width: head_dim**-0.5, multipliers=multipliers)


def main():
    rows = [row(f, m, short(f, m)) for f in ("transformer", "mamba2", "hybrid") for m in ("sp", "mup", "mup+lrm")]
    modes.hooks = sqrt_scale  # in-process only (jobs=1): the μP model with SP's attention scale
    rows += [row(f, "mup, 1/sqrt(head_dim)", short(f, "mup", jobs=1)) for f in ("transformer", "hybrid")]
    modes.hooks = MUP_HOOKS
    with pl.Config(
        tbl_rows=50,
        tbl_width_chars=200,
        float_precision=3,
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=60,
    ):
        print(f"short horizon, widths {WIDTHS}, steps 1…5:")
        print(pl.DataFrame(rows))
        lrm = muscale.fit_exponents(muscale.coord_check("lrm", "hybrid", device="cpu", jobs=2))
        print("lrm default (hybrid, long horizon): median α over a role's modules")
        print(first_and_last(lrm).filter(pl.col("role").is_in(["attn_q", "attn_k", "attn_qk", *SSM_ROLES])))


if __name__ == "__main__":
    main()
