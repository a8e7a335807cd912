"""``lakeflow --help`` lists every command with its whole first sentence."""

from __future__ import annotations

import re

import click
import pytest

from lakeflow.cli import cli as group
from lakeflow.cli.group import summary

COMMANDS = group.list_commands(click.Context(group))


@pytest.fixture
def listed(cli) -> dict[str, str]:
    """Each command's entry in ``lakeflow --help``, its wrapped lines joined."""
    done = cli("--help")
    assert done.returncode == 0, done.stderr
    entries: dict[str, str] = {}
    name = None
    for line in done.stdout.split("Commands:\n", 1)[1].splitlines():
        start = re.match(r"^  (\S+)\s+(.*)$", line)
        if start:
            name = start.group(1)
            entries[name] = start.group(2)
        elif name and line.strip():
            entries[name] += " " + line.strip()
    return entries


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_a_command_with_its_whole_first_sentence(listed, name):
    command = group.get_command(click.Context(group), name)
    assert command is not None
    assert listed[name] == summary(command)
    assert listed[name].endswith((".", "!", "?")), listed[name]
    assert not listed[name].endswith("..."), listed[name]
