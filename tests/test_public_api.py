"""The public API is sealed: plugins import ``lakeflow`` and nothing under it.

A plugin that reaches into ``lakeflow.sources.websocket`` or ``lakeflow.units`` breaks the
day that module moves, so plugins (and the example, and what ``lakeflow new-plugin``
writes) import from ``lakeflow`` only; their tests may use ``lakeflow.testing`` too.
Every import counts: under ``TYPE_CHECKING`` and inside functions as well.

The packages that import their names on first use (PEP 562) write each name once, in
their ``_EXPORTS`` table (name -> module), which ``__getattr__``, ``__dir__`` and
``__all__`` read. Their ``TYPE_CHECKING`` block repeats the table for type checkers, which
do not run ``__getattr__``; these tests hold the two to each other and every name to a
real object.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lakeflow

ROOT = Path(__file__).resolve().parents[1]
#: What a test of a plugin may import besides ``lakeflow``.
TEST_KIT = "testing"


def sources_of_plugins() -> list[Path]:
    """Every module of the workspace's plugins and of the example."""
    return sorted([*ROOT.glob("plugins/*/src/**/*.py"), *ROOT.glob("examples/*/src/**/*.py")])


def templates() -> list[Path]:
    """The files ``lakeflow new-plugin`` writes a plugin from."""
    return sorted((ROOT / "lakeflow").glob("**/templates/**/*.tmpl"))


def reaches_in(source: str, filename: str = "<source>") -> list[str]:
    """Each import of ``source`` that goes past the public API, as ``line: statement``.

    ``import lakeflow.x``, ``from lakeflow.x import y`` (at any depth: under
    ``TYPE_CHECKING``, inside a function), and ``from lakeflow import y`` of a name the
    API does not export.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith("lakeflow.")
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("lakeflow."):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "lakeflow":
                found += [
                    f"{node.lineno}: from lakeflow import {alias.name} (not exported)"
                    for alias in node.names
                    if alias.name not in lakeflow.__all__
                ]
    return found


#: ``from lakeflow.x import`` or ``import lakeflow.x`` at the start of a line of text.
_SUBMODULE_IMPORT = re.compile(
    r"^\s*(?:from\s+lakeflow\.(\w+)\S*\s+import|import\s+lakeflow\.(\w+))"
)


def test_the_check_finds_every_way_of_reaching_in():
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import lakeflow\n"
        "from lakeflow import WebSocketSource, parse_duration\n"
        "if TYPE_CHECKING:\n"
        "    from lakeflow.sources.websocket import WebSocket\n"
        "def later():\n"
        "    import lakeflow.units as units\n"
        "    from lakeflow import _EXPORTS\n"
    )
    assert reaches_in(source) == [
        "6: from lakeflow.sources.websocket import ...",
        "8: import lakeflow.units",
        "9: from lakeflow import _EXPORTS (not exported)",
    ]


def test_plugins_and_the_example_import_only_the_public_api():
    assert sources_of_plugins(), "no plugin sources found"
    found = {
        str(path.relative_to(ROOT)): wrong
        for path in sources_of_plugins()
        if (wrong := reaches_in(path.read_text(encoding="utf-8"), str(path)))
    }
    assert not found, (
        "plugins import from `lakeflow` only; export what they need from "
        f"lakeflow/__init__.py: {found}"
    )


def test_the_plugin_templates_import_only_the_public_api():
    assert templates(), "no templates of lakeflow new-plugin found"
    found = []
    for path in templates():
        # The generated tests may use the test kit; the plugin itself may not.
        allowed = {TEST_KIT} if path.name.startswith("test") else set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _SUBMODULE_IMPORT.match(line)
            if match and (match.group(1) or match.group(2)) not in allowed:
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, found


# -- packages that export lazily ---------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _defines(node: ast.stmt) -> list[str]:
    """The names a module-level statement binds by assignment or ``def``."""
    if isinstance(node, ast.FunctionDef):
        return [node.name]
    targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
    return [target.id for target in targets if isinstance(target, ast.Name)]


def lazy_packages() -> dict[str, Path]:
    """Each package whose ``__init__.py`` has an ``_EXPORTS`` table or a ``__getattr__``."""
    inits = {
        ".".join(path.parent.relative_to(ROOT).parts): path
        for path in (ROOT / "lakeflow").glob("**/__init__.py")
    }
    for pattern in ("plugins/*/src/*/__init__.py", "examples/*/src/*/__init__.py"):
        inits |= {path.parent.name: path for path in ROOT.glob(pattern)}
    found = {}
    for package, path in sorted(inits.items()):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        defined = {name for node in tree.body for name in _defines(node)}
        if defined & {"_EXPORTS", "__getattr__"}:
            found[package] = path
    return found


LAZY = lazy_packages()


def type_checking_imports(path: Path) -> dict[str, str]:
    """What the module-level ``if TYPE_CHECKING:`` block imports by ``from``: name -> module.

    ``import x`` (a module an annotation needs, such as ``click``) is not an export.
    """
    imported: dict[str, str] = {}
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    assert statement.level == 0 and statement.module, ast.unparse(statement)
                    for alias in statement.names:
                        name = alias.asname or alias.name
                        assert name == alias.name, f"{path}: {ast.unparse(statement)} renames"
                        imported[name] = statement.module
    return imported


def test_the_lazy_packages_are_found():
    assert {
        "lakeflow",
        "lakeflow.config",
        "lakeflow.runtime",
        "lakeflow.testing",
        "lakeflow_market_schemas",
        "lakeflow_binance_liquidations",
        "lakeflow_charts",
    } <= set(LAZY)


@pytest.mark.parametrize("package", sorted(LAZY))
def test_the_type_checking_block_imports_exactly_the_table(package):
    module = importlib.import_module(package)
    table = getattr(module, "_EXPORTS", None)
    assert isinstance(table, dict), f"{package} has a __getattr__ but no _EXPORTS table"
    imported = type_checking_imports(LAZY[package])
    # A submodule exported by name (``lakeflow.hookspecs``) is not in the table.
    submodules = {
        name
        for name, source in imported.items()
        if source == package and importlib.util.find_spec(f"{package}.{name}") is not None
    }
    assert {n: m for n, m in imported.items() if n not in submodules} == table
    assert submodules <= set(module.__all__)


@pytest.mark.parametrize("package", sorted(LAZY))
def test_every_exported_name_resolves_to_its_modules_object(package):
    module = importlib.import_module(package)
    for name, source in module._EXPORTS.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name
    assert set(module._EXPORTS) <= set(module.__all__)
    assert set(module._EXPORTS) <= set(dir(module))
    for name in set(module.__all__) - set(module._EXPORTS):
        assert getattr(module, name) is not None, name  # its own functions, submodules


@pytest.mark.parametrize("package", sorted(LAZY))
def test_a_name_not_exported_is_an_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no attribute 'not_exported'"):
        _ = module.not_exported


def test_importing_lakeflow_and_its_websocket_type_loads_no_heavy_library():
    # Every command imports lakeflow, --help included; a plugin's annotations name
    # lakeflow.WebSocket, which must not need aiohttp.
    probe = (
        "import sys, lakeflow\n"
        "heavy = ('polars', 'deltalake', 'pydantic', 'pluggy', 'aiohttp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "lakeflow.WebSocket, lakeflow.parse_duration\n"
        "print(sorted(m for m in ('aiohttp', 'websockets') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:2] == ["[]", "[]"]
