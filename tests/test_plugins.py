"""Plugin discovery: entry points, built-ins through the same hooks, broken plugins isolated."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import click
import polars as pl
from click.testing import CliRunner

import lakeflow
from harness import TEST_PLUGINS, needs_workspace_plugins, with_test_plugins
from lakeflow.plugins import load, load_commands
from lakeflow.sinks.delta import DeltaSink


class GoodSource(lakeflow.PollingSource):
    type = "in_test_good"
    schema = "in_test_record"
    description = "registered by a test"

    async def poll(self) -> bytes:
        return b"{}"

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        return lakeflow.Decoded(rows=pl.DataFrame())


class GoodPlugin:
    @lakeflow.hookimpl
    def register_schemas(self, register):
        register(lakeflow.TableSchema("in_test_record", "in_test", {"x": pl.Int64()}, ()))

    @lakeflow.hookimpl
    def register_sources(self, register):
        register(GoodSource)


class RaisingPlugin:
    @lakeflow.hookimpl
    def register_sources(self, register):
        raise RuntimeError("boom in register_sources")


class WrongHookPlugin:
    @lakeflow.hookimpl
    def register_sauces(self, register):
        pass


def test_third_party_plugin_is_found_through_its_entry_point():
    registry = load()
    info = registry.sources["test_sequence"]
    assert info.plugin == "testsource"
    assert info.distribution == "lakeflow-testsource"
    assert registry.schemas["test_record"].table == "test_records"


def test_the_test_plugin_dist_info_declares_the_entry_point_of_its_pyproject():
    plugin = Path(TEST_PLUGINS).parent
    declared = tomllib.loads((plugin / "pyproject.toml").read_text())
    info = Path(TEST_PLUGINS) / "lakeflow_testsource-0.1.0.dist-info"
    entry_points = configparser.ConfigParser()
    entry_points.read(info / "entry_points.txt")
    assert dict(entry_points["lakeflow"]) == declared["project"]["entry-points"]["lakeflow"]
    assert f"Version: {declared['project']['version']}" in (info / "METADATA").read_text()


def test_the_test_plugin_is_not_in_the_environment_uv_run_builds():
    # `uv run lakeflow run` in a fresh clone installs the project and its default groups:
    # a user's `lakeflow list-sources` must not show the suite's test sources.
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    default = project["dependency-groups"]["dev"]
    assert not [d for d in default if d.startswith("lakeflow-testsource")]


@needs_workspace_plugins
def test_workspace_binance_plugins_are_found_through_entry_points():
    registry = load()
    assert registry.sources["binance_liquidations"].distribution == "lakeflow-binance-liquidations"
    assert registry.sources["binance_prices"].distribution == "lakeflow-binance-prices"


def test_builtin_sink_and_system_tables_register_through_the_hooks(pm):
    registry = load(pm, entry_points=False)
    assert "delta" in registry.sinks
    assert {"_dead_letter", "_gap"} <= set(registry.schemas)
    assert "lakeflow.sinks.delta" in [name for name, _ in pm.list_name_plugin()]


def test_in_test_plugin_registers_a_source(pm):
    pm.register(GoodPlugin(), name="good")
    registry = load(pm, entry_points=False)
    assert registry.sources["in_test_good"].cls is GoodSource
    assert not registry.errors


def test_plugin_that_raises_while_registering_is_reported_by_name(pm):
    pm.register(GoodPlugin(), name="good")
    pm.register(RaisingPlugin(), name="raising")
    registry = load(pm, entry_points=False)
    assert "boom in register_sources" in registry.errors["raising"]
    assert "in_test_good" in registry.sources


class PlainConfig(lakeflow.SourceConfig):
    url: str = "ws://127.0.0.1:9"


class StreamWithPlainConfig(lakeflow.StreamingSource):
    type = "in_test_plain_stream"
    schema = "in_test_record"
    Config = PlainConfig  # type: ignore[assignment]  # the mistake this test is about

    async def stream(self, feed: lakeflow.Feed) -> None:
        feed.connected()

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        return lakeflow.Decoded(rows=pl.DataFrame())


class PlainStreamPlugin:
    @lakeflow.hookimpl
    def register_sources(self, register):
        register(StreamWithPlainConfig)


def test_a_streaming_source_whose_config_is_not_a_streaming_config_is_refused_by_name(pm):
    pm.register(GoodPlugin(), name="good")
    pm.register(PlainStreamPlugin(), name="plain")

    registry = load(pm, entry_points=False)

    assert "in_test_plain_stream" not in registry.sources
    error = registry.errors["plain"]
    assert "plugin 'plain'" in error
    assert "StreamWithPlainConfig" in error
    assert "'PlainConfig'" in error
    assert "derive its Config from lakeflow.StreamingConfig" in error
    assert "in_test_good" in registry.sources


class StreamWithClassSilence(lakeflow.StreamingSource):
    type = "in_test_class_silence"
    schema = "in_test_record"
    silence_timeout = 30.0  # where it was read before it moved to the config

    async def stream(self, feed: lakeflow.Feed) -> None:
        feed.connected()

    def decode(self, batch: lakeflow.Batch) -> lakeflow.Decoded:
        return lakeflow.Decoded(rows=pl.DataFrame())


class ClassSilencePlugin:
    @lakeflow.hookimpl
    def register_sources(self, register):
        register(StreamWithClassSilence)


def test_a_streaming_source_setting_silence_timeout_on_the_class_is_told_where_it_moved(pm):
    pm.register(GoodPlugin(), name="good")
    pm.register(ClassSilencePlugin(), name="old")

    registry = load(pm, entry_points=False)

    assert "in_test_class_silence" not in registry.sources
    assert "declare it on its Config instead" in registry.errors["old"]


class GreedySettings(lakeflow.SinkSettings):
    uri: str = "elsewhere"


class GreedySink(DeltaSink):
    type = "in_test_greedy"
    Config = GreedySettings  # type: ignore[assignment]  # the mistake this test is about


class GreedySinkPlugin:
    @lakeflow.hookimpl
    def register_sinks(self, register):
        register(GreedySink)


def test_a_sink_whose_config_declares_a_generic_sink_key_is_refused_by_name(pm):
    pm.register(GreedySinkPlugin(), name="greedy")

    registry = load(pm, entry_points=False)

    assert "in_test_greedy" not in registry.sinks
    assert "declares uri, which [sink] keeps for every sink type" in registry.errors["greedy"]


def test_plugin_implementing_an_unknown_hook_is_reported_by_name(pm):
    pm.register(WrongHookPlugin(), name="wrong")
    registry = load(pm, entry_points=False)
    assert "unknown hook" in registry.errors["wrong"]
    assert "delta" in registry.sinks


class FewerArgumentsPlugin:
    """Implements a hook with fewer arguments than its spec, as pluggy allows."""

    called = False

    @lakeflow.hookimpl
    def register_schemas(self):
        FewerArgumentsPlugin.called = True


def test_hook_implementation_taking_fewer_arguments_than_the_spec_is_called(pm):
    pm.register(FewerArgumentsPlugin(), name="fewer")
    registry = load(pm, entry_points=False)
    assert FewerArgumentsPlugin.called
    assert "fewer" not in registry.errors


class OtherWrongHookPlugin:
    @lakeflow.hookimpl
    def register_sinkz(self, register):
        pass


def test_every_plugin_implementing_an_unknown_hook_is_reported(pm):
    pm.register(WrongHookPlugin(), name="wrong")
    pm.register(OtherWrongHookPlugin(), name="also_wrong")
    registry = load(pm, entry_points=False)
    assert "register_sauces" in registry.errors["wrong"]
    assert "register_sinkz" in registry.errors["also_wrong"]
    assert pm.get_plugin("also_wrong") is None


class SecondDeltaSinkPlugin:
    @lakeflow.hookimpl
    def register_sinks(self, register):
        class Impostor(DeltaSink):
            pass

        register(Impostor)


def test_sink_type_registered_twice_is_refused_and_the_first_kept(pm):
    pm.register(SecondDeltaSinkPlugin(), name="impostor")
    registry = load(pm, entry_points=False)
    assert registry.sinks["delta"] is DeltaSink
    assert (
        "sink type 'delta' is already registered by plugin 'lakeflow.sinks.delta'"
        in (registry.errors["impostor"])
    )


class TwiceBrokenPlugin:
    @lakeflow.hookimpl
    def register_schemas(self, register):
        raise RuntimeError("first failure")

    @lakeflow.hookimpl
    def register_sources(self, register):
        raise RuntimeError("second failure")


def test_every_error_of_one_plugin_is_reported(pm):
    pm.register(TwiceBrokenPlugin(), name="twice")
    registry = load(pm, entry_points=False)
    assert "first failure" in registry.errors["twice"]
    assert "second failure" in registry.errors["twice"]


def test_lakeflow_plugins_variable_limits_which_plugins_load(monkeypatch):
    monkeypatch.setenv("LAKEFLOW_PLUGINS", "testsource")
    registry = load()
    assert "test_sequence" in registry.sources
    assert "binance_prices" not in registry.sources


def _broken_distribution(root: Path) -> Path:
    """A real installed-looking distribution whose entry point fails to import."""
    site = root / "site"
    (site / "lakeflow_broken_plugin").mkdir(parents=True)
    (site / "lakeflow_broken_plugin" / "__init__.py").write_text(
        "raise ImportError('lakeflow_broken_plugin needs a module that is not installed')\n"
    )
    info = site / "lakeflow_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lakeflow-broken-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""
        [lakeflow]
        broken = lakeflow_broken_plugin
        """)
    )
    return site


