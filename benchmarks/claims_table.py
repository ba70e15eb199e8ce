"""A width study's claims as the markdown table docs/science.md quotes, read from the
claims.csv that `muscale sweep` (or `muscale fit`) wrote, so the docs' table is the records'.

    python benchmarks/claims_table.py out/lrm_width_scaling_hybrid
"""

import argparse
from pathlib import Path

import polars as pl


def signed(x: float) -> str:
    return f"{x:+.2f}"


def alpha(row: dict) -> str:
    """One module: its α; several: the median and, in brackets, the range over modules."""
    if row["modules"] == 1:
        return signed(row["alpha_median"])
    return f"{signed(row['alpha_median'])} ({signed(row['alpha_min'])} … {signed(row['alpha_max'])})"


def claim(row: dict) -> str:
    tags = " (gated)" if row["gate"] else ""
    tags += " (must fail)" if row["control"] else ""
    return f"{row['name']}{tags}: {row['expected']:+g} ± {row['tolerance']:g}"


def status(row: dict) -> str:
    """A control that is reproduced is a finding, not a pass (its claim was to fail)."""
    return f"{row['status']} (finding)" if row["control"] and row["status"] == "reproduced" else row["status"]


def table(claims: pl.DataFrame) -> str:
    lines = [
        "| claim: expected α | scheme | α | interval | modules | status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in claims.iter_rows(named=True):
        counts = "/".join(str(row[k]) for k in ("reproduced", "not reproduced", "inconclusive", "unsettled"))
        interval = "—" if row["ci_low"] is None else f"[{signed(row['ci_low'])}, {signed(row['ci_high'])}]"
        lines.append(f"| {claim(row)} | {row['mode']} | {alpha(row)} | {interval} | {counts} | {status(row)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a width study's output directory")
    args = parser.parse_args(argv)
    print(table(pl.read_csv(args.out / "claims.csv")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
