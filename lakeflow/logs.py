"""Logging set-up: terminal and/or a size-rotated file, the source name on every line."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from lakeflow.secrets import RedactingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(source)s] %(message)s"


class _SourceDefault(logging.Filter):
    """Give every record a ``source`` attribute, ``-`` when it concerns no source."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "source"):
            record.source = "-"
        return True


def configure(
    level: str = "INFO",
    file: str | Path | None = None,
    terminal: bool = True,
    max_bytes: int = 10_000_000,
    backups: int = 5,
) -> None:
    """Send lakeflow's (and its libraries') log records to the terminal and/or ``file``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_lakeflow", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if terminal:
        handlers.append(logging.StreamHandler(sys.stderr))
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        )
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler._lakeflow = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        handler.addFilter(_SourceDefault())
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
