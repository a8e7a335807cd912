"""lakeflow plugin: ``lakeflow plot``, charts of the tables a pipeline wrote.

Liquidation notional by side (the ``liquidation`` schema) and one symbol's price (the
``ticker_24h`` schema), into a PNG, SVG or HTML file, or shown in a notebook::

    import lakeflow, lakeflow_charts

    lakeflow_charts.chart(lakeflow.Lake(), "liquidations", since="6h")

This module stays light (matplotlib is imported when a chart is drawn), because every
``lakeflow`` command, ``--help`` included, loads it to learn its command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import lakeflow

if TYPE_CHECKING:
    import click

    from lakeflow_charts.draw import Chart, PlotError, chart

__all__ = ["Chart", "PlotError", "chart", "register_commands"]


@lakeflow.hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``lakeflow plot``."""
    from lakeflow_charts.command import plot

    cli.add_command(plot)


def __getattr__(name: str) -> Any:
    if name in ("Chart", "PlotError", "chart"):
        return getattr(importlib.import_module("lakeflow_charts.draw"), name)
    raise AttributeError(f"module 'lakeflow_charts' has no attribute {name!r}")
