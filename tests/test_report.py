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
from muscale.kinds.coord_check import report, write_report
from muscale.report import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODULES = (("embed", "embed"), ("blocks.0.mlp.up", "mlp_up"), ("blocks.1.mlp.up", "mlp_up"), ("head", "head"))
METRICS = ("act_l1", "act_rms", "dact_rms", "update_spec", "mult_row_rms")
SLOPE = {"sp": 1.0, "mup": 0.0}

pytestmark = pytest.mark.usefixtures("undrawn")


def make_records(
    modes=("sp", "mup"),
    widths=(64, 128, 256),
    seeds=(0, 1),
    steps=(0, 1, 2),
    horizon="short",
    modules=MODULES,
    metrics=METRICS,
) -> pl.DataFrame:
    """value = c · width^slope(mode) with per-seed noise; step-0 rows skip the metrics that need a step."""
    rng = np.random.default_rng(0)
    rows = []
    for mode, width, seed, step in itertools.product(modes, widths, seeds, steps):
        run = dict(
            run_id=f"{mode}-{width}-{seed}",
            family="mlp",
            mode=mode,
            optimizer="adam",
            lr=1e-3,
            weight_decay=0.0,
            width=width,
            seed=seed,
            horizon=horizon,
            step=step,
        )
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
        ci_low=pl.lit(-0.05),
        ci_high=pl.lit(0.06),
        r2=pl.lit(0.99),
        n_widths=pl.lit(3, pl.Int64),
        n_seeds=pl.lit(2, pl.Int64),
        expected=pl.lit(expected, pl.Float64),
        tolerance=pl.lit(0.1 if expected is not None else None, pl.Float64),
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


@pytest.mark.drawn
def test_report_is_self_contained(tmp_path):
    records = make_records(steps=(0, 1, 2, 4, 8), horizon="long")
    path = write_report(records, make_exponents(records), tmp_path / "report.html", {"command": "muscale x"})
    html = path.read_text(encoding="utf-8")

    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    # a coord-check figure per role, an α trajectory per mode, one loss figure, a drill-down figure per
    # module, and the learned multipliers by width (the records carry an lrm mode's multipliers)
    assert len(sources) == len({role for _, role in MODULES}) + 2 + 1 + len(MODULES) + 1
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
        module=pl.when(pl.col("module") == "embed").then(pl.lit(evil)).otherwise(pl.col("module")),
        family=pl.lit("<b>fam</b>"),
    )
    html = write_report(records, make_exponents(records), tmp_path / "r.html", {"note": evil}).read_text(
        encoding="utf-8"
    )
    assert "<script>alert" not in html
    assert html.count("<script>") == 2 == html.count("<script")  # the report's own two scripts, nothing from data
    assert "<b>fam</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;fam&lt;/b&gt;" in html
    # the module's drill-down section, its image's alt text and the worst table's link to it
    assert "<summary><strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>" in html
    assert 'alt="coordinate check and fit residuals, module &lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert '<a href="#module-0">&lt;script&gt;alert(1)&lt;/script&gt;</a>' in html


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["pass"], "pass"),
        (["pass", "fail"], "fail"),  # one failing row fails the whole report
        (["pass", "warn"], "warn"),
        (["pass", "warn", "fail"], "fail"),  # fail outranks warn
        (["pass", "unsettled"], "warn"),  # a claim still moving is not judged, and not a pass either
        (["unsettled", "fail"], "fail"),
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


