"""``lakeflow plot`` and ``lakeflow_charts.chart``: charts of real Delta tables, written through the
real sink, read through ``lakeflow.Lake``."""

from __future__ import annotations

import itertools
import re
import shlex
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import lakeflow_charts
import polars as pl
import pytest
from click.testing import CliRunner, Result
from lakeflow_charts.draw import GAP_COLOR, GAP_LABEL, bucket_for, parse_since
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from PIL import Image

import lakeflow
from lakeflow.cli import cli as lakeflow_cli

PIPELINE = """
[sources.liquidations]
type = "binance_liquidations"

[sources.prices]
type = "binance_prices"
"""
NOW = datetime.now(UTC)
README = Path(__file__).resolve().parents[3] / "README.md"
SVG = "{http://www.w3.org/2000/svg}"


def liquidation(
    minutes_ago: float,
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    average_price: str = "100",
    filled_quantity: str = "2",
    market: str = "usdm",
    *,
    notional: str | None = "from the fill",
    currency: str | None = "USDT",
) -> dict[str, Any]:
    """One Binance ``liquidation`` row, ``minutes_ago`` before the test started.

    Its notional is ``filled_quantity x average_price``, as the plugin writes a USD-M
    row, unless ``notional`` says otherwise (None: unknown).
    """
    at = NOW - timedelta(minutes=minutes_ago)
    if notional == "from the fill":
        notional = str(Decimal(filled_quantity) * Decimal(average_price))
    return {
        "exchange": "binance",
        "market": market,
        "symbol": symbol,
        "pair": None,
        "side": side,
        "position_side": {"SELL": "long", "BUY": "short"}[side],
        "order_type": "LIMIT",
        "time_in_force": "IOC",
        "quantity": filled_quantity,
        "base_quantity": filled_quantity,
        # Unlike the notional, the order price must not count.
        "price": "1",
        "average_price": average_price,
        "notional": notional,
        "notional_currency": None if notional is None else currency,
        "status": "FILLED",
        "last_filled_quantity": filled_quantity,
        "filled_quantity": filled_quantity,
        "trade_time": at,
        "event_time": at,
        "received_at": at,
        "date": at.date(),
    }


def bybit(
    minutes_ago: float,
    symbol: str = "BTCUSDT",
    position: str = "Buy",
    size: str = "2",
    price: str = "100",
    currency: str = "USDT",
) -> dict[str, Any]:
    """One Bybit linear ``liquidation`` row: no average price, no fill fields, no event time."""
    at = NOW - timedelta(minutes=minutes_ago)
    return {
        "exchange": "bybit",
        "market": "linear",
        "symbol": symbol,
        "pair": None,
        "side": position,
        "position_side": {"Buy": "long", "Sell": "short"}[position],
        "order_type": None,
        "time_in_force": None,
        "quantity": size,
        "base_quantity": size,
        "price": price,
        "average_price": None,
        "notional": str(Decimal(size) * Decimal(price)),
        "notional_currency": currency,
        "status": None,
        "last_filled_quantity": None,
        "filled_quantity": None,
        "trade_time": at,
        "event_time": None,
        "received_at": at,
        "date": at.date(),
    }


def ticker(
    minutes_ago: float, symbol: str = "BTCUSDT", last: str = "100", market: str = "spot"
) -> dict[str, Any]:
    """One ``ticker_24h`` row (one symbol of one poll), ``minutes_ago`` before the test."""
    at = NOW - timedelta(minutes=minutes_ago)
    decimals = dict.fromkeys(
        [
            "price_change",
            "price_change_percent",
            "weighted_avg_price",
            "prev_close_price",
            "last_quantity",
            "bid_price",
            "bid_quantity",
            "ask_price",
            "ask_quantity",
            "open_price",
            "volume",
            "quote_volume",
        ],
        "1",
    )
    return {
        "exchange": "binance",
        "market": market,
        "symbol": symbol,
        "pair": None,
        **decimals,
        "contract_volume": None,
        "last_price": last,
        "high_price": str(float(last) + 5),
        "low_price": str(float(last) - 5),
        "open_time": at - timedelta(days=1),
        "close_time": at,
        "first_trade_id": 1,
        "last_trade_id": 2,
        "trade_count": 2,
        "polled_at": at,
        "date": at.date(),
    }


