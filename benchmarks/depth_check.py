"""The default depth check as a user runs it, once per depth rule: its wall time on this
machine (target: under 90 s each on 2 cores) and what it measured.

    muscale coord-check --mode sp --depths 2,4,8,16,32 --widths 128 [--depth-param RULE]

For each rule: the α the model behaves like (minus the depth exponent of what each block adds
to the residual stream at init), and β in value ∝ L^β at init and at the last step for the
last block's stream (act_rms), what the blocks have built on the embedding (built_rms), what
each block adds (contrib_rms, and its change since init, dcontrib_rms), CompleteP's laziness
(nonlin_rel: the nonlinear share of a block's change) and the change of the head's logits.

    python benchmarks/depth_check.py [--rules sp,depth-mup,completep]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from docs_section import written

COMMAND = ["coord-check", "--mode", "sp", "--depths", "2,4,8,16,32", "--widths", "128"]
TARGET_S = 90
SHOWN = [
    ("blocks.last", "act_rms"),
    ("blocks.last", "built_rms"),
    ("blocks.middle", "contrib_rms"),
    ("blocks.last", "contrib_rms"),
    ("blocks.last", "dcontrib_rms"),
    ("blocks.middle", "nonlin_rel"),
    ("blocks.last", "nonlin_rel"),
    ("head", "dact_rms"),
]


def one(rule: str, out: Path) -> None:
    shown = COMMAND + ([] if rule == "sp" else ["--depth-param", rule])
    args = [*shown, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "muscale", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"muscale {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    print(f"\n{rule}: muscale {' '.join(shown)}  {seconds:.1f} s (target < {TARGET_S} s)")
    print("  " + next(line for line in done.stdout.splitlines() if "behaves like" in line))
    fits = pl.read_csv(out / "depth_exponents.csv")
    last = fits["step"].max()
    for module, metric in SHOWN:
        rows = {r["step"]: r for r in fits.filter(module=module, metric=metric).iter_rows(named=True)}
        cells = [
            f"step {s}: β = {rows[s]['alpha']:+.2f} [{rows[s]['ci_low']:+.2f}, {rows[s]['ci_high']:+.2f}]"
            for s in (0, last)
            if s in rows
        ]
        print(f"  {module:<14} {metric:<13} " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="sp,depth-mup,completep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rule in args.rules.split(","):
            one(rule, Path(tmp) / rule)


if __name__ == "__main__":
    with written(__file__):
        main()
