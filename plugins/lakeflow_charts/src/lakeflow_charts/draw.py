"""The charts of ``lakeflow plot``: liquidation notional by side, or one symbol's price.

Rows are read through a :class:`lakeflow.Lake` (the pipeline's sink), so a chart works
wherever the tables live. Liquidations are summed by
:func:`lakeflow_market_schemas.liquidation_notional`, the same for every exchange
(``position_side`` and ``notional``, in one currency). Drawing uses matplotlib's file
renderers (Agg for PNG, its SVG writer for SVG and HTML), which need no display. An HTML
chart is the SVG inline in a small page: one self-contained file that opens offline,
with no JavaScript library to ship or fetch.
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from lakeflow_market_schemas import (
    LONG,
    SHORT,
    MixedCurrencies,
    ReadingError,
    legacy_readings,
    liquidation_notional,
    notional_currencies,
)
from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, ScalarFormatter

import lakeflow
from lakeflow import parse_duration

#: matplotlib draws at this many pixels per inch; a figure of W/DPI x H/DPI inches is W x H px.
DPI = 100
FORMATS = {".png": "png", ".svg": "svg", ".html": "html", ".htm": "html"}
#: At most this many points on a price line; polls closer together are thinned to the last.
MAX_PRICE_POINTS = 2000

#: ``position_side`` (the liquidated position), its legend label and colour.
SIDES = {
    LONG: ("longs liquidated", "#d62728"),
    SHORT: ("shorts liquidated", "#2ca02c"),
}

# Bar width by window: a few hundred bars at most, on round intervals a reader can name.
_BUCKETS = [
    (timedelta(hours=6), "1m", "1 min"),
    (timedelta(hours=24), "5m", "5 min"),
    (timedelta(days=3), "15m", "15 min"),
    (timedelta(days=14), "1h", "1 h"),
    (timedelta(days=60), "6h", "6 h"),
]
_DAILY = ("1d", "1 day")

#: The shading of a stretch a source did not cover (a row of ``_gaps``), and its legend
#: entry: without it an outage would look like a quiet market.
GAP_COLOR = "#7f7f7f"
GAP_LABEL = "not collected (a gap in _gaps)"


class PlotError(lakeflow.LakeflowError):
    """A chart that cannot be drawn as asked; the message says why, in one line."""


@dataclass(frozen=True)
class Kind:
    """A kind of chart: which record schema it reads, by which time column, which columns.

    A table lacking one of ``columns`` does not hold the schema's records; ``optional``
    columns are read where the table has them (a table written before they existed).
    """

    name: str
    schema: str
    time: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()


LIQUIDATIONS = Kind(
    "liquidations",
    "liquidation",
    "trade_time",
    ("exchange", "symbol", "market", "side", "filled_quantity"),
    # What liquidation_notional reads; a row older than these columns is read from others,
    # which _read adds (see _legacy_columns).
    ("position_side", "notional", "notional_currency"),
)
PRICES = Kind(
    "prices",
    "ticker_24h",
    "polled_at",
    ("symbol", "market", "last_price", "low_price", "high_price"),
)
KINDS = {kind.name: kind for kind in (LIQUIDATIONS, PRICES)}


@dataclass(frozen=True)
class Window:
    """The time range a chart covers, ``[start, end]`` in UTC."""

    start: datetime
    end: datetime
    label: str


def parse_since(text: str) -> timedelta:
    """``--since``: a positive duration, in the grammar of :func:`lakeflow.parse_duration`."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise PlotError(f"--since: {exc}") from None
    if seconds <= 0:
        raise PlotError(f"--since: {text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def parse_size(text: str) -> tuple[int, int]:
    """``1200x600``: width and height in pixels, each 100 to 10000."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise PlotError(f"--size: {text!r} is not WIDTHxHEIGHT in pixels (e.g. 1200x600)")
    width, height = int(match[1]), int(match[2])
    if not (100 <= width <= 10_000 and 100 <= height <= 10_000):
        raise PlotError(f"--size: {text!r}: width and height must be 100 to 10000 pixels")
    return width, height


def output_format(path: Path) -> str:
    """``png``, ``svg`` or ``html``, from the output file's extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        shown = f"'{path.suffix}'" if path.suffix else "no extension"
        raise PlotError(f"-o {path}: {shown} is not a chart format (use .png, .svg or .html)")
    if not path.parent.is_dir():
        raise PlotError(f"-o {path}: folder {path.parent} does not exist")
    return fmt


def bucket_for(span: timedelta) -> tuple[str, str]:
    """The bar width for a window: a polars duration and its label."""
    for limit, every, label in _BUCKETS:
        if span <= limit:
            return every, label
    return _DAILY


@dataclass(frozen=True)
class Chart:
    """A drawn chart: the matplotlib figure, its size in pixels and a one-line summary.

    In a notebook the figure shows itself; :meth:`save` writes it as PNG, SVG or HTML.
    """

    figure: Figure
    width: int
    height: int
    summary: str

    def _repr_png_(self) -> bytes:
        # What Jupyter shows for a Chart left as a cell's last expression.
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()

    def save(self, output: str | Path) -> str:
        """Write the chart to ``output`` (``.png``, ``.svg`` or ``.html``); a summary line."""
        path = Path(output)
        _save(self.figure, path, output_format(path), self.width, self.height, self.summary)
        return f"{path}: {self.summary}, {self.width}x{self.height}"


def chart(
    lake: lakeflow.Lake,
    kind: str,
    *,
    symbol: str | None = None,
    exchange: str | None = None,
    currency: str | None = None,
    by_exchange: bool = False,
    since: str = "24h",
    until: datetime | None = None,
    table: str | None = None,
    size: str = "1200x600",
) -> Chart:
    """Draw a chart of ``kind`` (``liquidations`` or ``prices``) from ``lake``; nothing is written.

    Its ``figure`` shows itself in a notebook; ``chart(...).save("x.png")`` writes it.
    ``symbol`` and ``exchange`` keep only their rows. Liquidations are summed in one
    ``currency`` (the rows' own if they share one), over every exchange or, with
    ``by_exchange``, in one panel per exchange.

    Raises :class:`PlotError` for anything the caller asked that cannot be drawn: an
    unknown kind or option, a missing table, an unknown symbol or exchange, an empty
    window, liquidations in several currencies and none chosen.
    """
    drawn = KINDS.get(kind)
    if drawn is None:
        raise PlotError(f"no chart named {kind!r} (choose {' or '.join(KINDS)})")
    width, height = parse_size(size)
    span = parse_since(since)
    if drawn is PRICES and not symbol:
        raise PlotError("prices: --symbol is required (one price line per chart)")
    if drawn is PRICES and (currency is not None or by_exchange):
        raise PlotError("prices: --currency and --by-exchange are options of liquidations")
    end = until or datetime.now(UTC)
    label = f"last {since}" if until is None else f"{since} to {_when(end)} UTC"
    window = Window(end - span, end, label)

    name = table or _table_of(lake, drawn)
    scan = _scan(lake, name, drawn)
    rows, symbol, exchange = _rows(scan, name, drawn, window, symbol, exchange)
    gaps = _gaps(lake, name, window, exchange)

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    where = f" on {exchange}" if exchange else ""
    if drawn is LIQUIDATIONS:
        _draw_liquidations(figure, rows, gaps, window, symbol, where, span, currency, by_exchange)
        count = _count(rows.height, "event")
    else:
        _draw_prices(figure.add_subplot(), rows, gaps, window, symbol or "", span)
        count = _count(rows.height, "poll")
    summary = f"{drawn.name} {symbol or 'all symbols'}{where}, {window.label}, {count}"
    return Chart(figure, width, height, summary)


def _table_of(lake: lakeflow.Lake, chart: Kind) -> str:
    """The pipeline's table of the chart's record schema; its default name if it has none."""
    tables = [table for table, schema in lake.schemas.items() if schema.name == chart.schema]
    if len(tables) > 1:
        raise PlotError(
            f"{lake.path}: several tables hold {chart.name} ({', '.join(tables)}); "
            "choose one with --table"
        )
    return tables[0] if tables else chart.name


def _scan(lake: lakeflow.Lake, name: str, chart: Kind) -> pl.LazyFrame:
    try:
        scan = lake.scan(name)
    except lakeflow.TableNotFound as exc:
        raise PlotError(f"{exc}; run the pipeline first, or choose one with --table") from None
    except ValueError as exc:  # a table name that could leave the sink's folder
        raise PlotError(f"--table: {exc}") from None
    columns = scan.collect_schema()
    missing = [c for c in (chart.time, *chart.columns) if c not in columns]
    if missing:
        raise PlotError(
            f"table {name!r} lacks {', '.join(missing)}: it does not hold "
            f"{chart.schema} records (choose another with --table)"
        )
    return scan


def _rows(
    scan: pl.LazyFrame,
    name: str,
    chart: Kind,
    window: Window,
    symbol: str | None,
    exchange: str | None,
) -> tuple[pl.DataFrame, str | None, str | None]:
    """The window's rows (of ``symbol``, on ``exchange``), and both as the table spells them."""
    rows = _read(scan, chart, window, symbol, exchange)
    if rows.is_empty() and (symbol is not None or exchange is not None):
        # Only now look at every symbol and exchange: a scan of a whole column is not free.
        spelled = (
            symbol if symbol is None else _spelling(scan, name, "symbol", symbol),
            exchange if exchange is None else _spelling(scan, name, "exchange", exchange),
        )
        if spelled != (symbol, exchange):
            (symbol, exchange), rows = spelled, _read(scan, chart, window, *spelled)
    if rows.is_empty():
        raise PlotError(_empty(scan, name, chart, window, symbol, exchange))
    return rows, symbol, exchange


def _matching(symbol: str | None, exchange: str | None) -> pl.Expr:
    wanted = pl.lit(True)
    if symbol is not None:
        wanted &= pl.col("symbol") == symbol
    if exchange is not None:
        wanted &= pl.col("exchange") == exchange
    return wanted


def _read(
    scan: pl.LazyFrame, chart: Kind, window: Window, symbol: str | None, exchange: str | None
) -> pl.DataFrame:
    wanted = pl.col(chart.time).is_between(window.start, window.end)
    columns = scan.collect_schema()
    if "date" in columns:
        # The partition column too, so that the scan skips files outside the window.
        wanted &= pl.col("date").is_between(window.start.date(), window.end.date())
    wanted &= _matching(symbol, exchange)
    extra = _legacy_columns() if chart is LIQUIDATIONS else ()
    optional = [
        column
        for column in dict.fromkeys((*chart.optional, *extra))
        if column in columns and column not in (chart.time, *chart.columns)
    ]
    return (
        scan.filter(wanted).select(chart.time, *chart.columns, *optional).sort(chart.time).collect()
    )


def _legacy_columns() -> tuple[str, ...]:
    """The columns the installed exchange plugins read rows older than ``notional`` from
    (each plugin's :class:`~lakeflow_market_schemas.LegacyReading`)."""
    return tuple(sorted({c for reading in legacy_readings().values() for c in reading.reads}))


def _spelling(scan: pl.LazyFrame, name: str, column: str, value: str) -> str:
    """``value`` as the table holds it in ``column`` (``btcusdt`` finds ``BTCUSDT``), or a
    PlotError naming the values there."""
    known = scan.select(pl.col(column).unique()).collect()[column].drop_nulls().sort()
    if value in known:
        return value
    same = [s for s in known if s.upper() == value.upper()]
    if same:
        return same[0]
    if known.is_empty():
        raise PlotError(f"table {name!r} has no rows yet")
    shown = ", ".join(known.head(8))
    more = f", ... ({known.len()} in all)" if known.len() > 8 else ""
    raise PlotError(f"no {column} {value!r} in table {name!r} (it has {shown}{more})")


def _empty(
    scan: pl.LazyFrame,
    name: str,
    chart: Kind,
    window: Window,
    symbol: str | None,
    exchange: str | None,
) -> str:
    what = f"{chart.name} of {symbol}" if symbol else chart.name
    if exchange:
        what += f" on {exchange}"
    time = pl.col(chart.time)
    scan = scan.filter(_matching(symbol, exchange))
    first, last = scan.select(time.min().alias("first"), time.max().alias("last")).collect().row(0)
    if first is None:
        if symbol is not None and exchange is not None:
            return f"table {name!r} has no {what}"
        return f"table {name!r} has no rows yet"
    return (
        f"no {what} from {_when(window.start)} to {_when(window.end)} UTC; "
        f"table {name!r} holds them from "
        f"{_when(first)} to {_when(last)} UTC (widen --since, or set --until)"
    )


def source_exchange(cls: type[lakeflow.Source]) -> str:
    """The exchange a source class reads: its ``exchange`` if it says one, else the first
    word of its type (``bybit_liquidations`` reads ``bybit``), the name its rows carry in
    their ``exchange`` column."""
    declared = getattr(cls, "exchange", None)
    return declared if isinstance(declared, str) else cls.type.split("_", 1)[0]


def _gaps(lake: lakeflow.Lake, name: str, window: Window, exchange: str | None) -> pl.DataFrame:
    """The stretches the sources of table ``name`` did not cover, cut to the window:
    ``gap_start``, ``gap_end`` and the source's ``exchange`` (null for a source the
    pipeline no longer names), only ``exchange``'s if given."""
    exchanges = {spec.name: source_exchange(spec.cls) for spec in lake.pipeline.sources.values()}
    start, end = pl.lit(window.start), pl.lit(window.end)
    gaps = (
        lake.gaps.filter(
            (pl.col("table") == name) & (pl.col("gap_end") > start) & (pl.col("gap_start") < end)
        )
        .select(
            pl.max_horizontal(pl.col("gap_start"), start).alias("gap_start"),
            pl.min_horizontal(pl.col("gap_end"), end).alias("gap_end"),
            pl.col("source")
            .replace_strict(exchanges, default=None, return_dtype=pl.String)
            .alias("exchange"),
        )
        .sort("gap_start")
        .collect()
    )
    return gaps if exchange is None else gaps.filter(pl.col("exchange") == exchange)


def _shade_gaps(axes: Axes, gaps: pl.DataFrame) -> None:
    """A grey band behind the data over each gap; one legend entry says what it means."""
    starts, ends = _naive(gaps["gap_start"]), _naive(gaps["gap_end"])
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        axes.axvspan(
            start,
            end,
            color=GAP_COLOR,
            alpha=0.25,
            linewidth=0,
            zorder=0,
            label=GAP_LABEL if i == 0 else "_nolegend_",
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _naive(series: pl.Series) -> np.ndarray:
    """UTC times as numpy datetime64, which matplotlib reads as UTC."""
    return series.dt.convert_time_zone("UTC").dt.replace_time_zone(None).to_numpy()


def _short(value: float) -> str:
    """1234567 -> 1.23M: axis and title figures a reader takes in at a glance."""
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _time_axis(axes: Axes, window: Window) -> None:
    """The whole window on a UTC axis, so that a stretch without rows shows as empty."""
    start, end = _naive(pl.Series([window.start, window.end]))
    axes.set_xlim(start, end)
    locator = mdates.AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    axes.set_xlabel("time (UTC)")
    axes.grid(alpha=0.3)


def _bucket_days(every: str) -> float:
    """A duration such as ``5m`` in days, matplotlib's unit of time."""
    return parse_duration(every) / 86_400


def _draw_liquidations(
    figure: Figure,
    rows: pl.DataFrame,
    gaps: pl.DataFrame,
    window: Window,
    symbol: str | None,
    where: str,
    span: timedelta,
    currency: str | None,
    by_exchange: bool,
) -> None:
    """Stacked bars per time bucket, longs liquidated below and shorts on top, of the
    notional in one currency; summed over exchanges, or one panel per exchange. The
    ``gaps`` are shaded: every gap in the summed panel, each exchange's in its own."""
    every, every_label = bucket_for(span)
    try:
        per = liquidation_notional(rows, every=every, by_exchange=by_exchange, currency=currency)
    except MixedCurrencies as exc:
        found = ", ".join(f"{c} ({_count(n, 'event')})" for c, n in exc.currencies.items())
        raise PlotError(
            f"the window mixes liquidations in {len(exc.currencies)} currencies: {found}; "
            "they are not converted into one another: choose one with "
            f"--currency {next(iter(exc.currencies))}"
        ) from None
    except ReadingError as exc:
        raise PlotError(str(exc)) from None
    counted = _total(per, "long_count", "short_count")
    unpriced = _total(per, "unpriced_count")
    others = _total(per, "other_currency_count")
    unit = per["currency"][0] if per.height else None
    if not counted:
        raise PlotError(_nothing_counted(rows, unit, unpriced, others))
    # A panel per exchange with something to draw, or with a gap (an exchange that was
    # not collected all window must not vanish); the title counts what the others hold.
    panels: list[str | None] = [None]
    if by_exchange:
        drawn = per.filter((pl.col("long_count") + pl.col("short_count")) > 0)
        panels = sorted({*drawn["exchange"], *gaps["exchange"].drop_nulls()})
    all_axes = figure.subplots(len(panels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    total = 0.0
    for axes, exchange in zip(all_axes, panels, strict=True):
        part = per if exchange is None else per.filter(pl.col("exchange") == exchange)
        notional = _bars(axes, part, every, str(unit))
        total += notional
        _shade_gaps(axes, gaps if exchange is None else gaps.filter(exchange=exchange))
        axes.legend(loc="upper left")
        _time_axis(axes, window)
        if exchange is not None:
            events = _total(part, "long_count", "short_count")
            axes.set_title(f"{exchange}: {_count(events, 'event')}, {_short(notional)} {unit}")
    for axes in all_axes[:-1]:
        axes.set_xlabel("")
    ylabel = f"notional per {every_label}, {unit}"
    if by_exchange:
        figure.supylabel(ylabel)
    else:
        all_axes[0].set_ylabel(ylabel)
    who = f"of {symbol}" if symbol else "of all symbols"
    title = (
        f"Liquidations {who}{where}, {window.label}: "
        f"{_count(counted, 'event')}, {_short(total)} {unit}"
    )
    left_out = [
        *([f"{_count(unpriced, 'event')} without a notional"] if unpriced else []),
        *([f"{_count(others, 'event')} in other currencies"] if others else []),
    ]
    if left_out:
        title += f" ({' and '.join(left_out)} not counted)"
    if by_exchange:
        figure.suptitle(title)
    else:
        all_axes[0].set_title(title)


def _total(per: pl.DataFrame, *counts: str) -> int:
    """The sum of the ``counts`` columns of an aggregate."""
    return int(per.select(pl.sum_horizontal(pl.col(counts).sum())).item())


def _bars(axes: Axes, per: pl.DataFrame, every: str, unit: str) -> float:
    """One panel's stacked bars; the notional they add up to."""
    # Decimals are exact in the table and the sums; floats are plenty for a picture.
    x = _naive(per["bucket"])
    bottom = np.zeros(per.height)
    for side, (label, color) in SIDES.items():
        heights = per[f"{side}_notional"].cast(pl.Float64).to_numpy()
        axes.bar(
            x,
            heights,
            width=_bucket_days(every) * 0.9,
            bottom=bottom,
            align="edge",
            color=color,
            linewidth=0,
            label=f"{label}: {_short(heights.sum())} {unit}",
        )
        bottom += heights
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _short(v)))
    return float(bottom.sum())


def _nothing_counted(rows: pl.DataFrame, currency: str | None, unpriced: int, others: int) -> str:
    """Why no liquidation of the window can be counted in money."""
    if others:
        found = ", ".join(notional_currencies(rows))
        return (
            f"no liquidations in {currency} in the window (its liquidations are in {found}); "
            "choose one of those with --currency"
        )
    return (
        f"none of the window's {_count(unpriced, 'liquidation')} has a notional (the "
        "exchange's instrument list was not at hand when it was written); nothing to sum"
    )


def _draw_prices(
    axes: Axes,
    rows: pl.DataFrame,
    gaps: pl.DataFrame,
    window: Window,
    symbol: str,
    span: timedelta,
) -> None:
    """The last price, one line per market, over the band of its rolling 24 h low and high;
    the ``gaps`` shaded."""
    every = f"{max(1, math.ceil(span.total_seconds() / MAX_PRICE_POINTS))}s"
    for (market,), group in rows.group_by("market", maintain_order=True):
        # Polls closer together than the line can show are thinned to the last of each.
        points = (
            group.group_by(pl.col(PRICES.time).dt.truncate(every).alias("t"), maintain_order=True)
            .agg(pl.col("last_price", "low_price", "high_price").last().cast(pl.Float64))
            .sort("t")
        )
        x = _naive(points["t"])
        (line,) = axes.plot(
            x, points["last_price"].to_numpy(), linewidth=1.4, label=f"{market} last price"
        )
        axes.fill_between(
            x,
            points["low_price"].to_numpy(),
            points["high_price"].to_numpy(),
            color=line.get_color(),
            alpha=0.12,
            linewidth=0,
            label=f"{market} 24 h low-high (rolling)",
        )
    _shade_gaps(axes, gaps)
    _time_axis(axes, window)
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axes.yaxis.set_major_formatter(formatter)
    axes.set_ylabel("price, quote currency")
    axes.legend(loc="best")
    prices = rows["last_price"].cast(pl.Float64)
    low, high = float(prices.min()), float(prices.max())  # type: ignore[arg-type]
    axes.set_title(
        f"{symbol} price, {window.label}: latest {prices[-1]:,.10g} "
        f"(low {low:,.10g}, high {high:,.10g})"
    )


def _save(figure: Figure, path: Path, fmt: str, width: int, height: int, summary: str) -> None:
    if fmt == "png":
        figure.savefig(path, format="png", dpi=DPI)
        return
    buffer = io.StringIO()
    # Text as text, not outlines: smaller, selectable and searchable. No date in the
    # metadata: the same rows give the same file.
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    # matplotlib sizes an SVG in points (72 per inch); say pixels, so that it shows at
    # the size asked for. The viewBox scales the drawing to it.
    svg = re.sub(
        r'width="[\d.]+pt" height="[\d.]+pt"', f'width="{width}" height="{height}"', svg, count=1
    )
    if fmt == "html":
        svg = svg[svg.index("<svg") :]
        title = html.escape(summary)
        svg = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n</head>\n<body>\n<figure>\n{svg}"
            f"<figcaption>{title}</figcaption>\n</figure>\n</body>\n</html>\n"
        )
    path.write_text(svg, encoding="utf-8")
