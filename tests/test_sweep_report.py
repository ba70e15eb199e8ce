"""The learning-rate sweep report: one offline file written atomically, a figure per view, the
drift table muscale.transfer computes, user text escaped, and awkward sweeps (a width whose every
run diverged, a mode without a fit, one seed, every run diverged) drawn rather than crashed."""

from __future__ import annotations

import base64
import dataclasses
import re
from html.parser import HTMLParser

import polars as pl
import pytest
import torch
from studies_for_tests import TINY

from muscale import api
from muscale.errors import InputError
from muscale.kinds.lr_transfer import analysis as transfer
from muscale.kinds.lr_transfer import figures, write_sweep_report
from muscale.report import write_index
from muscale.run import train

pytestmark = pytest.mark.usefixtures("undrawn")  # what they check is in the HTML, not its pixels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The mlp brings its own data and takes no options; two seeds give intervals.
STUDY = (
    TINY.replace('["transformer"]', '["mlp"]')
    .replace("[options]\nlayers = 1\n\n", "")
    .replace("steps = 6", "seeds = 2\nsteps = 8")
    .replace("batch_size = 2", "batch_size = 4")
    .replace("seq_len = 16", "seq_len = 8")
    .replace("log2_min = -9", "log2_min = -12")
    .replace("log2_max = -3", "log2_max = -6")
)
DIVERGING_LOG2_LR = 6  # Adam at lr 64 blows the model up within a step or two


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> pl.DataFrame:
    """Real runs (hundredths of a second each after the first): the grid, plus one diverging learning rate per width and seed."""
    path = tmp_path_factory.mktemp("study") / "tiny.toml"
    path.write_text(STUDY)
    specs = api.load(path).specs
    top = max(s.lr for s in specs)
    specs += tuple(dataclasses.replace(s, lr=2.0**DIVERGING_LOG2_LR) for s in specs if s.lr == top)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small run 100× slower when two threads contend with a busy machine
    try:
        return pl.concat([train.run(s) for s in specs], how="vertical_relaxed")
    finally:
        torch.set_num_threads(threads)


def analysis(records: pl.DataFrame, tolerance: float = 0.25) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    losses = transfer.final_losses(records)
    best = transfer.optima(losses)
    return transfer.drift(best, tolerance), transfer.per_width(best), losses


