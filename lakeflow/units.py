"""Durations and sizes as people write them, one grammar for the pipeline file and the CLI.

A duration is seconds (``3600``, ``"0"``) or one or more numbers with a unit, largest
first or not: ``"90s"``, ``"1.5h"``, ``"1h30m"``, ``"7d"`` (units ``s m h d w``). A size
is bytes (``134217728``) or a number with a unit: ``KB MB GB`` are powers of 1000,
``KiB MiB GiB`` powers of 1024. Sizes are printed in powers of 1024 with the IEC units
(``"128.0 MiB"``), so what is printed reads back as the same number.

Every config key that is a duration is declared :data:`Duration`, so each takes this
grammar and keeps its own bounds: ``interval: Duration = Field(default=60.0, gt=0)``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
DURATION_HELP = 'seconds (3600) or numbers with units s, m, h, d, w ("90s", "1.5h", "1h30m", "7d")'
SIZE_HELP = 'bytes (134217728) or a number with a unit B, KB, MB, GB, KiB, MiB or GiB ("128MiB")'


def parse_duration(value: Any) -> Any:
    """Seconds (a float) from a duration string; any other value is returned as it is.

    Returning non-strings unchanged lets pydantic validate numbers (and refuse other
    types) with its own messages.
    """
    if not isinstance(value, str):
        return value
    compact = value.replace(" ", "").lower()
    if _NUMBER.fullmatch(compact):
        return float(compact)
    if compact and not _PART.sub("", compact):
        return float(sum(float(n) * DURATION_UNITS[unit] for n, unit in _PART.findall(compact)))
    raise ValueError(f"{value!r} is not a duration: use {DURATION_HELP}")


def _config_duration(value: Any) -> Any:
    """:func:`parse_duration` for a config key, which refuses ``true``: not a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a duration: use {DURATION_HELP}")
    return parse_duration(value)


#: A config key that is a duration: seconds or a string in the grammar above, validated
#: as a float (bounds such as ``gt=0`` go in the key's ``Field``).
Duration = Annotated[float, BeforeValidator(_config_duration)]


def parse_size(value: Any) -> Any:
    """Bytes (an int) from a size string; any other value is returned as it is."""
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: use {SIZE_HELP}")
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "b").lower()])


def format_size(n: int) -> str:
    """Bytes for people, in powers of 1024: ``"512 B"``, ``"4.6 GiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable: the loop returns at TiB


def format_duration(seconds: float) -> str:
    """The shortest exact way to write ``seconds`` with one unit: ``"1h"``, ``"7d"``, ``"0.5s"``."""
    for unit in ("w", "d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
