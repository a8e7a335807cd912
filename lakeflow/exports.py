"""Lazy exports (PEP 562): a package's public names, imported when first used.

A package keeps one table, name -> module, and hands it here::

    __getattr__, __dir__, __all__ = lakeflow.lazy_exports(__name__, _EXPORTS, "register_sources")

Every ``lakeflow`` command imports each plugin's entry-point module (``--help`` included),
so importing a package must cost nothing until one of its names is used. Type checkers
do not run ``__getattr__``: the package also imports the table's names under
``TYPE_CHECKING`` (``tests/test_public_api.py`` holds the two to each other).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], *own: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` of ``package`` from its export table.

    ``table`` maps each public name to the module that defines it; ``own`` names what the
    package defines itself (its hook implementations), which ``__all__`` lists too.
    """
    names = [*table, *own]

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(source)
        value = getattr(imported, name)
        module = sys.modules[package]
        setattr(module, name, value)  # once: later lookups are plain reads
        # Importing ``package.collect`` binds the package's attribute ``collect`` to the
        # submodule, hiding a function of that name it exports: bound back here.
        short = source.rsplit(".", 1)[-1]
        if table.get(short) == source:
            setattr(module, short, getattr(imported, short))
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