def test_banner_counts_claims_not_rows(tmp_path, records):
    """Every step and module of one role's metric is one claim; one failing row fails it."""
    exponents = make_exponents(records)
    claims = exponents.select("mode", "family", "optimizer", "role", "metric").unique()
    exponents = exponents.with_columns(
        verdict=pl.when(pl.int_range(pl.len()) < 1).then(pl.lit("fail")).otherwise(pl.col("verdict"))
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    assert claims.height < exponents.height
    assert f"FAIL — 1 of {claims.height} claims fail" in banner(html)[1]
    assert '<span class="count">fail: 1</span>' in html
    assert f'<span class="count">pass: {claims.height - 1}</span>' in html


def test_worst_table_uses_last_step_and_largest_miss(tmp_path):
    records = make_records(modes=("mup",), metrics=("act_l1", "act_rms", "dact_rms"))
    exponents = make_exponents(records)
    last = exponents["step"].max()
    miss = {(0, "embed"): 9.0, (last, "head"): 0.7, (last, "blocks.0.mlp.up"): 0.4}
    exponents = exponents.with_columns(
        alpha=pl.struct("step", "module").map_elements(
            lambda r: miss.get((r["step"], r["module"]), 0.0), return_dtype=pl.Float64
        )
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    worst = html.split("<h2>Worst exponents</h2>")[1].split("<h2>")[0]
    assert "+9.000" not in worst  # the biggest miss is at step 0, not the last step
    assert worst.index("<td>head</td>") < worst.index(">blocks.0.mlp.up</a></td>")
    assert worst.count("<tr class=") == 10


def test_unfittable_exponent_counts_as_worst(tmp_path, records):
    exponents = make_exponents(records).with_columns(
        alpha=pl.when(pl.col("module") == "embed").then(float("nan")).otherwise(pl.col("alpha")),
        ci_low=pl.lit(None, pl.Float64),
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    worst = html.split("<h2>Worst exponents</h2>")[1].split("<h2>")[0]
    first_row = worst.split("<tr class=")[1]
    assert "<td>embed</td>" in first_row and '<td class="num">—</td>' in first_row


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


def test_exponent_table_is_sortable_and_filterable(tmp_path, records):
    html = write_report(records, make_exponents(records), tmp_path / "r.html").read_text(encoding="utf-8")
    table = html.split('<table id="exponents">')[1].split("</table>")[0]
    head, body = table.split("</thead>")
    assert head.count("<th ") == 11 and 'data-key="alpha"' in head
    assert 'data-type="num" data-key="alpha"' in head  # α sorts as a number, not as text
    assert body.strip().startswith("<tbody>") and body.count('<tr class="v-') == make_exponents(records).height
    assert 'id="exponent-filter"' in html
    for verdict in report.VERDICTS:
        assert f'name="verdict" value="{verdict}" checked' in html
    script = "".join(part.split("</script>")[0] for part in html.split("<script>")[1:])
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # cell text is only read and rows only moved: nothing is parsed as HTML


def test_drilldown_per_module(tmp_path, records):
    exponents = make_exponents(records).with_columns(
        verdict=pl.when((pl.col("module") == "embed") & (pl.col("step") == 1))
        .then(pl.lit("fail"))
        .otherwise(pl.lit("pass"))
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    section = html.split('<h2 id="modules">')[1].split("<h2>")[0]
    assert section.count('<details class="module"') == 2
    # layer order, and the worst verdict of any of the module's fits in the summary
    assert section.index("<strong>embed</strong>") < section.index("<strong>blocks.0.mlp.up</strong>")
    embed = section.split("<strong>embed</strong>")[1].split("</summary>")[0]
    assert '<span class="v fail">fail</span>' in embed
    assert section.count("<img ") == 2 and "not drawn" not in section
    worst = html.split("<h2>Worst exponents</h2>")[1].split("<h2")[0]
    assert '<a href="#module-0">embed</a>' in worst  # the worst table links to the drill-down


def test_drilldown_keeps_worst_modules_past_the_cap(tmp_path, records, monkeypatch):
    monkeypatch.setattr(report, "DRILL_MAX_MODULES", 1)
    exponents = make_exponents(records).with_columns(
        alpha=pl.when(pl.col("module") == "blocks.0.mlp.up").then(0.5).otherwise(pl.col("alpha"))
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    section = html.split('<h2 id="modules">')[1].split("<h2>")[0]
    assert section.count('<details class="module"') == 1
    assert "<strong>blocks.0.mlp.up</strong>" in section and "<strong>embed</strong>" not in section
    assert "1 more module(s) not drawn" in section


def test_residuals_are_what_the_fitted_line_misses():
    widths = np.array([16, 32, 64, 128, 256])
    bent = np.exp(0.3 * np.log(widths) ** 2)  # not a power law
    curves = pl.DataFrame(
        {
            "setting": "mup",
            "module": ["flat"] * 5 + ["bent"] * 5 + ["bent"] * 5,
            "metric": "act_rms",
            "step": [3] * 10 + [0] * 5,
            "width": np.tile(widths, 3),
            "mean": np.r_[2.0 * widths**0.5, bent, np.ones(5)],
        }
    )
    res = report._residuals(curves).sort("module", "width")
    assert res.filter(pl.col("module") == "flat")["residual"].abs().max() < 1e-9  # an exact power law
    got = res.filter(pl.col("module") == "bent")["residual"].to_numpy()
    x, y = np.log(widths), np.log(bent)
    assert np.allclose(got, y - np.polyval(np.polyfit(x, y, 1), x))  # last step only, same line as the fit


def test_drilldown_cap_without_expectations_keeps_the_steepest(tmp_path, records, monkeypatch):
    monkeypatch.setattr(report, "DRILL_MAX_MODULES", 1)
    exponents = make_exponents(records, verdict="info", expected=None).with_columns(
        alpha=pl.when(pl.col("module") == "blocks.0.mlp.up").then(-0.8).otherwise(pl.col("alpha"))
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    section = html.split('<h2 id="modules">')[1].split("<h2>")[0]
    assert "<strong>blocks.0.mlp.up</strong>" in section and "<strong>embed</strong>" not in section


def test_index_lists_every_report_with_its_verdict_and_escapes_titles(tmp_path):
    from muscale.report import write_index

    records = make_records(modes=("mup",))
    write_report(records, make_exponents(records, verdict="fail"), tmp_path / "a.html", {})
    write_report(records, make_exponents(records, verdict="pass"), tmp_path / "b.html", {})
    (tmp_path / "c.html").write_text("<title>&lt;script&gt;x</title>")
    index = write_index(tmp_path).read_text()
    assert index.count("<a href=") == 3 and 'href="index.html"' not in index
    assert 'class="fail"' in index and 'class="pass"' in index
    assert "<script>" not in index and "&lt;script&gt;x" in index


@pytest.mark.parametrize(("alpha", "flagged"), [(-3.3, True), (-0.5, False)])
def test_a_layer_whose_output_collapses_with_width_is_flagged(tmp_path, records, alpha, flagged):
    exponents = make_exponents(records)
    last = exponents["step"].max()
    exponents = exponents.with_columns(
        alpha=pl.when(
            (pl.col("module") == "blocks.0.mlp.up") & (pl.col("metric") == "act_rms") & (pl.col("step") == last)
        )
        .then(alpha)
        .otherwise(pl.col("alpha"))
    )
    html = write_report(records, exponents, tmp_path / "r.html").read_text(encoding="utf-8")
    assert ("<h2>Layers collapsing with width</h2>" in html) is flagged
    if flagged:
        section = html.split("<h2>Layers collapsing with width</h2>")[1].split("<h2>")[0]
        assert "blocks.0.mlp.up" in section and "-3.300" in section
