"""The distribution as lakeflow finds it: entry point, registrations, what list-sources says."""

from __future__ import annotations

from click.testing import CliRunner
from lakeflow_market_schemas import LIQUIDATION

from lakeflow.cli import cli
from lakeflow.plugins import load


def test_okx_source_is_found_through_its_entry_point():
    registry = load()

    info = registry.sources["okx_liquidations"]
    assert (info.plugin, info.distribution) == ("okx_liquidations", "lakeflow-okx-liquidations")
    assert info.cls.schema == LIQUIDATION.name


def test_okx_plugin_registers_the_shared_liquidation_schema():
    registry = load()

    assert registry.schemas["liquidation"] is LIQUIDATION
    assert not {name: error for name, error in registry.errors.items() if "okx" in name}


def test_okx_list_sources_says_the_table_is_a_sample():
    done = CliRunner().invoke(cli, ["list-sources"])

    assert done.exit_code == 0, done.output
    entry = done.stdout.split("okx_liquidations", 1)[1]
    assert "at most one liquidation per instrument per second" in " ".join(entry.split())
