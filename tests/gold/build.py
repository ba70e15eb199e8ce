"""Golden files: what `muscale fit` writes over small stored record sets of every study kind.

`python tests/gold/build.py outputs` (`make gold`) re-fits every stored input under
tests/gold/inputs/ and stores what `muscale fit` wrote (every CSV, and every report with
dates, versions, paths and figures scrubbed) under tests/gold/expected/;
tests/test_gold.py compares a fresh fit with them. `python tests/gold/build.py records`
trains the inputs again first (a minute or two on CPU): only when the record format changes.

The expected outputs are the safety net of a refactoring: the analysis path may move, but
what it writes from the same records may not change. Each bundled study's plan (the run
ids it expands to) is stored too, so a sweep directory written before a change resumes
with nothing to run after it."""

import base64
import contextlib
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from muscale import api, cli
from muscale.config.spec import RunSpec
from muscale.run import sweep

GOLD = Path(__file__).resolve().parent
ROOT = GOLD.parents[1]
INPUTS, EXPECTED = GOLD / "inputs", GOLD / "expected"
MUSCALE = [sys.executable, "-m", "muscale"]

LR_TRANSFER = """\
title = "gold lr_transfer"
families = ["transformer"]
modes = ["sp", "mup"]
widths = [16, 32]
steps = 4
batch_size = 2
seq_len = 8
eval_batches = 1
data = "synthetic"

[options]
layers = 1

[lr]
log2_min = -9
log2_max = -3
log2_step = 3

[expect]
mup = { alpha = 0.0, tolerance = 0.25 }

[coord_check]
modes = ["mup"]
widths = [16, 32]
steps = 2
seeds = 1
"""

EQUILIBRIUM = """\
kind = "equilibrium"
title = "gold equilibrium"
modes = ["sp", "lrm-scalar"]
width = 16
batch_size = 4
eval_batches = 1
eta_lambda_steps = 1

[lr]
log2_min = -4
log2_max = -2
log2_step = 1

[wd]
log2_min = -1
log2_max = 1
log2_step = 1

[variants.ln]
family = "mlp"
options = { norm = "layernorm" }

[expect]
scale_invariant = { eta = 0.5, lambda = -0.5, tolerance = 0.15 }
"""

CLAIMS = """\
kind = "width"
title = "gold width claims"
families = ["transformer"]
modes = ["lrm", "sp"]
widths = [16, 32]
seeds = 2
steps = 12
batch_size = 2
seq_len = 8
lr = 0.01
weight_decay = 5.0
mult_lr = 0.01
eta_lambda_steps = 0.6
data = "synthetic"
metrics = ["weight_fro", "act_rms", "update_fro", "mult_scalar", "mult_row_rms", "mult_col_rms"]

[options]
layers = 1

[[claim]]
name = "matrix entries keep one size"
mode = "lrm"
metric = "weight_fro"
roles = ["attn_v", "mlp_up"]
alpha = 1.0
tolerance = 0.5
gate = true

[[claim]]
name = "QK multiplier product"
mode = "lrm"
metric = "mult_qk"
alpha = -2.0
tolerance = 0.5
"""

DEPTH_PROFILE = """\
kind = "depth_profile"
title = "gold depth profile"
families = ["transformer"]
modes = ["sp", "lrm-scalar"]
widths = [16]
depths = [2, 3]
seeds = 2
steps = 12
batch_size = 2
seq_len = 8
lr = 0.01
weight_decay = 5.0
mult_lr = 0.01
eta_lambda_steps = 0.6
data = "synthetic"
"""

STUDIES = {"lr_transfer": LR_TRANSFER, "equilibrium": EQUILIBRIUM, "claims": CLAIMS, "depth_profile": DEPTH_PROFILE}
# The long-horizon inputs (coord_check_lrm, claims, depth_profile) run 12 steps: the settle test (settle.py)
# needs at least three recorded steps in the last third of a run.
COORD_CHECKS = {
    "coord_check_mup": ["--mode", "mup", "--family", "mlp", "--widths", "16,32", "--steps", "2", "--seeds", "2"],
    "coord_check_lrm": [
        "--mode",
        "lrm",
        "--family",
        "transformer",
        "--widths",
        "16,32",
        "--steps",
        "12",
        "--seeds",
        "2",
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--option",
        "layers=1",
    ],
}
# Written by `muscale fit`, compared byte for byte after scrubbing.
OUTPUTS = ("*.csv", "*.html", "parts/*/*.csv", "parts/*/*.html")
# Metadata that differs between machines and days, not between analyses.
VOLATILE = ("command", "muscale", "torch", "mup", "date", "git commit", "device")


