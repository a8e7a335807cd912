"""lakeflow on S3: the real command against a real S3 server (SeaweedFS) on loopback.

Collectors on several machines share tables through the object store: these tests run
several `lakeflow run` processes and a `lakeflow maintain` on one S3 table at once, and
read the table back the way users do (polars.scan_delta with storage options).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

import lakeflow.sinks.delta.lease as lease_module
from harness import LAKEFLOW, committed, needs_workspace_plugins, reaped, wait_for
from lakeflow import Lake
from lakeflow.config import SinkConfig, load_pipeline
from lakeflow.plugins import load
from lakeflow.sinks.delta import DeltaSink
from lakeflow.sinks.delta.lease import LeaseHeld, lease, lease_uri
from lakeflow.testing import check_sink
from seaweedfs import SECRET_KEY, SeaweedFS

#: The secret reaches the pipeline through ${VAR}, as the README recommends.
SECRET_VAR = "LAKEFLOW_TEST_S3_SECRET"


def pipeline(s3: SeaweedFS, uri: str, sources: str, runtime: str = "", **overrides: str) -> str:
    """A pipeline writing to ``uri`` on ``s3``; ``overrides`` replace storage options."""
    options = s3.storage_options(**{"AWS_SECRET_ACCESS_KEY": f"${{{SECRET_VAR}}}", **overrides})
    lines = "\n".join(f'{key} = "{value}"' for key, value in options.items())
    return f"""
[sink]
uri = "{uri}"
flush_interval = 0.2

[sink.storage_options]
{lines}

[runtime]
{runtime}