def test_list_sources_reports_a_broken_plugin_and_lists_the_rest(cli, tmp_path):
    site = _broken_distribution(tmp_path)
    done = cli("list-sources", env={"PYTHONPATH": with_test_plugins(str(site))})
    assert done.returncode == 0, done.stderr
    assert "test_sequence" in done.stdout
    assert "BROKEN plugin broken: ImportError" in done.stderr


def test_list_sources_json_has_errors_and_config_keys(cli, tmp_path):
    site = _broken_distribution(tmp_path)
    done = cli("list-sources", "--json", env={"PYTHONPATH": with_test_plugins(str(site))})
    data = json.loads(done.stdout)
    by_type = {row["type"]: row for row in data["sources"]}
    assert by_type["test_sequence"]["kind"] == "streaming"
    assert by_type["test_clock"]["kind"] == "polling"
    assert "count" in [key["key"] for key in by_type["test_sequence"]["config"]]
    assert data["errors"][0]["plugin"] == "broken"


def test_run_logs_a_broken_plugin_and_runs_the_others(cli, tmp_path, write_toml):
    site = _broken_distribution(tmp_path)
    write_toml('[sources.clock]\ntype = "test_clock"\ninterval = 0.1\n')
    done = cli("run", "--once", env={"PYTHONPATH": with_test_plugins(str(site))})
    assert done.returncode == 0, done.stderr
    assert "plugin broken failed to load" in done.stderr
    assert (tmp_path / "tables" / "test_records" / "_delta_log").is_dir()


