"""``lakeflow new-plugin``: names, refusals, lint-clean output, and a scaffolded plugin for real.

The last test is the proof that a plugin author's path works: scaffold, install into this
environment, see it in ``list-sources``, run its generated tests and collect with
``lakeflow run`` against a stand-in, then uninstall.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from harness import LAKEFLOW, reaped, wait_for
from lakeflow.cli.new_plugin import new_plugin
from lakeflow.cli.new_plugin.scaffold import FILES, Names, PluginNameError, scaffold
from lakeflow.testing import WebSocketStandIn

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
TRADES = [
    b'{"e":"trade","E":1732406400002,"s":"BTCUSDT","t":1,"p":"97000.10","q":"0.002",'
    b'"T":1732406400000,"m":true,"M":true}',
    b'{"e":"trade","E":1732406401502,"s":"ETHUSDT","t":2,"p":"3400.5","q":"1.25",'
    b'"T":1732406401500,"m":false,"M":true}',
]


@pytest.fixture
def new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``new(*args)``: run ``lakeflow new-plugin`` in-process, in ``tmp_path`` (fast)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        return CliRunner().invoke(new_plugin, list(args))

    return run


@pytest.mark.parametrize(
    ("name", "names"),
    [
        ("okx", Names("okx", "lakeflow_okx", "lakeflow-okx", "OkxSource")),
        (
            "bybit-liquidations",
            Names(
                "bybit_liquidations",
                "lakeflow_bybit_liquidations",
                "lakeflow-bybit-liquidations",
                "BybitLiquidationsSource",
            ),
        ),
        (
            "kraken2_ohlc",
            Names(
                "kraken2_ohlc",
                "lakeflow_kraken2_ohlc",
                "lakeflow-kraken2-ohlc",
                "Kraken2OhlcSource",
            ),
        ),
    ],
)
def test_a_name_gives_every_spelling_of_the_plugin(name, names):
    assert Names.of(name) == names


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("OKX", "lower-case"),
        ("okx trades", "lower-case"),
        ("2fast", "starting"),
        ("okx__trades", "joined by"),
        ("okx_", "joined by"),
        ("lakeflow-okx", "without the lakeflow prefix ('okx')"),
        ("x" * 41, "at most 40"),
    ],
)
def test_a_bad_name_is_refused_saying_why(name, problem):
    with pytest.raises(PluginNameError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Names.of(name)


def test_the_command_exits_2_on_a_bad_name_and_writes_nothing(new, tmp_path):
    done = new("Okx.Trades")

    assert done.exit_code == 2
    assert "'Okx.Trades' is not a plugin name" in done.output
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_a_folder_that_is_not_empty(new, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")

    done = new("okx", "--dir", "mine")

    assert done.exit_code == 2
    assert "mine already exists and is not an empty folder" in done.output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kind", ["--streaming", "--polling"])
def test_generated_code_passes_ruff_check_and_format(new, tmp_path, kind):
    done = new("okx_trades", kind, "--dir", "plugin")
    assert done.exit_code == 0, done.output

    for command in (["check", "."], ["format", "--check", "."]):
        ruff = subprocess.run(
            [str(BIN / "ruff"), *command],
            cwd=tmp_path / "plugin",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_the_default_folder_is_the_distribution_name(new, tmp_path):
    done = new("okx-trades")

    assert done.exit_code == 0, done.output
    root = tmp_path / "lakeflow-okx-trades"
    assert (root / "src" / "lakeflow_okx_trades" / "source.py").is_file()
    assert 'okx_trades = "lakeflow_okx_trades"' in (root / "pyproject.toml").read_text()


def installer() -> list[str] | None:
    """The command that installs into this test environment: uv, else pip, else none."""
    uv = shutil.which("uv")
    if uv:
        # --offline: the build backend (hatchling) comes from uv's cache, never the internet.
        return [uv, "pip", "install", "--offline", "--python", sys.executable]
    if (
        subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode
        == 0
    ):
        return [sys.executable, "-m", "pip", "install", "--no-index", "--no-build-isolation"]
    return None


def uninstall(*dists: str) -> None:
    uv = shutil.which("uv")
    command = (
        [uv, "pip", "uninstall", "--python", sys.executable, *dists]
        if uv
        else [sys.executable, "-m", "pip", "uninstall", "-y", *dists]
    )
    subprocess.run(command, capture_output=True, timeout=60, check=False)


@pytest.fixture
def installed_plugins(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A streaming and a polling plugin, scaffolded and installed; uninstalled afterwards."""
    install = installer()
    if install is None:
        pytest.skip("neither uv nor pip is available to install the scaffolded plugin")
    folders = {"streaming": tmp_path / "proof-trades", "polling": tmp_path / "proof-prices"}
    # In-process: the command itself is tested above; here the output is what matters.
    scaffold("proof_trades", "streaming", folders["streaming"])
    scaffold("proof_prices", "polling", folders["polling"])
    try:
        args = [arg for folder in folders.values() for arg in ("-e", str(folder))]
        done = subprocess.run(
            [*install, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        yield folders
    finally:
        uninstall("lakeflow-proof-trades", "lakeflow-proof-prices")


def test_a_scaffolded_plugin_installs_lists_passes_its_tests_and_collects(
    installed_plugins, tmp_path
):
    env = {**os.environ, "LAKEFLOW_PLUGINS": "proof_trades,proof_prices"}

    listed = subprocess.run(
        [LAKEFLOW, "list-sources"], capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "proof_trades  (streaming)  lakeflow-proof-trades 0.1.0" in listed.stdout
    assert "proof_prices  (polling)  lakeflow-proof-prices 0.1.0" in listed.stdout

    # The generated tests, unchanged, in a pytest of their own.
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *map(str, installed_plugins.values())],
        capture_output=True, text=True, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "9 passed" in tests.stdout  # 4 streaming + 5 polling

    # And `lakeflow run` of the streaming one against a stand-in, stopped by SIGINT.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with WebSocketStandIn(TRADES) as server:
        (run_dir / "lakeflow.toml").write_text(
            f'[sink]\nuri = "tables"\nflush_interval = 0.2\n\n'
            f'[sources.trades]\ntype = "proof_trades"\nurl = "{server.url}"\n'
        )
        table = run_dir / "tables" / "proof_trades"
        with reaped(subprocess.Popen(
            [LAKEFLOW, "run"], cwd=run_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )) as process:  # fmt: skip
            wait_for(
                lambda: (table / "_delta_log").is_dir(),
                30,
                "the table's first commit",
                interval=0.1,
            )
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    rows = pl.read_delta(str(table)).sort("trade_time")
    assert rows["symbol"].to_list() == ["BTCUSDT", "ETHUSDT"]
    assert rows["price"].cast(pl.String).to_list() == [
        "97000.100000000000000000",
        "3400.500000000000000000",
    ]


def test_the_command_is_registered_with_the_cli(cli):
    done = cli("new-plugin", "--help")

    assert done.returncode == 0
    assert "--streaming / --polling" in done.stdout


def test_the_wheel_ships_the_templates_and_the_pytest_plugin_but_no_dev_script(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the wheel")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [uv, "build", "--wheel", "--offline", "--out-dir", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("lakeflow_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    for template in FILES:
        for kind in ("streaming", "polling"):
            assert f"lakeflow/cli/new_plugin/templates/{template.format(kind=kind)}" in names
    assert b"[pytest11]\nlakeflow = lakeflow.testing.plugin" in entry_points
    # The hook reference's generator is for lakeflow's developers (docs/hookdocs.py).
    assert not [name for name in names if "hookdocs" in name]


def pyproject_shape(path: Path) -> tuple[list[str], list[str], list[str]]:
    """A pyproject's tables, its [project] keys and its entry-point groups, in order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return list(data), list(data["project"]), list(data["project"]["entry-points"])


@pytest.mark.parametrize("kind", ["--streaming", "--polling"])
def test_a_scaffolded_plugin_has_the_repository_plugins_pyproject_shape(new, tmp_path, kind):
    # A plugin added to plugins/ must pass the repository's own shape test unchanged.
    assert new("deribit_trades", kind).exit_code == 0
    repository = ROOT / "plugins" / "lakeflow_okx_liquidations" / "pyproject.toml"

    assert pyproject_shape(tmp_path / "lakeflow-deribit-trades" / "pyproject.toml") == (
        pyproject_shape(repository)
    )


def test_inside_lakeflows_workspace_the_next_steps_say_how_to_install_it_there(new, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "lakeflow-core"\n\n[tool.uv.workspace]\nmembers = ["plugins/*"]\n'
    )
    done = new("deribit_trades", "--dir", "plugins/lakeflow_deribit_trades")

    assert done.exit_code == 0, done.output
    assert "add 'lakeflow-deribit-trades' to the dev group" in done.output
    assert "uv run pytest plugins/lakeflow_deribit_trades" in done.output
    assert "uv pip install" not in done.output


def test_outside_a_workspace_the_next_steps_install_it_with_pip_or_uv(new):
    done = new("deribit_trades")

    assert 'uv pip install -e "lakeflow-deribit-trades[test]"' in done.output
