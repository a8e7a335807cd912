"""Writing a plugin distribution that installs, lists and passes its tests.

The files come from ``templates/`` beside this module (shipped in the wheel): ``common/``
for every plugin, ``streaming/`` or ``polling/`` for the source itself. A template is
plain text with ``{{placeholders}}``; nothing else is substituted, so the templates read
like the code they become.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from lakeflow.errors import USAGE_ERROR, LakeflowError

Kind = Literal["streaming", "polling"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")
MAX_NAME = 40

#: Template (under templates/) -> path in the new distribution.
FILES = {
    "common/pyproject.toml.tmpl": "pyproject.toml",
    "common/README.md.tmpl": "README.md",
    "common/gitignore.tmpl": ".gitignore",
    "common/__init__.py.tmpl": "src/{module}/__init__.py",
    "{kind}/schema.py.tmpl": "src/{module}/schema.py",
    "{kind}/source.py.tmpl": "src/{module}/source.py",
    "{kind}/test.py.tmpl": "tests/test_{type}.py",
}

DESCRIPTIONS = {
    "streaming": "Trades streamed from a WebSocket feed into a Delta table.",
    "polling": "Prices polled from a REST endpoint into a Delta table.",
}
EXAMPLE_KEYS = {
    "streaming": 'url = "wss://stream.binance.com:9443/ws/btcusdt@trade"',
    "polling": 'url = "https://api.binance.com/api/v3/ticker/price?symbol=BTCUSDT"\n'
    "interval = 60.0",
}


class PluginNameError(LakeflowError, ValueError):
    """NAME cannot name a plugin; the message says why and what would do."""

    exit_code = USAGE_ERROR


@dataclass(frozen=True)
class Names:
    """Every name a plugin called NAME gets, one spelling each."""

    type: str  # source type, schema and table: okx_trades
    module: str  # import package: lakeflow_okx_trades
    dist: str  # distribution: lakeflow-okx-trades
    cls: str  # source class: OkxTradesSource

    @classmethod
    def of(cls, name: str) -> Names:
        """Check NAME and derive the names; :class:`PluginNameError` says what is wrong."""
        if name.lower().startswith(("lakeflow-", "lakeflow_")) or name.lower() == "lakeflow":
            rest = name[len("lakeflow-") :] or "okx_trades"
            raise PluginNameError(
                f"{name!r}: give the name without the lakeflow prefix ({rest!r}); "
                "the distribution becomes lakeflow-NAME and the module lakeflow_NAME"
            )
        if len(name) > MAX_NAME:
            raise PluginNameError(f"{name!r} is {len(name)} characters long; at most {MAX_NAME}")
        if not _NAME.fullmatch(name):
            raise PluginNameError(
                f"{name!r} is not a plugin name: use lower-case letters and digits, starting "
                "with a letter, words joined by '_' or '-' (for example kraken_trades)"
            )
        type_ = name.replace("-", "_")
        camel = "".join(word.capitalize() for word in type_.split("_"))
        return cls(
            type=type_,
            module=f"lakeflow_{type_}",
            dist=f"lakeflow-{type_.replace('_', '-')}",
            cls=f"{camel}Source",
        )


def _core_version() -> str:
    try:
        return importlib.metadata.version("lakeflow-core")
    except importlib.metadata.PackageNotFoundError:  # a source tree without metadata
        return "0.1.0"


def render(text: str, values: dict[str, str]) -> str:
    """Replace every ``{{key}}`` of ``text``; an unknown placeholder is a bug, so it raises."""

    def one(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", one, text)


def scaffold(name: str, kind: Kind, target: Path) -> list[Path]:
    """Write the plugin distribution NAME of ``kind`` into ``target``; return the files.

    Raises :class:`PluginNameError` for a bad NAME and FileExistsError when ``target`` exists
    and is not an empty folder (nothing is overwritten).
    """
    names = Names.of(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(
            f"{target} already exists and is not an empty folder; "
            "choose another --dir (nothing was written)"
        )
    values = {
        "type": names.type,
        "schema": names.type,
        "table": names.type,
        "module": names.module,
        "dist": names.dist,
        "class": names.cls,
        "config_class": names.cls.removesuffix("Source") + "Config",
        "kind": kind,
        "description": DESCRIPTIONS[kind],
        "core_version": _core_version(),
        "extra_dependencies": ', "polars>=1.30", "pydantic>=2.8"'
        + (', "aiohttp>=3.10"' if kind == "polling" else ""),
        "example_keys": EXAMPLE_KEYS[kind],
    }
    root = files("lakeflow.cli.new_plugin") / "templates"
    written = []
    for template, destination in FILES.items():
        text = (root / template.format(kind=kind)).read_text(encoding="utf-8")
        path = target / destination.format(module=names.module, type=names.type)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(text, values), encoding="utf-8")
        written.append(path)
    return written
