"""The dependency rule of the README's "Architecture" section, read from the imports of src/.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency), and so does one under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "market_data_services"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: Layer -> the layers of ours it may import. ``timeutil`` is below everything;
#: ``_lazy`` (re-exporting on first use) is below the packages whose ``__init__`` uses it.
MAY_IMPORT: dict[str, set[str]] = {
    "timeutil": set(),
    "_version": set(),
    "_lazy": set(),
    "runtime": {"timeutil"},
    "market": {"timeutil", "_lazy"},
    "storage": {"market", "timeutil", "_lazy"},
    "ingest": {"runtime", "market", "storage", "timeutil"},
    "aggregators": {"runtime", "market", "storage", "timeutil", "_lazy"},
    "demo": {"runtime", "market", "storage", "ingest", "aggregators", "timeutil", "_lazy"},
    "app": {
        "runtime",
        "market",
        "storage",
        "ingest",
        "aggregators",
        "demo",
        "timeutil",
        "_version",
    },
}
#: The package's own ``__init__`` and ``__main__`` sit on top and may import anything.
TOP = {PACKAGE, f"{PACKAGE}.__main__"}

#: Modules that only re-export names which moved to ``ingest`` in issue 11, so that the
#: import paths of earlier releases keep working. They may cross the rule, hold nothing
#: but imports and ``__all__``, and nothing of ours imports the moved names through them.
COMPATIBILITY = {
    f"{PACKAGE}.aggregators": "ingest_ticks, write_dom, IngestReport, ... were exported here",
    f"{PACKAGE}.aggregators.ticks": "the README showed `from ...aggregators.ticks import`",
    f"{PACKAGE}.aggregators.dom": "ingest_dom, write_dom and BookSnapshot lived here",
    f"{PACKAGE}.aggregators.sentiment": "ingest_sentiment, write_sentiment lived here",
}
#: Single imports that cross the rule, each with the reason; remove one when it is gone.
EXCEPTIONS = {
    (f"{PACKAGE}.aggregators.dom.service", f"{PACKAGE}.ingest.dom"): (
        "the order-book service counts the stored books it refuses in the ingestion's "
        "mds_dom_snapshots_rejected_total and creates the ingestion counters at start; "
        "until the metric families have a home both may import"
    ),
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of ours
    line: int
    lazy: bool  # inside a function or class, or under ``if``


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports_of(module: str) -> Iterator[Import]:
    return _imports_in(module, MODULES[module].read_text(encoding="utf-8"))


def _imports_in(module: str, code: str) -> Iterator[Import]:
    tree = ast.parse(code)
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        lazy = id(node) not in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield Import(module, _known(alias.name), node.lineno, lazy)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # ``from pkg import submodule`` depends on the submodule itself.
                name = f"{source}.{alias.name}"
                yield Import(module, name if name in MODULES else _known(source), node.lineno, lazy)


def _known(name: str) -> str:
    """``name``, or the nearest enclosing module of ours (``pkg.module.attribute``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


IMPORTS = [imp for module in MODULES for imp in _imports_of(module)]


def _layer(module: str) -> str:
    return module.split(".")[1] if module not in TOP else "top"


def _crossings(imports: list[Import], used_exceptions: set[tuple[str, str]]) -> list[str]:
    problems = []
    for imp in imports:
        mine, theirs = _layer(imp.importer), _layer(imp.target)
        if mine in ("top", theirs):
            continue
        if theirs in MAY_IMPORT[mine]:
            continue
        if imp.importer in COMPATIBILITY and theirs == "ingest":
            continue
        if (imp.importer, imp.target) in EXCEPTIONS:
            used_exceptions.add((imp.importer, imp.target))
            continue
        allowed = ", ".join(sorted(MAY_IMPORT[mine])) or "nothing of ours"
        where = f"{MODULES[imp.importer].relative_to(ROOT.parent)}:{imp.line}"
        problems.append(f"{where}: {mine} imports {imp.target} ({mine} may import {allowed})")
    return problems


def test_each_layer_imports_only_the_layers_below_it() -> None:
    used_exceptions: set[tuple[str, str]] = set()
    assert _crossings(IMPORTS, used_exceptions) == []
    assert used_exceptions == set(EXCEPTIONS), "an exception is no longer needed: remove it"


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """``_EXPORTS`` of a module that re-exports on first use (PEP 562): name -> module."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and [
            t.id for t in node.targets if isinstance(t, ast.Name)
        ] == ["_EXPORTS"]:
            exports = ast.literal_eval(node.value)
            assert isinstance(exports, dict)
            return exports
    return {}


def _re_exports(tree: ast.Module) -> dict[str, str]:
    """What a compatibility module re-exports, name -> module: its imports, or, when it
    imports on first use, the ``_EXPORTS`` its ``if TYPE_CHECKING:`` imports spell out."""
    direct = {
        alias.name: node.module or ""
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith(PACKAGE)
        and node.module != f"{PACKAGE}._lazy"
        for alias in node.names
    }
    return direct or _lazy_exports(tree)


def _is_re_export(node: ast.stmt) -> bool:
    """A statement a compatibility module may hold: its docstring, ``__all__``, imports,
    and the machinery of re-exporting on first use (``if TYPE_CHECKING:`` imports,
    ``_EXPORTS``, and ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``)."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    if isinstance(node, ast.Assign):
        if [ast.unparse(t) for t in node.targets] == ["(__getattr__, __dir__)"]:
            return ast.unparse(node.value) == "lazy_exports(__name__, _EXPORTS)"
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return names in (["__all__"], ["_EXPORTS"])
    if isinstance(node, ast.If):
        guard = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        return guard and not node.orelse and all(isinstance(n, ast.ImportFrom) for n in node.body)
    if isinstance(node, ast.FunctionDef):
        return node.name in ("__getattr__", "__dir__")
    return isinstance(node, ast.Import | ast.ImportFrom)


def test_compatibility_modules_only_re_export_and_nothing_of_ours_uses_them_for_moved_names() -> (
    None
):
    for module in COMPATIBILITY:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in tree.body:
            assert _is_re_export(node), (
                f"{module}:{node.lineno}: a compatibility module only re-exports"
            )
    moved = {
        name
        for module in COMPATIBILITY
        for name, source in _re_exports(ast.parse(MODULES[module].read_text("utf-8"))).items()
        if source.startswith(f"{PACKAGE}.ingest")
    }
    users = []
    for module, path in MODULES.items():
        if module in TOP or module in COMPATIBILITY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in COMPATIBILITY:
                users += [f"{module}:{node.lineno} {a.name}" for a in node.names if a.name in moved]
    assert users == [], "import these from market_data_services.ingest"


def test_a_module_that_re_exports_on_first_use_spells_each_name_out_for_type_checkers() -> None:
    lazy = 0
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exports = _lazy_exports(tree)
        if not exports:
            continue
        lazy += 1
        checked = {
            alias.name: node.module
            for block in tree.body
            if isinstance(block, ast.If)
            for node in block.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert checked == exports, f"{module}: _EXPORTS and the TYPE_CHECKING imports differ"
    assert lazy >= 6


def test_the_market_rules_need_nothing_but_numpy_and_the_standard_library() -> None:
    outside = []
    for module, path in MODULES.items():
        if _layer(module) != "market":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("numpy", PACKAGE):
                    outside.append(f"{module}:{node.lineno} imports {name}")
    assert outside == []


def test_no_module_imports_itself_back_through_others() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in IMPORTS:
        if imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    cycles = [sorted(group) for group in _strongly_connected(graph) if len(group) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred edges)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start, targets in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(targets)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def test_private_modules_are_imported_only_from_inside_their_package() -> None:
    strangers = []
    for imp in IMPORTS:
        name = imp.target.rsplit(".", 1)[-1]
        if not name.startswith("_") or name.startswith("__"):
            continue
        package = imp.target.rsplit(".", 1)[0]
        if not imp.importer.startswith(f"{package}.") and imp.importer != package:
            strangers.append(f"{imp.importer}:{imp.line} imports {imp.target}")
    assert strangers == []


def test_only_storage_reads_the_database_dialect() -> None:
    readers = []
    for module, path in MODULES.items():
        if _layer(module) == "storage":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "dialect":
                readers.append(f"{module}:{node.lineno}")
    assert readers == []


@pytest.mark.parametrize(
    "code",
    [
        "from market_data_services.app.cli import main\n",
        "def later():\n    import market_data_services.ingest.ticks\n",
        "if True:\n    from market_data_services.aggregators import candles\n",
    ],
    ids=["module level", "inside a function", "under an if"],
)
def test_the_rule_sees_every_import_of_a_module(code: str) -> None:
    module = f"{PACKAGE}.runtime.service"
    source = MODULES[module].read_text(encoding="utf-8") + "\n" + code
    problems = _crossings(list(_imports_in(module, source)), set())
    assert len(problems) == 1
    assert "runtime may import timeutil" in problems[0]
