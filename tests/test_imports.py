"""lakeflow's modules import one another without a circle, lazy imports included.

A circle of imports works only in the order the modules happen to be first imported; an
import moved inside a function to "break" one only hides it until that function runs
first. So every import counts, at the top of a module or inside a function, except those
under ``if TYPE_CHECKING:`` (never executed). The lazy ``_EXPORTS`` tables of
``lakeflow/__init__.py`` and some packages are strings resolved on attribute access by
``importlib``: not imports of the module that holds them.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Module -> module it imports -> where (``path:line`` of the first such import).
Graph = dict[str, dict[str, str]]


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in folder ``root``, by dotted name (packages included)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((package, *parts))] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, but not under TYPE_CHECKING."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _imports(child)


def graph(root: Path, package: str) -> Graph:
    """The package's internal imports: ``from P import m`` of a submodule ``m`` is ``P.m``."""
    known = modules(root, package)
    edges: Graph = {}
    for name, path in known.items():
        where = path.relative_to(root.parent)
        # What a relative import is relative to: a package's own name, a module's package.
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = edges.setdefault(name, {})
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            found = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                source = node.module or ""
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join([*base, source] if source else base)
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    found.append(submodule if submodule in known else source)
            for target in found:
                if target in known and target != name:
                    targets.setdefault(target, f"{where}:{node.lineno}")
    return edges


def cycles(edges: Graph) -> list[list[str]]:
    """One shortest circle per strongly connected group of modules, each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    found = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}
        queue = [start]
        while queue:  # breadth first: the shortest way back to the start
            node = queue.pop(0)
            for target in sorted(edges[node]):
                if target == start:
                    found.append([*paths[node], start])
                    queue = []
                    break
                if target in group and target not in paths:
                    paths[target] = [*paths[node], target]
                    queue.append(target)
    return sorted(found)


def describe(circle: list[str], edges: Graph) -> str:
    """The circle, then each of its imports with the file and line it is on."""
    steps = "".join(f"\n    {edges[a][b]}: {a} imports {b}" for a, b in itertools.pairwise(circle))
    return " -> ".join(circle) + steps


def test_lakeflow_has_no_import_cycle():
    edges = graph(ROOT / "lakeflow", "lakeflow")
    found = [describe(circle, edges) for circle in cycles(edges)]
    assert not found, (
        "import cycles (an import inside a function counts too; move what both need into "
        "a module below them):\n" + "\n".join(found)
    )


# The rules the graph above is built by, on packages made for the purpose.


def package(tmp_path: Path, files: dict[str, str]) -> Graph:
    """The graph of package ``pkg`` made of ``files`` (path under ``pkg/`` -> source)."""
    for name, source in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return graph(tmp_path / "pkg", "pkg")


def test_an_import_inside_a_function_is_an_edge(tmp_path):
    edges = package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f():\n    from pkg.b import g\n",
            "b.py": "from pkg.a import f\n",
        },
    )
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_an_import_under_type_checking_is_no_edge_but_its_else_branch_is(tmp_path):
    edges = package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import g\n",
            "b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.a import f\nelse:\n    from pkg import c\n",
            "c.py": "",
        },
    )
    assert edges["pkg.a"] == {}
    assert list(edges["pkg.b"]) == ["pkg.c"]


def test_from_a_package_importing_a_submodule_is_an_edge_to_the_submodule(tmp_path):
    edges = package(
        tmp_path,
        {
            "__init__.py": "from pkg import sub\n",
            "sub/__init__.py": "from pkg.sub import mod, NAME\n",
            "sub/mod.py": "",
        },
    )
    assert list(edges["pkg"]) == ["pkg.sub"]
    assert list(edges["pkg.sub"]) == ["pkg.sub.mod"]  # NAME is the package's own


def test_relative_imports_are_resolved(tmp_path):
    edges = package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from . import mod\n",
            "sub/mod.py": "from .other import x\nfrom ..top import y\n",
            "sub/other.py": "",
            "top.py": "",
        },
    )
    assert list(edges["pkg.sub"]) == ["pkg.sub.mod"]
    assert sorted(edges["pkg.sub.mod"]) == ["pkg.sub.other", "pkg.top"]


def test_a_lazy_exports_table_is_no_edge(tmp_path):
    edges = package(
        tmp_path,
        {
            "__init__.py": "import importlib\n_EXPORTS = {'f': 'pkg.a'}\n"
            "def __getattr__(name):\n"
            "    return getattr(importlib.import_module(_EXPORTS[name]), name)\n",
            "a.py": "from pkg import f\n",
        },
    )
    assert edges["pkg"] == {}
    assert cycles(edges) == []
