"""OKX's instrument list, and the sizes it gives a liquidation (contracts → base, notional).

``sz`` is a number of contracts; ``GET /api/v5/public/instruments?instType=SWAP`` says
what one contract is: ``ctVal`` units of ``ctValCcy``, and ``ctType`` says whether that is
the base asset (linear: ``ETH-USDT-SWAP``, 0.1 ETH) or money (inverse: ``BTC-USD-SWAP``,
100 USD). Both steps below run over whole columns, never per row. The source declares
the list as reference data: the core reads it, keeps it fresh and keeps the instruments
that left it (an expired future keeps its contract value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import polars as pl
from lakeflow_market_schemas import LIQUIDATION, decimal_product, decimal_quotient

from lakeflow import DECIMAL

LINEAR, INVERSE = "linear", "inverse"
#: What an instrument contributes to a row, by ``instId``.
INSTRUMENT_SCHEMA = pl.Schema(
    {
        "inst_id": pl.String(),
        "ct_type": pl.String(),
        "ct_val": DECIMAL,
        "ct_val_ccy": pl.String(),
        "settle_ccy": pl.String(),
        "state": pl.String(),
    }
)
#: ``fetch(url, params)``: GET and parse JSON; the core hands a Reference's ``load`` one
#: that also honours its holds (a 429's ``Retry-After``) and retries.
Fetch = Callable[[str, Mapping[str, str]], Awaitable[Any]]
#: An empty instrument table: what a source knows before its first fetch.
NO_INSTRUMENTS = pl.DataFrame(schema=INSTRUMENT_SCHEMA)
#: OKX's names of the columns above, as read from the REST body.
_OKX_KEYS = {
    "instId": "inst_id",
    "ctType": "ct_type",
    "ctVal": "ct_val",
    "ctValCcy": "ct_val_ccy",
    "settleCcy": "settle_ccy",
    "state": "state",
}


def instrument_table(body: Any) -> pl.DataFrame:
    """``instId`` → contract value and type, from one ``/api/v5/public/instruments`` body.

    Raises ValueError when OKX refused the request (``code`` other than ``"0"``) or the
    body is not an instrument list. Instruments without a usable ``ctVal`` or with a
    ``ctType`` other than linear/inverse are left out: their rows stay unsized.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("the instrument list is not an OKX answer ({'code', 'data': [...]})")
    if str(body.get("code")) != "0":
        raise ValueError(
            f"OKX refused the instrument list: code {body.get('code')}: {body.get('msg')}"
        )
    listed = [item for item in body["data"] if isinstance(item, dict)]
    raw = pl.DataFrame(
        {okx: [_text(item.get(okx)) for item in listed] for okx in _OKX_KEYS},
        schema={okx: pl.String() for okx in _OKX_KEYS},
    ).rename(_OKX_KEYS)
    return (
        raw.with_columns(pl.col("ct_val").cast(DECIMAL, strict=False))
        .filter(
            pl.col("inst_id").is_not_null(),
            pl.col("ct_val") > 0,
            pl.col("ct_type").is_in([LINEAR, INVERSE]),
        )
        .unique("inst_id", keep="last", maintain_order=True)
        .select(INSTRUMENT_SCHEMA.names())
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


async def fetch_instruments(fetch: Fetch, url: str, inst_types: Sequence[str]) -> pl.DataFrame:
    """Every instrument of ``inst_types``: one request per type, all at once.

    A type that fails fails the whole read, naming it, once the others are in: the core
    then keeps the last good list of every type (and tries again soon).
    """
    answers = await asyncio.gather(
        *(fetch(url, {"instType": inst_type}) for inst_type in inst_types),
        return_exceptions=True,
    )
    tables, failed = [], []
    first: Exception | None = None
    for inst_type, answer in zip(inst_types, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer  # a cancellation, not a failed read
            failed.append(f"{inst_type} ({answer})")
            first = first or answer
            continue
        try:
            tables.append(instrument_table(answer))
        except ValueError as exc:
            failed.append(f"{inst_type} ({exc})")
    if failed:
        # The first failure as the cause: an unreachable host is then told apart.
        raise RuntimeError(
            "could not read the OKX instrument list of " + "; ".join(failed)
        ) from first
    return pl.concat(tables, how="vertical")


def sized(rows: pl.DataFrame, instruments: pl.DataFrame) -> pl.DataFrame:
    """The rows with ``base_quantity``, ``notional`` and ``notional_currency``, in schema order.

    Linear: ``sz * ctVal`` is the base quantity, its value at ``bkPx`` the notional, in
    ``settleCcy``. Inverse: ``sz * ctVal`` is the notional in ``ctValCcy`` (USD), and the
    base quantity that over ``bkPx`` (rounded to 18 decimals). An instrument missing from
    ``instruments`` leaves all three null: never a guess. Every other column of the
    schema that OKX does not send is null.
    """
    quantity, price = pl.col("quantity"), pl.col("price")
    # Contracts * contract value: base units (linear) or money (inverse).
    value = decimal_product(quantity, pl.col("ct_val"))
    linear, inverse = pl.col("ct_type") == LINEAR, pl.col("ct_type") == INVERSE
    contracts = pl.col("contracts_value")
    base = pl.when(linear).then(contracts).when(inverse).then(decimal_quotient(contracts, price))
    notional = pl.when(linear).then(decimal_product(contracts, price)).when(inverse).then(contracts)
    currency = pl.when(linear).then(pl.col("settle_ccy")).when(inverse).then(pl.col("ct_val_ccy"))
    computed = ("base_quantity", "notional", "notional_currency")
    missing = {
        name: pl.lit(None, dtype=dtype)
        for name, dtype in LIQUIDATION.columns.items()
        if name not in rows.columns and name not in computed
    }
    return (
        rows.lazy()
        .join(
            instruments.lazy(),
            left_on="symbol",
            right_on="inst_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(contracts_value=value)
        .with_columns(base_quantity=base.cast(DECIMAL), notional=notional.cast(DECIMAL))
        .with_columns(
            notional_currency=pl.when(pl.col("notional").is_not_null()).then(currency),
            **missing,
        )
        .select(list(LIQUIDATION.columns))
        .collect(optimizations=pl.QueryOptFlags.none())
    )
