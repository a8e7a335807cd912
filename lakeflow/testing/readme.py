"""Reading a plugin's README in its tests, so that its examples and tables are checked.

A README's configuration examples should load, its table of keys should be the config's
keys, its schema table the schema's columns in order: tests that say so keep the README
true as the code changes. These read the Markdown the way such tests need.
"""

from __future__ import annotations

import itertools
import re


def code_blocks(markdown: str, language: str) -> list[str]:
    """The text of every fenced block of ``language`` (```` ```toml ````), in order."""
    return re.findall(rf"```{re.escape(language)}\n(.*?)```", markdown, flags=re.S)


def table_after(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``, header and rule left out.

    Raises ValueError when the heading, or a table after it, is missing.
    """
    if heading not in markdown:
        raise ValueError(f"no {heading!r} in the README")
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise ValueError(f"no table after {heading!r} in the README")
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in list(table)[2:]]