def scrub(text: str, out: Path) -> str:
    """A report with what varies between runs of the same analysis replaced by markers:
    volatile metadata, the directory it was written in, and each figure by its pixel size
    (polars groups come out in any order, and with them the order lines are drawn in)."""
    for key in VOLATILE:
        text = re.sub(rf"(<tr><th>{re.escape(key)}</th><td>).*?(</td></tr>)", r"\1…\2", text)
    text = text.replace(str(out), "OUT")
    return re.sub(r"base64,([A-Za-z0-9+/=]+)", lambda m: "png {}x{}".format(*_size(m.group(1))), text)


def _size(png: str) -> tuple[int, int]:
    header = base64.b64decode(png[:64])
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _muscale(*args: str) -> tuple[int, str]:
    """`muscale ARGS` run by the console script's own entry point in this process, its exit code
    and what it printed: a second interpreter would spend seconds importing torch before the
    fit starts, which is most of a small fit's time."""
    argv, said = sys.argv, io.StringIO()
    sys.argv = ["muscale", *args]
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            cli.main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        sys.argv = argv
    return code, said.getvalue()


def fit(name: str, work: Path) -> dict[str, str]:
    """`muscale fit` over a copy of the stored input `name`: each output file's scrubbed text."""
    out = work / name
    shutil.copytree(INPUTS / name, out)
    for pattern in OUTPUTS:
        for stale in out.glob(pattern):
            stale.unlink()
    code, said = _muscale("fit", str(out))
    if code != 0:
        raise RuntimeError(f"muscale fit {name} exited {code}: {said}")
    files = sorted({p for pattern in OUTPUTS for p in out.glob(pattern)})
    return {
        str(p.relative_to(out)): scrub(p.read_text(encoding="utf-8"), out)
        if p.suffix == ".html"
        else p.read_text(encoding="utf-8")
        for p in files
    }


def plan_ids(study: Path) -> dict:
    """The run ids a bundled study expands to, and the digest of everything else its plan saves."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep.write_plan(Path(tmp), api.load(study))
        plan = json.loads((Path(tmp) / "plan.json").read_text(encoding="utf-8"))
    runs, parts = plan.pop("runs"), plan.pop("parts")
    plan.pop("study")  # where it was read from
    return {
        "runs": [RunSpec.from_dict(r).run_id for r in runs],
        "parts": {n: [RunSpec.from_dict(r).run_id for r in p] for n, p in parts.items()},
        "settings": hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest(),
    }


def build_records() -> None:
    shutil.rmtree(INPUTS, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: [*MUSCALE, "sweep", str(Path(tmp) / f"{name}.toml")] for name in STUDIES}
        for name, text in STUDIES.items():
            (Path(tmp) / f"{name}.toml").write_text(text, encoding="utf-8")
        runs |= {name: [*MUSCALE, "coord-check", *args] for name, args in COORD_CHECKS.items()}
        for name, command in runs.items():
            subprocess.run(
                [*command, "--out", str(INPUTS / name), "--device", "cpu", "--jobs", "1"], check=True, cwd=ROOT
            )
    for path in INPUTS.rglob("*"):
        if path.is_file() and any(path.match(p) for p in OUTPUTS):
            path.unlink()
    for name in COORD_CHECKS:  # stored as older versions wrote them, which `muscale fit` still reads
        (INPUTS / name / "plan.json").unlink()


def build_outputs() -> None:
    shutil.rmtree(EXPECTED, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(p.name for p in INPUTS.iterdir()):
            for file, text in fit(name, Path(tmp)).items():
                target = EXPECTED / name / file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    plans = {p.name: plan_ids(p) for p in sorted((ROOT / "studies").glob("*.toml"))}
    (EXPECTED / "plans.json").write_text(json.dumps(plans, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    what = sys.argv[1:] or ["outputs"]
    if what not in (["records"], ["outputs"]):
        sys.exit("usage: build.py [records | outputs]")
    if what == ["records"]:
        build_records()
    build_outputs()
