"""docs/plugins.md says what the code does: its hook reference, its excerpts, its commands."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from lakeflow.cli.new_plugin.scaffold import scaffold
from lakeflow.plugins import make_manager
from lakeflow.testing import HttpStandIn, WebSocketStandIn
from lakeflow.testing import plugin as testing_plugin

ROOT = Path(__file__).resolve().parents[1]
GUIDE_PATH = ROOT / "docs" / "plugins.md"
GUIDE = GUIDE_PATH.read_text(encoding="utf-8")


def _script(path: Path) -> ModuleType:
    """A development script (not in the wheel, so not importable by name), loaded by path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hookdocs = _script(ROOT / "docs" / "hookdocs.py")


def blocks(language: str, text: str = GUIDE) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.S | re.M)


def test_hook_reference_is_rendered_from_the_hookspecs():
    # Stale? Run: uv run python docs/hookdocs.py docs/plugins.md
    assert hookdocs.current(GUIDE) == hookdocs.render()
    assert hookdocs.main([str(GUIDE_PATH), "--check"]) == 0


def test_the_hookdocs_script_runs_as_contributing_says():
    # `uv run python docs/hookdocs.py docs/plugins.md --check`, from the repository's root.
    done = subprocess.run(
        [sys.executable, "docs/hookdocs.py", "docs/plugins.md", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_every_hook_the_manager_knows_is_documented_with_its_signature():
    reference = hookdocs.current(GUIDE) or ""
    pm = make_manager()
    names = [name for name in dir(pm.hook) if not name.startswith("_")]

    assert names
    for name in names:
        spec = getattr(pm.hook, name).spec
        params = ", ".join(spec.argnames)
        assert f"### `{name}`" in reference
        assert re.search(rf"def {name}\({params}: [^\n]*\) -> None", reference), name


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every file of the two plugins the guide's examples are taken from, concatenated."""
    root = tmp_path_factory.mktemp("guide")
    scaffold("okx_trades", "streaming", root / "trades")
    scaffold("okx_prices", "polling", root / "prices")
    return "\n".join(p.read_text() for p in sorted(root.rglob("*")) if p.is_file())


def test_python_examples_outside_the_reference_are_excerpts_of_generated_code(generated):
    guide = GUIDE.replace(hookdocs.current(GUIDE) or "", "")
    examples = [block for block in blocks("python", guide) if not block.startswith("from ")]

    assert len(examples) >= 6
    for example in examples:
        lines = [line for line in example.strip().splitlines() if line.strip()]
        assert all(line in generated for line in lines), example
        assert example.strip() in generated, example


def test_test_example_with_imports_is_in_the_generated_polling_tests(generated):
    (example,) = [block for block in blocks("python") if block.startswith("from ")]
    body = example.split("\n\n\n", 1)[1].strip()

    assert "from lakeflow.testing import Response" in generated
    assert body in generated


def test_toml_examples_parse_and_name_the_generated_entry_point(generated):
    parsed = [tomllib.loads(block) for block in blocks("toml")]

    assert {"project": {"entry-points": {"lakeflow": {"okx_trades": "lakeflow_okx_trades"}}}} in (
        parsed
    )
    assert 'okx_trades = "lakeflow_okx_trades"' in generated


def test_the_fixtures_table_names_every_fixture_of_the_pytest_plugin():
    documented = re.findall(r"^\| `(\w+)` \|", GUIDE, flags=re.M)
    fixtures = [
        name
        for name, value in vars(testing_plugin).items()
        if type(value).__name__ == "FixtureFunctionDefinition"  # what @pytest.fixture makes
    ]

    assert sorted(documented) == sorted(fixtures)


def call_form(cls: type) -> str:
    """``cls``'s parameters as the guide writes them: ``*a, b=None, c=(1, "x")``."""
    parts, starred = [], False
    for p in inspect.signature(cls).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            starred = True
            continue
        if p.kind is p.KEYWORD_ONLY and not starred:
            parts.append("*")
            starred = True
        default = "" if p.default is p.empty else "=" + repr(p.default).replace("'", '"')
        parts.append(p.name + default)
    return ", ".join(parts)


@pytest.mark.parametrize("cls", [WebSocketStandIn, HttpStandIn], ids=lambda c: c.__name__)
def test_the_stand_in_signatures_in_the_guide_are_the_real_ones(cls):
    shown = re.search(rf"\*\*`{cls.__name__}\((.*?)\)`\*\*", GUIDE, flags=re.S)

    assert shown, cls.__name__
    assert " ".join(shown.group(1).split()) == call_form(cls)


def test_quick_start_commands_are_the_real_ones():
    shell = "\n".join(blocks("sh"))

    assert "lakeflow new-plugin okx_trades" in shell
    assert 'uv pip install -e "./lakeflow-okx-trades[test]"' in shell
    assert "pytest lakeflow-okx-trades" in shell


def quick_start() -> str:
    """The shell commands of the guide's quick start, up to the first run of the tests."""
    section = GUIDE.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    install, scaffold_and_test = blocks("sh", section)[:2]
    return install + scaffold_and_test


def test_quick_start_gives_a_working_tested_plugin_in_a_fresh_environment(tmp_path):
    """What a new user types, as the guide writes it, in a new virtual environment."""
    if shutil.which("uv") is None:
        pytest.skip("the quick start uses uv")
    root = GUIDE_PATH.parents[1]
    script = quick_start().replace("/path/to/lakeflow", str(root))
    # The locked third-party packages go in first, without resolving, so that the guide's
    # commands find every dependency already satisfied at the versions this checkout tests.
    locked = tmp_path / "locked.txt"
    subprocess.run(
        ["uv", "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--all-packages",
         "--all-extras", "--all-groups", "--quiet", "-o", str(locked)],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    assert "source .venv/bin/activate\n" in script, "the quick start no longer makes a venv"
    script = script.replace(
        "source .venv/bin/activate\n",
        f"source .venv/bin/activate\nuv pip install --quiet --no-deps -r {locked}\n",
        1,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # The same Python version as this run. Not offline: on a fresh machine uv's cache
    # holds nothing, and the package index is reachable wherever `uv sync` worked.
    env |= {"UV_PYTHON": "{}.{}".format(*sys.version_info[:2])}

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "okx_trades  (streaming)  lakeflow-okx-trades 0.1.0" in done.stdout
    assert re.search(r"^4 passed", done.stdout.splitlines()[-1].strip("= ")), done.stdout
