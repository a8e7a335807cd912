"""Record schemas: the columns a table holds, how it is partitioned, what it means."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")

#: Exact decimal for prices and quantities: 20 integer digits, 18 fractional.
DECIMAL = pl.Decimal(38, 18)
#: UTC timestamp at microsecond precision, the Delta ``timestamp`` type.
TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class TableSchema:
    """The shape of one kind of record, shared by every source that produces it.

    ``name`` is the record schema's name (``trade``), ``table`` the default table it
    lands in (``trades``). ``columns`` maps snake_case names to polars types, in
    table order; ``partition_by`` names columns among them. Several sources may write the
    same schema into the same table, told apart by a column such as ``exchange``.
    """

    name: str
    table: str
    columns: Mapping[str, pl.DataType]
    partition_by: tuple[str, ...] = ("date",)
    description: str = ""
    polars_schema: pl.Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for column in self.columns:
            if not _SNAKE.match(column):
                raise ValueError(
                    f"schema {self.name!r}: column {column!r} is not snake_case "
                    "(Delta column names are case-insensitive, so `e` and `E` would collide)"
                )
        for column in self.partition_by:
            if column not in self.columns:
                raise ValueError(
                    f"schema {self.name!r}: partition column {column!r} is not a column"
                )
        object.__setattr__(self, "polars_schema", pl.Schema(dict(self.columns)))

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return ``frame`` with exactly this schema's columns, in order and types.

        A column the frame lacks is a bug in the source's decoder, so it raises rather
        than writing nulls silently.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"decoded rows for schema {self.name!r} lack columns {missing}")
        return frame.select(
            pl.col(name).cast(dtype, strict=True) for name, dtype in self.columns.items()
        )

    def empty(self) -> pl.DataFrame:
        """An empty frame of this schema."""
        return pl.DataFrame(schema=self.polars_schema)