class Tables(HTMLParser):
    """The cell texts of every <table id=…>, row by row (header rows left out)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table, self._row, self._cell = None, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "id" in attrs:
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row:
            self._table.append(self._row)
            self._row = None
        elif tag == "td" and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def pngs(html: str) -> list[bytes]:
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    return [base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True) for src in sources]


def render(records: pl.DataFrame, tmp_path, **kwargs) -> str:
    kwargs.setdefault("title", "tiny sweep")
    return write_sweep_report(records=records, path=tmp_path / "sweep.html", **kwargs).read_text(encoding="utf-8")


def banner(html: str) -> tuple[str, str]:
    match = re.search(r'<div class="banner (\w+)">\s*<strong>([^<]*)</strong>', html)
    assert match, "no verdict banner"
    return match.group(1), match.group(2)


@pytest.mark.drawn
def test_report_is_one_offline_file_with_a_png_per_view(tmp_path, records, monkeypatch):
    path = write_sweep_report("tiny sweep", records, tmp_path / "sweep.html", {"command": "muscale sweep tiny.toml"})
    assert path == tmp_path / "sweep.html"
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.html"]  # no temporary file left behind
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    images = pngs(html)
    assert len(images) == 3  # loss vs learning rate, η* vs width, loss curves
    assert all(png.startswith(PNG_SIGNATURE) for png in images)
    assert len(set(images)) == 3
    assert "<td>muscale sweep tiny.toml</td>" in html
    assert banner(html)[0] in ("pass", "warn", "info")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(figures, "curves_figure", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_sweep_report("tiny sweep", records, path)
    assert path.read_text(encoding="utf-8") == html  # a failed render leaves the last report whole
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.html"]


@pytest.mark.parametrize("tolerance", [1e-6, 100.0])  # every fitted α drifts; every fitted α transfers
def test_drift_table_is_what_transfer_computes(tmp_path, records, tolerance):
    drift, per_width, losses = analysis(records, tolerance)
    html = render(records, tmp_path, tolerance=tolerance)
    tables = Tables(html).tables
    rows = {tuple(r[:3]): r for r in tables["drift"]}
    assert len(tables["drift"]) == drift.height == 2  # one row per (family, mode, optimizer)
    for r in drift.iter_rows(named=True):
        row = rows[(r["family"], r["mode"], r["optimizer"])]
        assert row[3] == (f"{r['alpha']:+.3f}" if r["alpha"] is not None else "—")
        assert row[-1] == r["verdict"]
        assert int(row[10]) == r["diverged_runs"] >= 4  # at least the diverging learning rate's, every width and seed
    verdicts = set(drift["verdict"])
    assert verdicts <= {"drifts" if tolerance < 1 else "transfers", "no fit"}
    assert banner(html)[0] == ("warn" if "drifts" in verdicts else "pass" if verdicts == {"transfers"} else "info")
    optima = {(r[1], int(r[3])): r for r in tables["optima"]}
    assert len(optima) == 4  # every (mode, width)
    for r in per_width.iter_rows(named=True):
        assert optima[(r["mode"], r["width"])][4] == f"{r['log2_lr_opt']:+.2f}"
    fates = losses.group_by("mode", "width").agg(pl.len(), pl.col("diverged").sum())
    for mode, width, runs, diverged in fates.iter_rows():
        assert optima[(mode, width)][10] == f"{diverged} of {runs}" and runs == 8


def test_tables_sort_and_filter_without_building_html(tmp_path, records):
    html = render(records, tmp_path)
    for table in ("drift", "optima"):
        head = html.split(f'<table id="{table}">')[1].split("</thead>")[0]
        assert 'data-type="num"' in head and 'data-key="verdict"' in head
        assert f'data-table="{table}"' in html  # its filter bar
    assert 'data-type="num" data-key="alpha">α<' in html
    script = "".join(part.split("</script>")[0] for part in html.split("<script>")[1:])
    assert html.count("<script>") == 1 and "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_user_strings_are_escaped(tmp_path, records):
    evil = "<script>alert(1)</script>"
    records = records.with_columns(family=pl.lit(evil), mode=pl.col("mode") + r"<u>$\x$")  # and not TeX in a legend
    html = render(records, tmp_path, title=f"{evil} & co", meta={"note": "<u>x</u>"})
    assert "<script>alert" not in html and "<u>" not in html
    assert html.count("<script") == 1  # the report's own table script, nothing from data
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>" in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html  # family, in the tables
    assert r"sp&lt;u&gt;$\x$: α =" in html  # mode, in the banner
    assert "<td>&lt;u&gt;x&lt;/u&gt;</td>" in html  # metadata
    write_index(tmp_path)  # the index reads the title back and escapes it again
    assert "<script>alert" not in (tmp_path / "index.html").read_text()


def _all_diverged(records: pl.DataFrame, where: pl.Expr) -> pl.DataFrame:
    """Mark the runs `where` selects as diverged, with a blown-up held-out loss."""
    return records.with_columns(
        value=pl.when(where & (pl.col("metric") == "diverged"))
        .then(1.0)
        .when(where & (pl.col("metric") == "eval_loss"))
        .then(pl.col("value") * 1e4)
        .otherwise(pl.col("value"))
    )


def test_a_width_whose_every_run_diverged_and_a_mode_without_fit(tmp_path, records):
    # sp gains a width 64 whose every run diverged; mup loses every run of width 32, so it has one width left
    wide = records.filter((pl.col("mode") == "sp") & (pl.col("width") == 32)).with_columns(
        width=pl.lit(64, records["width"].dtype), run_id=pl.col("run_id") + "-w64"
    )
    records = _all_diverged(
        pl.concat([records, wide]), (pl.col("width") == 64) | ((pl.col("mode") == "mup") & (pl.col("width") == 32))
    )
    drift, _, _ = analysis(records)
    assert dict(drift.select("mode", "verdict").iter_rows())["mup"] == "no fit"  # the case this test is about
    html = render(records, tmp_path)
    tables = Tables(html).tables
    optima = {(r[1], int(r[3])): r for r in tables["optima"]}
    assert optima[("sp", 64)][-1] == "all diverged" and optima[("sp", 64)][10] == "8 of 8"
    assert optima[("sp", 64)][4] == optima[("sp", 64)][9] == "—"  # no η*, no best grid point
    assert optima[("mup", 32)][-1] == "all diverged"
    assert optima[("sp", 16)][-1] != "all diverged"
    drift_rows = {r[1]: r for r in tables["drift"]}
    assert drift_rows["mup"][3] == "—" and drift_rows["mup"][-1] == "no fit"
    assert "mup: α = — <b>no fit</b>" in html
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs(html)) and len(pngs(html)) == 3


def test_one_seed_has_no_intervals(tmp_path, records):
    one = records.filter(pl.col("seed") == 0)
    html = render(one, tmp_path)
    optima = Tables(html).tables["optima"]
    assert len(optima) == 4
    assert all(r[6] == r[7] == "—" and r[8] == "1" for r in optima if r[4] != "—")
    assert len(pngs(html)) == 3


def test_every_run_diverged(tmp_path, records):
    html = render(_all_diverged(records, pl.lit(True)), tmp_path)
    kind, line = banner(html)
    assert kind == "info" and line.startswith("NO FIT — 2 of 2 setting(s)")
    assert len(pngs(html)) == 1  # only loss vs learning rate: no optimum to plot, no curve to show
    assert "No width has an optimum" in html and "No run without divergence" in html
    assert {r[-1] for r in Tables(html).tables["optima"]} == {"all diverged"}


def test_records_without_held_out_loss_are_a_clear_error(tmp_path, records):
    with pytest.raises(InputError, match=r"records: no eval_loss rows \(it has diverged, loss, train_loss\)"):
        write_sweep_report("x", records.filter(pl.col("metric") != "eval_loss"), tmp_path / "sweep.html")
    with pytest.raises(InputError, match="records: missing column.*run_id"):
        write_sweep_report("x", records.drop("run_id"), tmp_path / "sweep.html")
    assert not any(tmp_path.iterdir())