class CommandPlugin:
    @lakeflow.hookimpl
    def register_commands(self, cli):
        @cli.command(help="Say hello.")
        def hello():
            click.echo("hello from a plugin")

        @cli.command(name="run", help="Not the real run.")
        def impostor():
            click.echo("impostor")


def test_a_plugin_adds_a_command_to_the_cli(pm):
    group = click.Group(commands={"run": click.Command("run")})
    pm.register(CommandPlugin(), name="greeter")
    registry = load_commands(group, pm, entry_points=False)
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"
    assert registry.commands == {"hello": "greeter"}


def test_a_plugin_command_cannot_take_a_built_in_commands_name(pm):
    builtin = click.Command("run")
    group = click.Group(commands={"run": builtin})
    pm.register(CommandPlugin(), name="greeter")
    registry = load_commands(group, pm, entry_points=False)
    assert group.commands["run"] is builtin
    assert "command 'run' is already one of lakeflow itself's" in registry.errors["greeter"]


@needs_workspace_plugins
def test_the_installed_cli_lists_the_commands_plugins_add(cli):
    done = cli("--help")
    assert re.search(r"^  plot\s+Draw liquidation notional", done.stdout, re.M), done.stdout


def test_learning_the_plugins_commands_imports_no_heavy_library():
    # Every command, --help included, asks the plugins for their commands first.
    probe = (
        "import sys, lakeflow.cli\n"
        "from lakeflow.plugins import load_commands\n"
        "load_commands(lakeflow.cli.cli)\n"
        "print(sorted(m for m in ('polars', 'deltalake', 'matplotlib', 'pydantic', 'aiohttp')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_every_plugin_distribution_of_the_repository_has_one_pyproject_shape():
    root = Path(__file__).resolve().parents[1]
    shapes = {}
    for path in [*root.glob("plugins/*/pyproject.toml"), *root.glob("examples/*/pyproject.toml")]:
        data = tomllib.loads(path.read_text())
        shapes[path.parent.name] = (
            list(data),
            list(data["project"]),
            list(data["project"]["entry-points"]),
            data["project"]["license"],
        )
    assert len(set(map(repr, shapes.values()))) == 1, shapes
