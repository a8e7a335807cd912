"""lakeflow plugin: ``lakeflow plot``, charts of the tables a pipeline wrote.

Liquidation notional by side (the ``liquidation`` schema) and one symbol's price (the
``ticker_24h`` schema), into a PNG, SVG or HTML file, or shown in a notebook::

    import lakeflow, lakeflow_charts

    lakeflow_charts.chart(lakeflow.Lake(), "liquidations", since="6h")

This module stays light (matplotlib is imported when a chart is drawn), because every
``lakeflow`` command, ``--help`` included, loads it to learn its command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lakeflow

if TYPE_CHECKING:
    import click

    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow_charts.draw import Chart as Chart
    from lakeflow_charts.draw import PlotError as PlotError
    from lakeflow_charts.draw import chart as chart

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "Chart": "lakeflow_charts.draw",
    "PlotError": "lakeflow_charts.draw",
    "chart": "lakeflow_charts.draw",
}

__getattr__, __dir__, __all__ = lakeflow.lazy_exports(__name__, _EXPORTS, "register_commands")


@lakeflow.hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``lakeflow plot``."""
    from lakeflow_charts.command import plot

    cli.add_command(plot)
