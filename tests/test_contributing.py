"""CONTRIBUTING.md's layout is the code's: every module of ``lakeflow/`` listed once, no other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A line of the tree: its indent, a name (a folder ends in "/"), and what it holds.
LINE = re.compile(r"^(?P<indent> *)(?P<name>\S+)(?:\s{2,}(?P<what>.+))?$")


def layout_tree() -> list[str]:
    """The paths the layout section of CONTRIBUTING.md lists, folders resolved."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## The layout", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    paths: list[str] = []
    folders: list[str] = []
    for line in block.splitlines():
        match = LINE.match(line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match["indent"]) // 2
        del folders[depth:]
        name = match["name"]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            assert match["what"], f"{name} says nothing about what it holds"
            paths.append("/".join([*folders, name]))
    return paths


def test_every_module_of_the_package_is_in_the_layout_once() -> None:
    listed = layout_tree()
    modules = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "lakeflow").rglob("*.py"))

    assert sorted(set(listed)) == sorted(listed), "a module is listed twice"
    assert sorted(listed) == modules
