"""The HTML report: self-contained, escaped, honest banner, atomic write."""

from __future__ import annotations

import base64
import itertools
import os
import re

import numpy as np
import polars as pl
import pytest

from muscale.errors import InputError
from muscale.report import figures, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODULES = (("embed", "embed"), ("blocks.0.mlp.up", "mlp_up"), ("blocks.1.mlp.up", "mlp_up"), ("head", "head"))
METRICS = ("act_l1", "act_rms", "dact_rms", "update_spec", "mult_row_rms")
SLOPE = {"sp": 1.0, "mup": 0.0}


def make_records(modes=("sp", "mup"), widths=(64, 128, 256), seeds=(0, 1), steps=(0, 1, 2),
                 horizon="short", modules=MODULES, metrics=METRICS) -> pl.DataFrame:
    """value = c · width^slope(mode) with per-seed noise; step-0 rows skip the metrics that need a step."""
    rng = np.random.default_rng(0)
    rows = []
    for mode, width, seed, step in itertools.product(modes, widths, seeds, steps):
        run = dict(run_id=f"{mode}-{width}-{seed}", family="mlp", mode=mode, optimizer="adam", lr=1e-3,
                   weight_decay=0.0, width=width, seed=seed, horizon=horizon, step=step)
        for (module, role), metric in itertools.product(modules, metrics):
            if step == 0 and (metric == "dact_rms" or metric.startswith("update_")):
                continue
            value = (1 + step) * width ** SLOPE.get(mode, 0.0) * np.exp(rng.normal(0, 0.05))
            rows.append(run | dict(module=module, role=role, metric=metric, value=float(value)))
        rows.append(run | dict(module="loss", role="loss", metric="loss", value=3.0 / (1 + step) + seed * 0.01))
    return pl.DataFrame(rows)


def make_exponents(records: pl.DataFrame, verdict="pass", expected=0.0) -> pl.DataFrame:
    keys = ("mode", "family", "optimizer", "module", "role", "metric", "step")
    base = records.filter(pl.col("role") != "loss").select(keys).unique().sort(keys)
    return base.with_columns(
        alpha=pl.col("mode").replace_strict(SLOPE, default=0.0) + 0.01,
        ci_low=pl.lit(-0.05), ci_high=pl.lit(0.06), r2=pl.lit(0.99),
        n_widths=pl.lit(3, pl.Int64), n_seeds=pl.lit(2, pl.Int64),
        expected=pl.lit(expected, pl.Float64), tolerance=pl.lit(0.1 if expected is not None else None, pl.Float64),
        verdict=pl.lit(verdict),
    )


def banner(html: str) -> tuple[str, str]:
    match = re.search(r'<div class="banner (\w+)">\s*<strong>([^<]*)</strong>', html)
    assert match, "no verdict banner"
    return match.group(1), match.group(2)


@pytest.fixture
def records() -> pl.DataFrame:
    """Small on purpose: every panel costs tens of milliseconds to draw."""
    return make_records(modes=("mup",), modules=MODULES[:2], metrics=("act_rms", "dact_rms"))


def test_report_is_self_contained(tmp_path):
    records = make_records(steps=(0, 1, 2, 4, 8), horizon="long")
    path = write_report(records, make_exponents(records), tmp_path / "report.html", {"command": "muscale x"})
    html = path.read_text(encoding="utf-8")

    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    # a coord-check figure per role, an α trajectory per mode, one loss figure
    assert len(sources) == len({role for _, role in MODULES}) + 2 + 1
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True).startswith(PNG_SIGNATURE)
    assert "Width exponent over training" in html
    assert "<td>muscale x</td>" in html