@pytest.fixture(autouse=True)
def now() -> None:
    """Each test's rows are placed relative to its own start, not the session's: the
    windows ("last 25m") end at the moment the chart is drawn."""
    global NOW
    NOW = datetime.now(UTC)


@pytest.fixture
def pipeline(tmp_path: Path, write_toml: Callable[[str], Path], monkeypatch) -> lakeflow.Lake:
    """The two Binance sources writing into ``tmp_path/tables``; the cwd is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    return lakeflow.Lake(write_toml(PIPELINE))


@pytest.fixture
def commit(pipeline: lakeflow.Lake) -> Callable[..., None]:
    """Commit rows into a source's table (or into ``table``) through the real Delta sink."""
    sequence = itertools.count(1)

    def write(source: str, rows: list[dict[str, Any]], table: str | None = None) -> None:
        spec = pipeline.pipeline.sources[source]
        frame = pl.DataFrame(rows, infer_schema_length=None)
        pipeline.sink.commit(table or spec.table, spec.schema, frame, "test", next(sequence))

    return write


@pytest.fixture
def plot(pipeline: lakeflow.Lake) -> Callable[..., Result]:
    """Run ``lakeflow plot`` in-process on the fixture's pipeline."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(lakeflow_cli, ["plot", str(pipeline.path), *args])

    return run


@pytest.fixture
def liquidations(commit: Callable[..., None]) -> None:
    """Three recent liquidations: two BTCUSDT (a long and a short), one ETHUSDT."""
    commit(
        "liquidations",
        [
            liquidation(30, "BTCUSDT", "SELL", "100", "3"),
            liquidation(20, "BTCUSDT", "BUY", "200", "0.5"),
            liquidation(10, "ETHUSDT", "SELL", "10", "1"),
        ],
    )


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk, checked to be there."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


def test_liquidations_png_has_the_requested_pixel_size(plot, liquidations, tmp_path):
    done = plot("liquidations", "--size", "1000x517", "-o", "chart.png")
    assert done.exit_code == 0, done.output
    assert png_size(tmp_path / "chart.png") == (1000, 517)
    with Image.open(tmp_path / "chart.png") as image:
        image.verify()
        assert image.format == "PNG"


def test_png_is_1200x600_by_default(plot, liquidations, tmp_path):
    assert plot("liquidations", "-o", "chart.png").exit_code == 0
    with Image.open(tmp_path / "chart.png") as image:
        assert image.size == (1200, 600)


def test_success_prints_a_one_line_summary(plot, liquidations):
    done = plot("liquidations", "--symbol", "BTCUSDT", "-o", "chart.png")
    assert done.stdout == "chart.png: liquidations BTCUSDT, last 24h, 2 events, 1200x600\n"


def test_without_a_symbol_every_symbol_counts(plot, liquidations):
    done = plot("liquidations", "-o", "chart.png")
    assert done.stdout == "chart.png: liquidations all symbols, last 24h, 3 events, 1200x600\n"


def test_svg_is_xml_sized_in_pixels(plot, liquidations, tmp_path):
    assert plot("liquidations", "--size", "800x400", "-o", "chart.svg").exit_code == 0
    root = ET.parse(tmp_path / "chart.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("800", "400")


def test_notional_is_summed_per_side_liquidated(plot, liquidations, tmp_path):
    plot("liquidations", "--symbol", "BTCUSDT", "-o", "chart.svg")
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "longs liquidated: 300 USDT" in texts
    assert "shorts liquidated: 100 USDT" in texts
    assert "Liquidations of BTCUSDT, last 24h: 2 events, 400 USDT" in texts
    assert "notional per 5 min, USDT" in texts


def test_the_chart_sums_the_notional_column_not_a_price(plot, commit, tmp_path):
    # 7 USDT whatever quantity x average price says: the notional is the exchange plugin's.
    commit("liquidations", [liquidation(5, "BTCUSDT", "BUY", "100", "2", notional="7")])
    plot("liquidations", "-o", "chart.svg")
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "shorts liquidated: 7 USDT" in texts


def test_html_holds_the_chart_inline_with_its_summary(plot, liquidations, tmp_path):
    assert plot("liquidations", "-o", "chart.html").exit_code == 0
    page = (tmp_path / "chart.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert '<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="1200" height="600"' in page
    assert "<figcaption>liquidations all symbols, last 24h, 3 events</figcaption>" in page
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    assert ET.fromstring(svg).tag == f"{SVG}svg"


def test_symbol_matches_whatever_the_case(plot, liquidations):
    done = plot("liquidations", "--symbol", "ethusdt", "-o", "chart.png")
    assert done.exit_code == 0, done.output
    assert "liquidations ETHUSDT, last 24h, 1 event" in done.stdout


def test_since_narrows_the_window(plot, liquidations):
    done = plot("liquidations", "--since", "25m", "-o", "chart.png")
    assert "last 25m, 2 events" in done.stdout


def test_until_ends_the_window_in_the_past(plot, commit):
    commit("liquidations", [liquidation(60 * 24 * 30), liquidation(60 * 24 * 30 + 1)])
    until = (NOW - timedelta(days=29)).isoformat()
    done = plot("liquidations", "--since", "2d", "--until", until, "-o", "chart.png")
    assert done.exit_code == 0, done.output
    assert ", 2 events" in done.stdout


def test_coinm_liquidations_are_counted_in_usd(plot, commit, tmp_path):
    coinm = liquidation(5, "BTCUSD_PERP", "SELL", "97000", "4", "coinm", notional="400")
    commit("liquidations", [coinm | {"notional_currency": "USD"}])
    plot("liquidations", "-o", "chart.svg")
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "longs liquidated: 400 USD" in texts


def test_mixing_currencies_exits_2_naming_them(plot, commit, liquidations):
    coinm = liquidation(5, "BTCUSD_PERP", market="coinm", notional="100", currency="USD")
    commit("liquidations", [coinm])
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == (
        "Error: the window mixes liquidations in 2 currencies: USDT (3 events), USD (1 event); "
        "they are not converted into one another: choose one with --currency USDT\n"
    )


def test_usdt_and_usdc_are_not_summed_together(plot, commit, liquidations):
    commit("liquidations", [liquidation(5, "BTCUSDC", currency="USDC")])
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    assert "mixes liquidations in 2 currencies: USDT (3 events), USDC (1 event)" in done.stderr


def test_currency_chooses_one_and_counts_the_others_out(plot, commit, liquidations, tmp_path):
    commit("liquidations", [liquidation(5, "BTCUSDC", "BUY", "10", "1", currency="USDC")])
    done = plot("liquidations", "--currency", "usdc", "-o", "chart.svg")
    assert done.exit_code == 0, done.output
    assert done.stdout == "chart.svg: liquidations all symbols, last 24h, 4 events, 1200x600\n"
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "shorts liquidated: 10 USDC" in texts
    assert (
        "Liquidations of all symbols, last 24h: 1 event, 10 USDC "
        "(3 events in other currencies not counted)"
    ) in texts


def test_a_currency_the_window_lacks_exits_2(plot, liquidations):
    done = plot("liquidations", "--currency", "USD", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == (
        "Error: no liquidations in USD in the window (its liquidations are in USDT); "
        "choose one of those with --currency\n"
    )


def test_rows_without_a_notional_are_left_out_and_said(plot, commit, liquidations, tmp_path):
    # A COIN-M symbol listed after the plugin's last exchangeInfo: no notional yet.
    commit("liquidations", [liquidation(5, "XRPUSD_PERP", market="coinm", notional=None)])
    done = plot("liquidations", "-o", "chart.svg")
    assert done.exit_code == 0, done.output
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert (
        "Liquidations of all symbols, last 24h: 3 events, 410 USDT "
        "(1 event without a notional not counted)"
    ) in texts


def test_a_window_of_rows_without_a_notional_exits_2(plot, commit):
    commit("liquidations", [liquidation(5, "XRPUSD_PERP", market="coinm", notional=None)])
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    assert "none of the window's 1 liquidation has a notional" in done.stderr


def test_rows_older_than_the_notional_column_count_as_binance_usdm(plot, commit, tmp_path):
    # Written by the Binance plugin before position_side and notional existed.
    old = liquidation(5, "BTCUSDT", "SELL", "100", "3", notional=None)
    commit("liquidations", [old | {"position_side": None}])
    plot("liquidations", "-o", "chart.svg")
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "longs liquidated: 300 USDT" in texts


def test_bybit_rows_count_without_an_average_price(plot, commit, tmp_path):
    commit("liquidations", [bybit(10, position="Buy", size="2", price="50"), bybit(5, "ETHUSDT")])
    done = plot("liquidations", "-o", "chart.svg")
    assert done.exit_code == 0, done.output
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "longs liquidated: 300 USDT" in texts
    assert "Liquidations of all symbols, last 24h: 2 events, 300 USDT" in texts


@pytest.fixture
def two_exchanges(commit: Callable[..., None], liquidations: None) -> None:
    """The three Binance liquidations (400 + 10 USDT), and two on Bybit (20 + 60 USDT)."""
    commit(
        "liquidations",
        [bybit(15, "BTCUSDT", "Buy", "0.2"), bybit(12, "SOLUSDT", "Sell", "3", "20")],
    )


def test_two_exchanges_are_summed_by_default(plot, two_exchanges, tmp_path):
    done = plot("liquidations", "-o", "chart.svg")
    assert done.stdout == "chart.svg: liquidations all symbols, last 24h, 5 events, 1200x600\n"
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "longs liquidated: 330 USDT" in texts
    assert "shorts liquidated: 160 USDT" in texts
    assert "Liquidations of all symbols, last 24h: 5 events, 490 USDT" in texts
    assert not [t for t in texts if t.startswith(("binance:", "bybit:"))]


def test_by_exchange_draws_a_panel_per_exchange(plot, two_exchanges, tmp_path):
    done = plot("liquidations", "--by-exchange", "-o", "chart.svg")
    assert done.exit_code == 0, done.output
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "binance: 3 events, 410 USDT" in texts
    assert "bybit: 2 events, 80 USDT" in texts
    assert {"longs liquidated: 310 USDT", "shorts liquidated: 100 USDT"} <= set(texts)
    assert {"longs liquidated: 20 USDT", "shorts liquidated: 60 USDT"} <= set(texts)
    assert "Liquidations of all symbols, last 24h: 5 events, 490 USDT" in texts


def test_exchange_keeps_one_exchanges_rows(plot, two_exchanges, tmp_path):
    done = plot("liquidations", "--exchange", "Bybit", "-o", "chart.svg")
    assert done.stdout == (
        "chart.svg: liquidations all symbols on bybit, last 24h, 2 events, 1200x600\n"
    )
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert "Liquidations of all symbols on bybit, last 24h: 2 events, 80 USDT" in texts


def test_unknown_exchange_exits_2_naming_those_there(plot, two_exchanges):
    done = plot("liquidations", "--exchange", "kraken", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == (
        "Error: no exchange 'kraken' in table 'liquidations' (it has binance, bybit)\n"
    )


def test_a_symbol_another_exchange_lacks_exits_2(plot, two_exchanges):
    done = plot("liquidations", "--exchange", "bybit", "--symbol", "ETHUSDT", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == "Error: table 'liquidations' has no liquidations of ETHUSDT on bybit\n"


def test_by_exchange_is_an_option_of_liquidations_only(plot, commit):
    commit("prices", [ticker(1)])
    done = plot("prices", "--symbol", "BTCUSDT", "--by-exchange", "-o", "chart.png")
    assert done.exit_code == 2
    assert "--currency and --by-exchange are options of liquidations" in done.stderr


def test_table_option_reads_another_table(plot, commit):
    commit("liquidations", [liquidation(5, "SOLUSDT")], table="more_liquidations")
    done = plot("liquidations", "--table", "more_liquidations", "-o", "chart.png")
    assert done.exit_code == 0, done.output
    assert "liquidations all symbols, last 24h, 1 event" in done.stdout


def test_prices_draw_the_last_price_of_each_market(plot, commit, tmp_path):
    rows = [ticker(m, "BTCUSDT", str(100 + m)) for m in range(60)]
    commit("prices", [*rows, ticker(1, "BTCUSDT", "99", market="usdm")])
    done = plot("prices", "--symbol", "BTCUSDT", "--since", "6h", "-o", "chart.svg")
    assert done.stdout == "chart.svg: prices BTCUSDT, last 6h, 61 polls, 1200x600\n"
    texts = svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
    assert {"spot last price", "usdm last price"} <= set(texts)
    assert "BTCUSDT price, last 6h: latest 100 (low 99, high 159)" in texts


def test_prices_need_a_symbol(plot, commit):
    commit("prices", [ticker(1)])
    done = plot("prices", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == "Error: prices: --symbol is required (one price line per chart)\n"


def test_unknown_symbol_exits_2_naming_the_symbols_there(plot, liquidations, tmp_path):
    done = plot("liquidations", "--symbol", "DOGEUSDT", "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr == (
        "Error: no symbol 'DOGEUSDT' in table 'liquidations' (it has BTCUSDT, ETHUSDT)\n"
    )
    assert not (tmp_path / "chart.png").exists()


def test_empty_window_exits_2_with_the_range_the_table_covers(plot, commit):
    commit("liquidations", [liquidation(60 * 24 * 3)])
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    day = (NOW - timedelta(days=3)).strftime("%Y-%m-%d")
    assert done.stderr.startswith("Error: no liquidations from ")
    assert f"table 'liquidations' holds them from {day} " in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_missing_table_exits_2(plot, tmp_path):
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    assert f"Error: no table 'liquidations' under {tmp_path / 'tables'}" in done.stderr


def test_table_of_another_schema_exits_2(plot, commit):
    commit("prices", [ticker(1)])
    done = plot("liquidations", "--table", "prices", "-o", "chart.png")
    assert done.exit_code == 2
    assert "it does not hold liquidation records" in done.stderr


def test_two_liquidation_tables_in_the_pipeline_ask_for_table(tmp_path, write_toml, plot):
    write_toml(PIPELINE + '\n[sources.coinm]\ntype = "binance_liquidations"\ntable = "coinm"\n')
    done = plot("liquidations", "-o", "chart.png")
    assert done.exit_code == 2
    assert "several tables hold liquidations (liquidations, coinm); choose one with --table" in (
        done.stderr
    )


@pytest.mark.parametrize("since", ["24x", "h", "0h", "-1h", "1h 30"])
def test_bad_since_exits_2(plot, liquidations, since):
    done = plot("liquidations", "--since", since, "-o", "chart.png")
    assert done.exit_code == 2
    assert done.stderr.startswith(f"Error: --since: {since!r} is not")


@pytest.mark.parametrize("output", ["chart.jpg", "chart"])
def test_bad_output_extension_exits_2(plot, liquidations, output):
    done = plot("liquidations", "-o", output)
    assert done.exit_code == 2
    assert "is not a chart format (use .png, .svg or .html)" in done.stderr


def test_unknown_chart_exits_2(plot, liquidations):
    done = plot("candles", "-o", "chart.png")
    assert done.exit_code == 2
    assert "no chart named 'candles' (choose liquidations or prices)" in done.stderr


def test_plot_has_help():
    done = CliRunner().invoke(lakeflow_cli, ["plot", "--help"], prog_name="lakeflow")
    assert done.exit_code == 0
    assert "Usage: lakeflow plot [OPTIONS] [PIPELINE] {liquidations|prices}" in done.stdout


def test_compound_durations_add_up():
    assert parse_since("1h30m") == timedelta(minutes=90)
    assert parse_since("2w") == timedelta(days=14)


def test_since_takes_the_pipeline_files_fractional_durations():
    assert parse_since("1.5h") == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("since", "bucket"),
    [("90m", "1m"), ("6h", "1m"), ("24h", "5m"), ("3d", "15m"), ("7d", "1h"), ("30d", "6h")],
)
def test_bars_widen_with_the_window(since, bucket):
    assert bucket_for(parse_since(since))[0] == bucket


def test_the_installed_command_draws_a_chart(cli, pipeline, liquidations, tmp_path):
    # The console script end to end, from the default ./lakeflow.toml.
    done = cli("plot", "liquidations", "-o", "chart.png")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chart.png: liquidations all symbols, last 24h, 3 events")
    assert png_size(tmp_path / "chart.png") == (1200, 600)


def test_the_readme_plot_commands_work(plot, commit, liquidations, tmp_path):
    commit("prices", [ticker(m) for m in range(10)])
    commands = re.findall(r"^uv run lakeflow plot (.*)$", README.read_text(), re.MULTILINE)
    assert commands
    for command in commands:
        args = shlex.split(command)
        done = plot(*args)
        assert done.exit_code == 0, (command, done.output)
        assert (tmp_path / args[args.index("-o") + 1]).is_file()


def test_the_python_api_takes_the_options_of_the_command(pipeline, two_exchanges):
    lake = lakeflow.Lake(pipeline.path)
    chart = lakeflow_charts.chart(lake, "liquidations", exchange="bybit", by_exchange=True)
    assert chart.summary == "liquidations all symbols on bybit, last 24h, 2 events"
    assert len(chart.figure.axes) == 1


def test_the_reading_api_draws_the_same_chart_without_writing_a_file(pipeline, liquidations):
    chart = lakeflow_charts.chart(lakeflow.Lake(pipeline.path), "liquidations", symbol="BTCUSDT")
    assert chart.summary == "liquidations BTCUSDT, last 24h, 2 events"
    assert not list(pipeline.path.parent.glob("*.png"))
    assert chart._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # what a notebook shows


def test_a_chart_from_the_reading_api_saves_like_lakeflow_plot(pipeline, liquidations, tmp_path):
    chart = lakeflow_charts.chart(lakeflow.Lake(pipeline.path), "liquidations", size="900x450")
    assert chart.save(tmp_path / "c.png").endswith("3 events, 900x450")
    assert png_size(tmp_path / "c.png") == (900, 450)


def test_the_readmes_python_example_runs_on_real_tables(liquidations, commit, tmp_path):
    commit("prices", [ticker(m, "BTCUSDT", str(100 + m)) for m in range(10)])
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Reading from Python") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    exec(compile(block[1], "README.md", "exec"), {})  # the cwd holds the fixture's pipeline
    assert png_size(tmp_path / "btc.png") == (1200, 600)


def test_the_plugin_readme_commands_work(plot, commit, two_exchanges, tmp_path):
    commit("prices", [ticker(m) for m in range(10)])
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^lakeflow plot (.*)$", text, re.MULTILINE)
    assert len(commands) == 4
    for command in commands:
        args = shlex.split(command)
        done = plot(*args)
        assert done.exit_code == 0, (command, done.output)
        assert (tmp_path / args[args.index("-o") + 1]).is_file()


# Gaps: a stretch a source did not cover is shaded, so that an outage does not look like
# a quiet market.

TWO_SOURCES = """
[sources.liquidations]
type = "binance_liquidations"