{sources}
"""


def sequence(name: str, count: int, rate: float = 0) -> str:
    """A ``test_sequence`` source section: payloads ``1..count`` with ``n`` = the number."""
    return f'[sources.{name}]\ntype = "test_sequence"\ncount = {count}\nrate = {rate}\n'


def environment() -> dict[str, str]:
    return {**os.environ, SECRET_VAR: SECRET_KEY}


def lakeflow(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a `lakeflow` command to completion in ``folder``."""
    return subprocess.run(
        [LAKEFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
        stdin=subprocess.DEVNULL,
    )


def start_run(folder: Path) -> subprocess.Popen[str]:
    """Start `lakeflow run` in ``folder`` (its log goes to ``folder/run.log``)."""
    with open(folder / "run.log", "w") as log:
        return subprocess.Popen(
            [LAKEFLOW, "run"],
            cwd=folder,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environment(),
        )


#: ``wait_for`` of checks that read from S3: a slower poll, a longer wait.
wait_on_s3 = partial(wait_for, timeout=60, interval=0.2)


def stop(process: subprocess.Popen[str], folder: Path) -> None:
    process.terminate()
    assert process.wait(60) == 0, (folder / "run.log").read_text()[-3000:]


@pytest.fixture
def folder(tmp_path: Path) -> Callable[[str, str], Path]:
    """Make a collector's folder holding ``lakeflow.toml`` (its spool goes beside it)."""

    def make(name: str, text: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "lakeflow.toml").write_text(text)
        return path

    return make


@pytest.fixture(scope="module")
def collected(s3: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `lakeflow run` that committed payloads 1..500 to an S3 table, then stopped."""
    root = s3.uri()
    home = tmp_path_factory.mktemp("collector")
    (home / "lakeflow.toml").write_text(pipeline(s3, root, sequence("seq", 500)))
    with reaped(start_run(home)) as process:
        wait_on_s3(lambda: committed(f"{root}/test_records", "seq", s3.storage_options()) >= 500)
        stop(process, home)
    return home, root


def test_run_into_s3_commits_every_payload_once(s3, collected):
    _home, root = collected
    rows = pl.read_delta(f"{root}/test_records", storage_options=s3.storage_options())
    assert sorted(rows["n"].to_list()) == list(range(1, 501))


def test_polars_scan_delta_reads_the_s3_table_with_storage_options(s3, collected):
    _home, root = collected
    frame = (
        pl.scan_delta(f"{root}/test_records", storage_options=s3.storage_options())
        .filter(pl.col("n") > 490)
        .select("n")
        .collect()
    )
    assert sorted(frame["n"].to_list()) == list(range(491, 501))


def test_tables_and_query_work_on_s3(collected):
    home, _root = collected
    tables = lakeflow(home, "tables")
    assert tables.returncode == 0, tables.stderr
    assert "test_records" in tables.stdout and " 500 " in tables.stdout
    query = lakeflow(
        home, "query", "SELECT count(*) AS n, max(n) AS last FROM test_records", "--format", "csv"
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[1] == "500,500"


def test_a_lake_reads_an_s3_table_with_the_pipelines_storage_options(collected, monkeypatch):
    home, _root = collected
    monkeypatch.setenv(SECRET_VAR, SECRET_KEY)  # the pipeline's ${VAR}, as for the CLI
    lake = Lake(home / "lakeflow.toml")
    assert lake.tables == ["test_records"]
    assert lake.sql("SELECT count(*), max(n) FROM test_records").row(0) == (500, 500)


def test_the_secret_never_reaches_the_run_log(collected):
    home, _root = collected
    log = (home / "run.log").read_text()
    assert "rows in" in log
    assert SECRET_KEY not in log


def test_two_collectors_and_maintain_on_one_s3_table_commit_every_payload_once(s3, folder):
    root = s3.uri()
    table = f"{root}/test_records"
    count = 6000
    # Two machines' collectors: different source names, their own spools, one table,
    # each maintaining it every second on its own schedule.
    every_second = "\n[maintenance]\ninterval = 1\n"
    east = folder("east", pipeline(s3, root, sequence("east", count, rate=1500) + every_second))
    west = folder("west", pipeline(s3, root, sequence("west", count, rate=1500) + every_second))
    options = s3.storage_options()
    with ExitStack() as stack:
        runs = [stack.enter_context(reaped(start_run(home))) for home in (east, west)]
        wait_on_s3(lambda: min(committed(table, s, options) for s in ("east", "west")) > 0)
        # And `lakeflow maintain` beside them: three maintainers, whose rewrites the table's
        # lease keeps apart, race the collectors' appends.
        maintained = []
        while min(committed(table, s, options) for s in ("east", "west")) < count:
            done = lakeflow(east, "maintain", "--table", "test_records")
            assert done.returncode == 0, done.stderr
            maintained.append(done.stdout)
            assert len(maintained) < 50, "the collectors did not finish"
        for process, home in zip(runs, (east, west), strict=True):
            stop(process, home)

    rows = pl.read_delta(table, storage_options=s3.storage_options())
    for source in ("east", "west"):
        numbers = rows.filter(pl.col("source") == source)["n"].sort().to_list()
        assert numbers == list(range(1, count + 1)), f"{source}: a payload lost or doubled"
    handle = DeltaTable(table, storage_options=s3.storage_options())
    assert handle.version() > 20
    print(*maintained, sep="")
    # Maintenance did rewrite files under the collectors' feet: which of the three
    # maintainers won the lease for a rewrite is a race, that one of them did is not.
    operations = [commit.get("operation") for commit in handle.history()]
    assert "OPTIMIZE" in operations, operations


def test_a_missing_bucket_exits_2_naming_it(s3, folder):
    home = folder("nobucket", pipeline(s3, "s3://no-such-bucket/tables", sequence("seq", 10)))
    for command in ("run", "tables"):
        done = lakeflow(home, command)
        assert done.returncode == 2, done.stderr
        assert "bucket 'no-such-bucket' does not exist" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_wrong_credentials_exit_2_saying_what_to_set_and_never_the_secret(s3, folder):
    wrong = "definitely-not-the-secret-123"
    text = pipeline(s3, s3.uri(), sequence("seq", 10), AWS_SECRET_ACCESS_KEY=wrong)
    home = folder("badcreds", text)
    for command in ("run", "query"):
        args = (command, "SELECT 1") if command == "query" else (command,)
        done = lakeflow(home, *args)
        assert done.returncode == 2, done.stderr
        assert "refused the credentials (SignatureDoesNotMatch)" in done.stderr
        assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in done.stderr
        assert wrong not in done.stderr + done.stdout


def test_replay_into_another_s3_table(s3, folder):
    root = s3.uri()
    home = folder("replay", pipeline(s3, root, sequence("seq", 200), runtime="keep_raw = true"))
    with reaped(start_run(home)) as process:
        wait_on_s3(lambda: committed(f"{root}/test_records", "seq", s3.storage_options()) >= 200)
        stop(process, home)
    done = lakeflow(home, "replay", "--source", "seq", "--table", "again")
    assert done.returncode == 0, done.stderr
    again = pl.read_delta(f"{root}/again", storage_options=s3.storage_options())
    assert sorted(again["n"].to_list()) == list(range(1, 201))


def s3_pipeline(options: dict[str, str]) -> str:
    """A pipeline on an S3 URI with these storage options (nothing is contacted)."""
    lines = "\n".join(f'{key} = "{value}"' for key, value in options.items())
    return f"""
[sink]
uri = "s3://bucket/tables"

[sink.storage_options]
{lines}

{sequence("seq", 10)}
"""


def test_validate_masks_credential_storage_options(cli, write_toml):
    write_toml(
        s3_pipeline(
            {
                "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
                "AWS_ACCESS_KEY_ID": "AKIDVALUE1234",
                "AWS_SECRET_ACCESS_KEY": f"${{{SECRET_VAR}}}",
                "AWS_SESSION_TOKEN": "session-token-value",
            }
        )
    )
    done = cli("validate", "--offline", env={SECRET_VAR: SECRET_KEY})
    assert done.returncode == 0, done.stderr
    assert "AWS_SECRET_ACCESS_KEY=***" in done.stdout
    assert "AWS_SESSION_TOKEN=***" in done.stdout
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:1" in done.stdout
    for secret in (SECRET_KEY, "AKIDVALUE1234", "session-token-value"):
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("conditional_put", "disabled", 'set conditional_put = "etag", or remove it'),
        ("AWS_S3_LOCKING_PROVIDER", "dynamodb", "ignores the DynamoDB locking provider"),
    ],
)
def test_s3_options_that_make_commits_unsafe_exit_2_naming_the_option(
    cli, write_toml, option, value, message
):
    write_toml(s3_pipeline({"AWS_REGION": "us-east-1", option: value}))
    for command in ("validate", "run"):
        done = cli(command)
        assert done.returncode == 2, done.stderr
        assert f"lakeflow.toml: sink.storage_options.{option}: " in done.stderr
        assert message in done.stderr


README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SCALING_OUT = README.split("## Scaling out", 1)[1].split("\n## ", 1)[0]


def test_readme_scaling_out_pipeline_is_valid(cli, write_toml):
    toml = re.search(r"```toml\n(.*?)```", SCALING_OUT, re.DOTALL)
    assert toml is not None
    write_toml(toml.group(1) + sequence("liquidations_eu", 10))
    done = cli(
        "validate",
        "--offline",
        env={"AWS_ACCESS_KEY_ID": "AKIDREADME", "AWS_SECRET_ACCESS_KEY": "x" * 20},
    )
    assert done.returncode == 0, done.stderr
    assert "sink: delta at s3://market-data/lakeflow" in done.stdout


def test_readme_shows_the_missing_bucket_error_as_lakeflow_prints_it(s3, folder):
    home = folder("readme", pipeline(s3, "s3://no-such-bucket/tables", sequence("seq", 10)))
    done = lakeflow(home, "tables")
    assert done.stderr.strip() in SCALING_OUT


def test_an_object_store_outage_mid_run_loses_nothing(tmp_path, folder):
    # Its own server, since this test stops it while a collector writes.
    with SeaweedFS(tmp_path / "outage-server") as server:
        root = server.uri()
        table = f"{root}/test_records"
        home = folder("outage", pipeline(server, root, sequence("seq", 4000, rate=500)))
        with reaped(start_run(home)) as process:
            wait_on_s3(lambda: committed(table, "seq", server.storage_options()) > 0)
            server.stop()
            time.sleep(3)  # commits fail meanwhile; payloads keep arriving into the spool
            server.start()
            wait_on_s3(
                lambda: committed(table, "seq", server.storage_options()) >= 4000, timeout=120
            )
            stop(process, home)
        rows = pl.read_delta(table, storage_options=server.storage_options())
    assert sorted(rows["n"].to_list()) == list(range(1, 4001))
    log = (home / "run.log").read_text()
    assert "cannot reach the object store" in log, log[-3000:]


def test_two_collectors_sharing_a_source_name_refuse_to_commit_instead_of_skipping(s3, folder):
    root = s3.uri()
    table = f"{root}/test_records"
    text = pipeline(s3, root, sequence("liquidations", 100_000, rate=200), "stop_timeout = 2")
    first = folder("first", text)
    second = folder("second", text)
    message = "another collector also commits as source 'liquidations' to table test_records"
    logs = [first / "run.log", second / "run.log"]
    with ExitStack() as stack:
        runs = [stack.enter_context(reaped(start_run(first)))]
        wait_on_s3(lambda: committed(table, "liquidations", s3.storage_options()) > 0)
        runs.append(stack.enter_context(reaped(start_run(second))))
        wait_on_s3(lambda: any(message in log.read_text() for log in logs), timeout=60)
        for process in runs:
            process.terminate()
        codes = [process.wait(60) for process in runs]
    # The one refused exits 1 and keeps its batches in its spool; the table holds no
    # batch that one of them skipped silently.
    assert 1 in codes, [log.read_text()[-2000:] for log in logs]
    refused = next(log for log in logs if message in log.read_text())
    assert "kept in the spool for the next start" in refused.read_text()


def liquidation(minutes_ago: float, side: str = "SELL") -> dict[str, object]:
    """One ``liquidation`` row (the shared schema, as Binance fills it), ``minutes_ago`` ago."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    text = dict.fromkeys(["quantity", "price", "average_price", "filled_quantity"], "2")
    position = {"SELL": "long", "BUY": "short"}[side]
    return {
        **dict(exchange="binance", market="usdm", symbol="BTCUSDT", pair=None, side=side),
        **dict(position_side=position, base_quantity="2", notional="4", notional_currency="USDT"),
        **dict(order_type="LIMIT", time_in_force="IOC", status="FILLED"),
        **text,
        "last_filled_quantity": "2",
        **dict(trade_time=at, event_time=at, received_at=at, date=at.date()),
    }


@needs_workspace_plugins
def test_plot_draws_a_chart_of_an_s3_table(s3, folder, monkeypatch):
    # The workspace plugins together on S3: charts' `lakeflow plot` on a Binance table.
    from PIL import Image  # with matplotlib, with the charts plugin

    home = folder(
        "plot",
        pipeline(s3, s3.uri("plotted"), '[sources.liquidations]\ntype = "binance_liquidations"\n'),
    )
    monkeypatch.setenv(SECRET_VAR, SECRET_KEY)
    spec = load_pipeline(home / "lakeflow.toml", load())
    rows = pl.DataFrame([liquidation(30), liquidation(10, side="BUY")], infer_schema_length=None)
    source = spec.sources["liquidations"]
    DeltaSink(spec.sink).commit(source.table, source.schema, rows, "test", 1)

    done = lakeflow(home, "plot", "liquidations", "--since", "2h", "-o", "chart.png")

    assert done.returncode == 0, done.stderr
    with Image.open(home / "chart.png") as image:
        assert image.format == "PNG"
        assert image.size == (1200, 600)


def test_the_delta_sink_on_s3_keeps_the_sink_contract(s3, tmp_path):
    uri = s3.uri()  # one prefix: the sinks check_sink makes must see the same tables
    check_sink(
        lambda _: DeltaSink(SinkConfig(uri=uri, storage_options=s3.storage_options())), tmp_path
    )


def test_of_two_maintainers_racing_for_an_s3_lease_only_one_takes_it(s3, monkeypatch):
    uri = s3.uri("leased")
    options = s3.storage_options()
    with lease(uri, options):
        pass  # the lease exists and is free
    # The second maintainer read the lease a moment before the first took it, and saw
    # it free: only the store's conditional write can stop it now.
    early = DeltaTable(lease_uri(uri), storage_options=options)
    reads = iter([early])
    real_open = lease_module._open
    with lease(uri, options) as first:
        with monkeypatch.context() as stale:
            stale.setattr(lease_module, "_open", lambda u, o: next(reads, None) or real_open(u, o))
            with pytest.raises(LeaseHeld, match=first), lease(uri, options):
                pytest.fail("two maintainers hold one table's lease")
        holder = pl.read_delta(lease_uri(uri), storage_options=options)["holder"].to_list()
        assert holder == [first]
    assert pl.read_delta(lease_uri(uri), storage_options=options)["holder"].to_list() == [""]


def test_maintain_skips_an_s3_table_whose_lease_another_holds(s3, collected):
    home, root = collected
    with lease(f"{root}/test_records", s3.storage_options()) as holder:
        done = lakeflow(home, "maintain", "--table", "test_records")
    assert done.returncode == 0, done.stderr
    assert "test_records: skipped, another maintenance of this table is running" in done.stdout
    assert holder in done.stdout
    rows = pl.read_delta(f"{root}/test_records", storage_options=s3.storage_options())
    assert rows.height == 500


@pytest.mark.parametrize("round_", range(5))
def test_two_maintainers_creating_a_new_s3_lease_at_once_never_both_hold_it(s3, round_):
    uri, options = s3.uri("fresh"), s3.storage_options()
    start = threading.Barrier(2)
    other_refused = threading.Event()
    outcomes: list[str] = []

    def maintain() -> None:
        start.wait()
        try:
            with lease(uri, options):
                outcomes.append("held")
                # Hold it until the other has tried (if both hold, both time out here).
                other_refused.wait(timeout=20)
        except LeaseHeld:
            outcomes.append("refused")
            other_refused.set()

    workers = [threading.Thread(target=maintain) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(outcomes) == ["held", "refused"]
