"""Reading a pipeline file: its TOML, with ``${VAR}`` filled from the environment or ``.env``.

No pydantic and no plugins here, and no import of the rest of :mod:`lakeflow.config`:
:mod:`lakeflow.config.loader` validates what this returns, and ``lakeflow status`` needs
nothing more than this (the names of the sources, the state folder), so it answers
without loading either. Every value that came from a variable is registered as a
secret, so it is masked in logs and errors.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lakeflow.errors import ConfigError
from lakeflow.secrets import add_secret

_VAR = re.compile(r"\$\{([^}]*)\}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The file's TOML with every ``${VAR}`` substituted. Raises :class:`ConfigError`."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: no such pipeline file (create one, or pass its path)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    env = dict(read_dotenv(path.parent / ".env"))
    env.update(os.environ)
    return _substitute(data, env, where, ())


def _substitute(value: Any, env: Mapping[str, str], where: str, path: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, env, where, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, where, (*path, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        var = match.group(1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ConfigError(f"{where}: {'.'.join(path)}: ${{{var}}} is not a valid variable name")
        if var not in env:
            raise ConfigError(
                f"{where}: {'.'.join(path)}: environment variable {var} is not set "
                "(set it, or add it to the .env file beside the pipeline)"
            )
        add_secret(env[var])
        return env[var]

    return _VAR.sub(replace, value)


def read_dotenv(path: Path) -> Iterable[tuple[str, str]]:
    """``KEY=VALUE`` pairs of a ``.env`` file (comments, ``export`` and quotes allowed)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    pairs = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        pairs.append((key.strip(), value))
    return pairs
