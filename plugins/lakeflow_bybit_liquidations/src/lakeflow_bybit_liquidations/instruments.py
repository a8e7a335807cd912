"""Bybit's instrument list (``GET /v5/market/instruments-info``), paged, as a polars frame.

The source needs it twice: every trading symbol of a category is one topic to subscribe
(there is no all-market topic), and a linear symbol's ``quoteCoin`` is the currency of
its notional. The source declares it as reference data; the core keeps it fresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import polars as pl

#: The status of a symbol that can be traded, and so liquidated.
TRADING = "Trading"
#: Bybit's largest page.
PAGE_LIMIT = "1000"
#: Pages followed at most: a few hundred symbols per category fit in one page of 1000;
#: more than this is a server that keeps handing out cursors.
MAX_PAGES = 50

INSTRUMENTS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "status": pl.String(),
        "contract_type": pl.String(),
        "base_coin": pl.String(),
        "quote_coin": pl.String(),
        "settle_coin": pl.String(),
    }
)
#: Where each column is in an instruments-info entry.
_KEYS = {
    "symbol": "symbol",
    "status": "status",
    "contract_type": "contractType",
    "base_coin": "baseCoin",
    "quote_coin": "quoteCoin",
    "settle_coin": "settleCoin",
}

#: ``fetch(url, params)``: GET and parse JSON; the core hands a Reference's ``load`` one
#: that also honours its holds (a 403 ban) and retries.
Fetch = Callable[[str, Mapping[str, str]], Awaitable[Any]]


class InstrumentsError(ValueError):
    """The instrument list was answered, but not with a usable list."""


def empty_instruments() -> pl.DataFrame:
    """The instrument frame of a source that has not read the list yet."""
    return pl.DataFrame(schema=INSTRUMENTS_SCHEMA)


async def fetch_instruments(fetch: Fetch, url: str, category: str) -> pl.DataFrame:
    """Every instrument of ``category``, following ``result.nextPageCursor`` until it is empty.

    Raises :class:`InstrumentsError` for an answer that is not a list (Bybit answers
    errors with HTTP 200 and a ``retCode``), and lets ``fetch``'s errors through.
    """
    entries: list[Any] = []
    cursor = ""
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        params = {"category": category, "limit": PAGE_LIMIT}
        if cursor:
            params["cursor"] = cursor
        result = _result(await fetch(url, params))
        page = result.get("list")
        if not isinstance(page, list):
            raise InstrumentsError("instruments-info answered without a result.list")
        entries.extend(page)
        cursor = str(result.get("nextPageCursor") or "")
        if not cursor:
            break
        if cursor in seen:
            raise InstrumentsError(f"instruments-info repeats its page cursor {cursor!r}")
        seen.add(cursor)
    else:
        raise InstrumentsError(f"instruments-info still had pages after {MAX_PAGES}")
    frame = instrument_frame(entries)
    if frame.is_empty():
        raise InstrumentsError(f"instruments-info lists no {category} instruments")
    return frame


def _result(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InstrumentsError("instruments-info answered with something else than an object")
    code = body.get("retCode")
    if code not in (0, "0"):
        raise InstrumentsError(
            f"instruments-info refused: retCode {code!r}, retMsg {body.get('retMsg')!r}"
        )
    result = body.get("result")
    if not isinstance(result, dict):
        raise InstrumentsError("instruments-info answered without a result")
    return result


def instrument_frame(entries: list[Any]) -> pl.DataFrame:
    """``symbol``, ``status``, ``contract_type`` and the coins of instruments-info entries.

    Entries without a symbol are left out; a symbol listed twice is kept once. An empty
    coin (``""``) is null, so that a row is never given an empty currency.
    """
    rows = [
        {column: _text(entry.get(key)) for column, key in _KEYS.items()}
        for entry in entries
        if isinstance(entry, dict) and _text(entry.get("symbol"))
    ]
    return pl.DataFrame(rows, schema=INSTRUMENTS_SCHEMA).unique(
        "symbol", keep="first", maintain_order=True
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def trading_symbols(instruments: pl.DataFrame) -> list[str]:
    """The symbols whose status is ``Trading``, in the list's order."""
    return instruments.filter(pl.col("status") == TRADING)["symbol"].to_list()