[sources.bybit_liquidations]
type = "bybit_liquidations"

[sources.prices]
type = "binance_prices"
"""


def gap(source: str, table: str, from_minutes_ago: float, to_minutes_ago: float) -> dict:
    """One ``_gaps`` row: ``source`` did not cover ``table`` over that stretch."""
    start = NOW - timedelta(minutes=from_minutes_ago)
    end = NOW - timedelta(minutes=to_minutes_ago)
    return {
        "source": source,
        "table": table,
        "gap_start": start,
        "gap_end": end,
        "seconds": (end - start).total_seconds(),
        "reason": "disconnected",
    }


@pytest.fixture
def commit_gaps(pipeline: lakeflow.Lake) -> Callable[[list[dict]], None]:
    """Commit rows into ``_gaps`` through the real Delta sink, as the runtime does."""

    def write(rows: list[dict]) -> None:
        schema = pipeline.schemas["_gaps"]
        frame = pl.DataFrame(rows, schema=dict(schema.columns))
        pipeline.sink.commit("_gaps", schema, frame, "test", 1)

    return write


def gap_spans(axes: Axes) -> list[tuple[datetime, datetime]]:
    """Where each shaded gap of a panel begins and ends, in time order."""
    spans = [p for p in axes.patches if p.get_facecolor()[:3] == to_rgb(GAP_COLOR)]
    return sorted(
        (mdates.num2date(p.get_x()), mdates.num2date(p.get_x() + p.get_width()))  # type: ignore[attr-defined]
        for p in spans
    )


def legend_texts(axes: Axes) -> list[str]:
    legend = axes.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def near(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(seconds=1)


def test_a_gap_in_the_window_is_shaded_with_a_legend_entry(pipeline, liquidations, commit_gaps):
    commit_gaps([gap("liquidations", "liquidations", 25, 15)])
    (axes,) = lakeflow_charts.chart(pipeline, "liquidations").figure.axes
    ((start, end),) = gap_spans(axes)
    assert near(start, NOW - timedelta(minutes=25))
    assert near(end, NOW - timedelta(minutes=15))
    assert GAP_LABEL in legend_texts(axes)


def test_without_a_gap_nothing_is_shaded(pipeline, liquidations):
    (axes,) = lakeflow_charts.chart(pipeline, "liquidations").figure.axes
    assert gap_spans(axes) == []
    assert GAP_LABEL not in legend_texts(axes)


def test_gaps_outside_the_window_or_of_other_tables_are_not_shaded(
    pipeline, liquidations, commit_gaps
):
    commit_gaps(
        [
            gap("liquidations", "liquidations", 3 * 24 * 60, 2 * 24 * 60),  # before the 24h
            gap("prices", "prices", 25, 15),  # another table
        ]
    )
    (axes,) = lakeflow_charts.chart(pipeline, "liquidations").figure.axes
    assert gap_spans(axes) == []


def test_a_gap_across_the_window_start_is_cut_to_the_window(pipeline, liquidations, commit_gaps):
    commit_gaps([gap("liquidations", "liquidations", 90, 40)])
    (axes,) = lakeflow_charts.chart(pipeline, "liquidations", since="1h").figure.axes
    ((start, end),) = gap_spans(axes)
    assert start >= NOW - timedelta(minutes=61)
    assert near(end, NOW - timedelta(minutes=40))


def test_prices_shade_the_gaps_of_the_prices_source(pipeline, commit, commit_gaps):
    commit("prices", [ticker(m) for m in range(30)])
    commit_gaps([gap("prices", "prices", 20, 10), gap("liquidations", "liquidations", 5, 1)])
    (axes,) = lakeflow_charts.chart(pipeline, "prices", symbol="BTCUSDT").figure.axes
    ((start, _end),) = gap_spans(axes)
    assert near(start, NOW - timedelta(minutes=20))
    assert GAP_LABEL in legend_texts(axes)


@pytest.fixture
def two_sources(tmp_path, write_toml, commit, two_exchanges) -> lakeflow.Lake:
    """The pipeline with a Bybit source beside Binance's, into the same table."""
    return lakeflow.Lake(write_toml(TWO_SOURCES))


