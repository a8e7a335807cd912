"""The ``lakeflow`` command. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

One module per command (a package for ``new-plugin``, with its templates);
:mod:`lakeflow.cli.common` holds what they share, and :mod:`lakeflow.cli.group` turns
any :class:`~lakeflow.LakeflowError` a command raises into a message and its exit code.
"""

from __future__ import annotations

from lakeflow.cli import (
    drift,
    maintain,
    new_plugin,
    query,
    replay,
    run,
    sources,
    status,
    tables,
    validate,
)
from lakeflow.cli.group import LakeflowGroup, cli, main

# Each command imports what it uses, when it runs: `lakeflow --help` and `lakeflow status`
# must not wait for polars, deltalake, aiohttp and every plugin (bench/startup.py).

# Every built-in before the first lookup, which adds the plugins' commands.
for command in (
    run.run,
    validate.validate,
    sources.list_sources,
    status.status,
    tables.tables,
    query.query,
    replay.replay,
    maintain.maintain,
    drift.drift,
    new_plugin.new_plugin,
):
    cli.add_command(command)
del command

__all__ = ["LakeflowGroup", "cli", "main"]
