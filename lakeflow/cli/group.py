"""The ``lakeflow`` group, whose plugin commands load when first needed, and ``main``."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import click

from lakeflow.cli.common import AlreadyReported
from lakeflow.errors import RUNTIME_FAILURE, LakeflowError
from lakeflow.secrets import redact

if TYPE_CHECKING:
    from lakeflow.plugins import Registry


def main() -> int:
    """The console script: runs the CLI, turning unexpected errors into one clear line.

    Returns the exit code for the script's ``sys.exit`` (click exits by itself otherwise).
    Set ``LAKEFLOW_DEBUG=1`` to see the traceback instead.
    """
    try:
        cli(standalone_mode=True)
    except Exception as exc:
        if os.environ.get("LAKEFLOW_DEBUG"):
            raise
        click.echo(f"Error: {redact(f'{type(exc).__name__}: {exc}')}", err=True)
        click.echo("(set LAKEFLOW_DEBUG=1 for the traceback)", err=True)
        return RUNTIME_FAILURE
    return 0


class LakeflowGroup(click.Group):
    """The ``lakeflow`` group: the built-in commands, then those the plugins add.

    Plugins are asked for their commands (the ``register_commands`` hook) the first time
    a command is looked up or listed, after every built-in is defined, so that a plugin
    cannot take a built-in's name.

    It is also the one place where an error becomes an exit: a :class:`LakeflowError`
    that ends any command, a plugin's too, prints ``Error: MESSAGE`` (secrets redacted)
    and exits with the error's ``exit_code``.
    """

    plugin_registry: Registry | None = None

    def plugin_commands(self) -> Registry:
        """What adding the plugins' commands found (their errors), adding them the first time."""
        if self.plugin_registry is None:
            from lakeflow.plugins import load_commands

            self.plugin_registry = load_commands(self)
        return self.plugin_registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self.plugin_commands()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, each with its whole first sentence (wrapped, never cut).

        click cuts a command's short help to fit one line, often mid-sentence.
        """
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`LakeflowError` it raises ends it as the class says."""
        try:
            return super().invoke(ctx)
        except LakeflowError as exc:
            if os.environ.get("LAKEFLOW_DEBUG") and not isinstance(exc, AlreadyReported):
                raise  # the traceback, as for any other error (``main``)
            if not isinstance(exc, AlreadyReported):
                # As click shows its own ClickException, whose exit code is fixed per class.
                click.echo(f"Error: {redact(str(exc))}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from exc


_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")


def summary(command: click.Command) -> str:
    """A command's line in ``lakeflow --help``: ``short_help``, else its help's first sentence."""
    if command.short_help:
        return command.short_help
    # As click reads help: what follows \f is not for people; paragraphs are blank-line apart.
    text = (command.help or "").split("\f", 1)[0].strip()
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    sentence = _SENTENCE.match(paragraph)
    return sentence.group(1) if sentence else paragraph


@click.group(cls=LakeflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lakeflow-core", prog_name="lakeflow")
def cli() -> None:
    """Collect market data into Delta Lake tables through plugins.

    PIPELINE is a pipeline file, ./lakeflow.toml by default.
    """