def panels(chart: lakeflow_charts.Chart) -> dict[str, Axes]:
    """Each panel of a ``by_exchange`` chart by its exchange (its title's first word)."""
    return {axes.get_title().split(":")[0]: axes for axes in chart.figure.axes}


def test_by_exchange_shades_each_exchanges_gaps_in_its_own_panel(two_sources, commit_gaps):
    commit_gaps([gap("bybit_liquidations", "liquidations", 40, 30)])
    drawn = panels(lakeflow_charts.chart(two_sources, "liquidations", by_exchange=True))
    assert len(gap_spans(drawn["bybit"])) == 1
    assert GAP_LABEL in legend_texts(drawn["bybit"])
    assert gap_spans(drawn["binance"]) == []
    assert GAP_LABEL not in legend_texts(drawn["binance"])


def test_summed_chart_shades_every_exchanges_gaps(two_sources, commit_gaps):
    commit_gaps(
        [
            gap("bybit_liquidations", "liquidations", 40, 30),
            gap("liquidations", "liquidations", 9, 8),
        ]
    )
    (axes,) = lakeflow_charts.chart(two_sources, "liquidations").figure.axes
    assert len(gap_spans(axes)) == 2
    assert legend_texts(axes).count(GAP_LABEL) == 1


def test_exchange_option_shades_only_that_exchanges_gaps(two_sources, commit_gaps):
    commit_gaps([gap("bybit_liquidations", "liquidations", 40, 30)])
    (axes,) = lakeflow_charts.chart(two_sources, "liquidations", exchange="binance").figure.axes
    assert gap_spans(axes) == []


def test_an_exchange_not_collected_in_the_window_still_gets_its_panel(
    pipeline, liquidations, commit_gaps, write_toml
):
    # Bybit wrote nothing: it was down all window. Its panel shows why, not silence.
    commit_gaps([gap("bybit_liquidations", "liquidations", 24 * 60, 0)])
    lake = lakeflow.Lake(write_toml(TWO_SOURCES))
    drawn = panels(lakeflow_charts.chart(lake, "liquidations", by_exchange=True))
    assert set(drawn) == {"binance", "bybit"}
    assert drawn["bybit"].get_title() == "bybit: 0 events, 0 USDT"
    assert len(gap_spans(drawn["bybit"])) == 1


def test_the_command_draws_the_gap_legend(plot, liquidations, commit_gaps, tmp_path):
    commit_gaps([gap("liquidations", "liquidations", 25, 15)])
    done = plot("liquidations", "-o", "chart.svg")
    assert done.exit_code == 0, done.output
    assert GAP_LABEL in svg_texts(ET.parse(tmp_path / "chart.svg").getroot())