def test_trajectory_only_when_alpha_has_a_trajectory(tmp_path, records):
    two_steps = records.filter(pl.col("step") < 2)
    html = write_report(two_steps, make_exponents(two_steps), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Width exponent over training" not in html
    html = write_report(records, make_exponents(records), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Width exponent over training" in html


def test_user_strings_are_escaped(tmp_path, records):
    evil = "<script>alert(1)</script>"
    records = records.with_columns(
        module=pl.when(pl.col("module") == "head").then(pl.lit(evil)).otherwise(pl.col("module")),
        family=pl.lit("<b>fam</b>"),
    )
    html = write_report(records, make_exponents(records), tmp_path / "r.html",
                        {"note": evil}).read_text(encoding="utf-8")
    assert "<script" not in html
    assert "<b>fam</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;fam&lt;/b&gt;" in html


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["pass"], "pass"),
        (["pass", "fail"], "fail"),  # one failing row fails the whole report
        (["pass", "warn"], "warn"),
        (["pass", "warn", "fail"], "fail"),  # fail outranks warn
        (["info"], "info"),  # nothing was checked: neither pass nor fail
    ],
)
def test_banner_verdict(tmp_path, records, verdicts, overall):
    exponents = make_exponents(records)
    exponents = exponents.with_columns(
        verdict=pl.Series([verdicts[i % len(verdicts)] for i in range(exponents.height)])
    )
    kind, line = banner(write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert kind == overall
    assert line.startswith(overall.upper())


def test_nothing_checked_is_info_only(tmp_path, records):
    exponents = make_exponents(records, verdict="info", expected=None)
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    assert banner(html)[0] == "info"
    assert "No exponent had an expectation." in html


def test_banner_counts(tmp_path, records):
    exponents = make_exponents(records).with_columns(verdict=pl.lit("pass"))
    exponents = exponents.with_columns(verdict=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("fail"))
                                       .otherwise(pl.col("verdict")))
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"FAIL — 3 of {exponents.height} checked" in banner(html)[1]
    assert '<span class="count">fail: 3</span>' in html


def test_worst_table_uses_last_step_and_largest_miss(tmp_path):
    records = make_records(modes=("mup",), metrics=("act_l1", "act_rms", "dact_rms"))
    exponents = make_exponents(records)
    last = exponents["step"].max()
    miss = {(0, "embed"): 9.0, (last, "head"): 0.7, (last, "blocks.0.mlp.up"): 0.4}
    exponents = exponents.with_columns(
        alpha=pl.struct("step", "module").map_elements(lambda r: miss.get((r["step"], r["module"]), 0.0),
                                                       return_dtype=pl.Float64)
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    worst = html.split("<h2>Worst exponents</h2>")[1].split("<h2>")[0]
    assert "+9.000" not in worst  # the biggest miss is at step 0, not the last step
    assert worst.index("<td>head</td>") < worst.index("<td>blocks.0.mlp.up</td>")
    assert worst.count("<tr class=") == 10


def test_unfittable_exponent_counts_as_worst(tmp_path, records):
    exponents = make_exponents(records).with_columns(
        alpha=pl.when(pl.col("module") == "embed").then(float("nan")).otherwise(pl.col("alpha")),
        ci_low=pl.lit(None, pl.Float64),
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    worst = html.split("<h2>Worst exponents</h2>")[1].split("<h2>")[0]
    first_row = worst.split("<tr class=")[1]
    assert "<td>embed</td>" in first_row and "<td class=\"num\">—</td>" in first_row


def test_no_temp_files_left(tmp_path, records):
    write_report(records, make_exponents(records), tmp_path / "r.html")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_failed_render_leaves_previous_report(tmp_path, records, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("previous")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(figures, "coord_check", broken)
    with pytest.raises(RuntimeError):
        write_report(records, make_exponents(records), path)
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_failed_write_cleans_up(tmp_path, records, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("previous")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_report(records, make_exponents(records), path)
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_missing_column_is_a_clear_error(tmp_path, records):
    with pytest.raises(InputError, match="records: missing column"):
        write_report(records.drop("width"), make_exponents(records), tmp_path / "r.html")
    assert not any(tmp_path.iterdir())
