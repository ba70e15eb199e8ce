"""The package's shape: no module of muscale imports one that imports it back (directly or
through others), no study kind imports another, so that each kind's folder is its whole
story, and no kind's report decides what it shows."""

import ast
import importlib
import inspect
from pathlib import Path

import muscale

ROOT = Path(muscale.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module → the muscale modules it imports (`from . import x` counts as importing x)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
                stem = ".".join(p for p in (base, node.module) if p)
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_inside_muscale():
    assert _cycle(_imports()) is None, " → ".join(_cycle(_imports()))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_kind_imports_another():
    graph = _imports()
    kinds = {p.name for p in (ROOT / "kinds").iterdir() if (p / "__init__.py").is_file()}
    for module, edges in graph.items():
        owner = module.split(".")[2] if module.startswith("muscale.kinds.") else None
        if owner is None:
            continue
        others = {e for e in edges if e.startswith("muscale.kinds.") and e.split(".")[2] != owner}
        assert not others, f"{module} imports {others}"
    assert kinds == {"coord_check", "lr_transfer", "equilibrium", "width", "depth_profile"}


# The layers, lowest first: a module imports only from its own layer and the ones before it,
# so data flows one way (DESIGN.md) and a newcomer can read the package bottom up.
LAYERS = (
    "errors",
    "config",
    "models",
    "measure",
    "run",
    "integrations",
    "analysis",
    "study",
    "report",
    "kinds",
    "api",
    "cli",
)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} → {edge}"
        for module, edges in sorted(graph.items())
        for edge in sorted(edges)
        if _layer(module) is not None and _layer(edge) is not None and _layer(edge) > _layer(module)
    ]


def test_every_module_sits_in_a_layer():
    loose = sorted(m for m in _imports() if m != "muscale" and _layer(m) is None and m != "muscale.__main__")
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


def test_no_layer_imports_a_later_one():
    assert not _upward(_imports()), "\n".join(_upward(_imports()))


def test_the_layer_check_finds_an_upward_import():
    assert _upward({"muscale.models.lrm": {"muscale.run.train"}}) == ["muscale.models.lrm → muscale.run.train"]
    assert _upward({"muscale.run.train": {"muscale.models.lrm"}}) == []


# A kind's report words and draws what its analysis decided (the StudyKind contract: a render
# never fits or judges). So its drawing modules import nothing of muscale.analysis (fits,
# intervals, the gate) and, from the rest of their kind, no function and no module: only the
# vocabulary and the data classes they draw.
DRAWING = ("report", "view", "figures")


def _judging(module: str, source: str) -> list[str]:
    """The imports of drawing module `module` (source `source`) that could fit or judge."""
    package = module.rpartition(".")[0]
    kind = ".".join(module.split(".")[:3])
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            stem = ".".join(p for p in (base, node.module) if p)
            targets = [(stem, a.name) for a in node.names]
        else:
            continue
        for target, name in targets:
            full = f"{target}.{name}" if name else target
            if target.startswith("muscale.analysis"):
                found.append(f"{module} imports {full}")
            elif target == kind or target.startswith(kind + "."):
                try:
                    value = importlib.import_module(full)
                except ModuleNotFoundError:
                    value = getattr(importlib.import_module(target), name)
                drawing = inspect.ismodule(value) and value.__name__.rpartition(".")[2] in DRAWING
                if not drawing and (inspect.ismodule(value) or inspect.isfunction(value)):
                    found.append(f"{module} imports {full}")
    return found


def test_no_kinds_report_imports_what_fits_or_judges():
    drawing = [p for p in (ROOT / "kinds").glob("*/*.py") if p.stem in DRAWING]
    assert {p.parent.name for p in drawing if p.stem == "report"} == {
        "coord_check",
        "lr_transfer",
        "equilibrium",
        "width",
        "depth_profile",
    }
    found = [line for p in drawing for line in _judging(_module(p), p.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def test_the_judging_check_finds_the_gate_a_verdict_function_and_an_analysis_module():
    source = (
        "from ...analysis import gate\nfrom ...analysis.fit import first_and_last\n"
        "from .analysis import STATUSES, Claim, judge\nfrom . import analysis, report\n"
        "from ...report.text import signed\n"
    )
    assert _judging("muscale.kinds.width.report", source) == [
        "muscale.kinds.width.report imports muscale.analysis.gate",
        "muscale.kinds.width.report imports muscale.analysis.fit.first_and_last",
        "muscale.kinds.width.report imports muscale.kinds.width.analysis.judge",
        "muscale.kinds.width.report imports muscale.kinds.width.analysis",
    ]
