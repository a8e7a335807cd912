"""Secrets kept out of logs and errors: values from ``${VAR}`` and credential options."""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

#: storage_options keys whose values are credentials, whatever their source.
SECRET_KEY_WORDS = ("secret", "password", "token", "key", "credential", "sas", "signature")
#: Values this short are not worth masking (and masking them would garble logs).
_MIN_LENGTH = 4
MASK = "***"


def add_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on."""
    global _pattern
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def is_secret_key(key: str) -> bool:
    """True when an option named ``key`` holds a credential."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    pattern = _pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def mask_uri(uri: str) -> str:
    """A URI with any ``user:password@`` part and known secrets masked."""
    return redact(re.sub(r"(?<=://)[^/@]+@", f"{MASK}@", uri))


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the final message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
