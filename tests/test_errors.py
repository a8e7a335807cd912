"""Errors: every exception lakeflow raises on purpose is a LakeflowError; a sink's is public.

Each carries the exit code a command ends with, and the CLI turns any of them into one
``Error:`` line and that code, in one place.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import lakeflow
from lakeflow.cli.common import AlreadyReported, Failed, Refused, failing
from lakeflow.cli.group import LakeflowGroup
from lakeflow.runtime.committer import refused
from lakeflow.secrets import add_secret
from lakeflow.sinks.delta.store import StoreError


def lakeflow_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(lakeflow.__path__, "lakeflow."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_class_of_lakeflow_derives_from_lakeflow_error():
    strays = [
        cls.__qualname__
        for cls in lakeflow_exceptions()
        if not issubclass(cls, lakeflow.LakeflowError)
    ]
    assert not strays


@pytest.mark.parametrize(("config", "stops"), [(True, True), (False, False)])
def test_a_sink_error_stops_the_source_only_when_a_person_must_act(config, stops):
    assert refused(lakeflow.SinkError("the bucket is gone", config=config)) is stops


def test_the_delta_sinks_store_error_is_a_public_sink_error():
    assert issubclass(StoreError, lakeflow.SinkError)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (lakeflow.LakeflowError("anything on purpose"), 1),
        (lakeflow.SourceError("an invalid symbol"), 1),
        (lakeflow.CommitRefused("a refused permission"), 1),
        (lakeflow.SinkError("the store is down", config=False), 1),
        (lakeflow.SinkError("no such bucket", config=True), 2),
        (lakeflow.ConfigError("lakeflow.toml: sink.uri: missing"), 2),
        (lakeflow.SchemaMismatch("trades: price: double, was decimal"), 2),
        (Failed("query failed: no such table"), 1),
        (Refused("no source named nope"), 2),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_an_error_carries_the_exit_code_a_command_ends_with(error, code):
    # 2 when a person must change something first (as click's usage errors), else 1.
    assert error.exit_code == code


def invoke(command: click.Command) -> tuple[int, str, str]:
    """Run ``command`` through a fresh ``lakeflow`` group: exit code, stdout, stderr."""
    group = LakeflowGroup()
    group.add_command(command, "probe")  # known, so no plugin is asked for commands
    done = CliRunner().invoke(group, ["probe"])
    return done.exit_code, done.stdout, done.stderr


@pytest.mark.parametrize(
    "error",
    [
        lakeflow.ConfigError("lakeflow.toml: sink.uri: missing"),
        lakeflow.SinkError("down", config=False),
    ],
    ids=["ConfigError", "SinkError"],
)
def test_any_command_ending_on_an_error_prints_one_line_and_exits_with_its_code(error):
    @click.command()
    def probe() -> None:  # as a plugin's command would: it only raises
        raise error

    assert invoke(probe) == (error.exit_code, "", f"Error: {error}\n")


def test_the_error_line_masks_secrets():
    add_secret("s3cr3t-in-an-error-message")

    @click.command()
    def probe() -> None:
        raise lakeflow.ConfigError("cannot reach s3cr3t-in-an-error-message")

    assert invoke(probe) == (2, "", "Error: cannot reach ***\n")


def test_a_failure_already_reported_exits_1_saying_nothing_more():
    @click.command()
    def probe() -> None:
        click.echo("clock: not running")
        raise AlreadyReported

    assert invoke(probe) == (1, "clock: not running\n", "")


def test_with_lakeflow_debug_an_error_shows_its_traceback(monkeypatch):
    monkeypatch.setenv("LAKEFLOW_DEBUG", "1")

    @click.command()
    def probe() -> None:  # a plugin's command, failing in a way nobody anticipated
        raise lakeflow.SourceError("the symbol list is wrong")

    group = LakeflowGroup()
    group.add_command(probe, "probe")
    done = CliRunner().invoke(group, ["probe"])
    assert isinstance(done.exception, lakeflow.SourceError)  # raised on to ``main``
    assert "Error:" not in done.stderr


def test_failing_prefixes_the_message_and_keeps_the_errors_exit_code():
    @click.command()
    def probe() -> None:
        with failing("lakeflow.toml: "):
            raise lakeflow.SinkError("no such bucket", config=True)

    assert invoke(probe) == (2, "", "Error: lakeflow.toml: no such bucket\n")


def test_no_command_calls_sys_exit():
    # Commands raise; the group alone turns an error into an exit code.
    cli = Path(lakeflow.__file__).parent / "cli"
    calls = [
        f"{path.relative_to(cli.parent)}:{node.lineno}"
        for path in sorted(cli.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "exit"
        and isinstance(node.value, ast.Name) and node.value.id == "sys"
    ]  # fmt: skip
    assert not calls
