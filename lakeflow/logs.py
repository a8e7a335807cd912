"""Logging set-up: terminal and/or a size-rotated file, the source name on every line.

Lines are text (``FORMAT``) or, with ``format="json"``, one JSON object per line with
the keys ``time``, ``level``, ``logger``, ``source`` and ``message`` (and ``exception``).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from lakeflow.secrets import RedactingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(source)s] %(message)s"


class _SourceDefault(logging.Filter):
    """Give every record a ``source`` attribute, ``-`` when it concerns no source."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "source"):
            record.source = "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log shippers (Loki, Elasticsearch, CloudWatch)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "source": getattr(record, "source", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so the live view can redirect it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure(
    level: str = "INFO",
    file: str | Path | None = None,
    terminal: bool = True,
    max_bytes: int = 10_000_000,
    backups: int = 5,
    format: Literal["text", "json"] = "text",
) -> None:
    """Send lakeflow's (and its libraries') log records to the terminal and/or ``file``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_lakeflow", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if terminal:
        handlers.append(_StderrHandler())
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        )
    formatter = JsonFormatter() if format == "json" else logging.Formatter(FORMAT)
    for handler in handlers:
        handler._lakeflow = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        handler.addFilter(_SourceDefault())
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
