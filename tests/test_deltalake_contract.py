"""What lakeflow relies on deltalake to do, pinned so that an upgrade cannot change it quietly.

The sink's exactly-once appends (:mod:`lakeflow.sinks.delta.sink`), the maintenance
lease (:mod:`lakeflow.sinks.delta.lease`) and maintenance itself
(:mod:`lakeflow.sinks.delta.maintain`) each lean on a behaviour of deltalake's commits
that is nowhere promised: what a stale handle sees and may commit, what a commit without
retries does when it loses a race, which
concurrent commits conflict, when checkpoints are written, what ``schema_mode="merge"``
does. Each test here pins one of them as deltalake 1.6.6 behaves, including behaviours
that are bugs (two concurrent compactions both land). A failure after an upgrade means
deltalake changed: its docstring says what lakeflow does with that behaviour, so read it
before updating the assertion. The bound on deltalake in ``pyproject.toml`` follows this
file.

Every test uses local tables in ``tmp_path``, and two handles opened at the same version
stand in for two processes: that is the race, with nothing left to timing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import deltalake
import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import (
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    Transaction,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError

#: How many small appends make the table that maintenance compacts.
APPENDS = 10
ROWS_PER_APPEND = 3
#: The same properties as ``lakeflow.sinks.delta.lease._ONCE``: commit on the version read, or fail.
NO_RETRIES = CommitProperties(max_commit_retries=0)


def rows(count: int, start: int = 0) -> pl.DataFrame:
    """``count`` one-column rows numbered from ``start``: distinct values show loss or doubling."""
    return pl.DataFrame({"n": list(range(start, start + count))}, schema={"n": pl.Int64})


def txn(app_id: str, sequence: int) -> CommitProperties:
    """Commit properties carrying one application transaction, as the sink's do."""
    return CommitProperties(app_transactions=[Transaction(app_id, sequence)])


def numbers(uri: str) -> list[int]:
    """The table's ``n`` values, sorted, read through a fresh open."""
    return sorted(pl.read_delta(uri)["n"].to_list())


def checkpoints(uri: str) -> list[str]:
    """The checkpoint files in the table's log, sorted."""
    return sorted(p.name for p in (Path(uri) / "_delta_log").glob("*.checkpoint.parquet"))


@pytest.fixture
def table(tmp_path: Path) -> str:
    """A table of one row ``n = 0`` at version 0."""
    uri = str(tmp_path / "table")
    write_deltalake(uri, rows(1))
    return uri


@pytest.fixture
def small_files(tmp_path: Path) -> str:
    """A table of :data:`APPENDS` small files, as a collector leaves it between maintenances."""
    uri = str(tmp_path / "small")
    for i in range(APPENDS):
        write_deltalake(uri, rows(ROWS_PER_APPEND, i * ROWS_PER_APPEND), mode="append")
    return uri


# Exactly-once appends. The sink refreshes its cached handle, reads
# transaction_version(app_id) and skips a batch at or below it: a refresh that stopped
# showing another writer's transaction would let that batch land twice.


def test_update_incremental_shows_a_stale_handle_another_handles_transaction(table: str) -> None:
    """The sink's cached handle is refreshed with ``update_incremental`` before its check.

    Before the refresh the stale handle knows nothing of the transaction (that is why
    the sink refreshes); after it, it must: else a retried batch lands twice.
    """
    writer, stale = DeltaTable(table), DeltaTable(table)
    write_deltalake(writer, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    assert stale.transaction_version("s") is None
    stale.update_incremental()
    assert stale.transaction_version("s") == 5


def test_a_fresh_open_shows_another_handles_transaction(table: str) -> None:
    """The sink's first commit to a table, and every command, opens the table anew."""
    write_deltalake(DeltaTable(table), rows(1, 1), mode="append", commit_properties=txn("s", 5))
    assert DeltaTable(table).transaction_version("s") == 5


def test_a_stale_handle_committing_an_app_id_another_handle_committed_is_refused(
    table: str,
) -> None:
    """deltalake checks app transactions for conflicts: a duplicate from a stale handle fails.

    A commit carrying app id ``s`` from a handle that has not seen another commit of
    ``s`` is refused (even after its default retries), and nothing lands. lakeflow does
    not rely on this (it refreshes before it checks), but it is a second guard against
    two writers of one source: if deltalake stops refusing, this guard is gone, and the
    sink's own check is all that remains.
    """
    writer, stale = DeltaTable(table), DeltaTable(table)
    write_deltalake(writer, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    with pytest.raises(CommitFailedError, match="Concurrent transaction failed"):
        write_deltalake(stale, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    assert numbers(table) == [0, 1]


def test_an_up_to_date_handle_committing_a_recorded_transaction_lands_a_duplicate(
    table: str,
) -> None:
    """deltalake does not deduplicate by app transaction: that is the sink's own check.

    A handle that has seen ``("s", 5)`` may commit ``("s", 5)`` again and the rows land
    twice. This is why ``DeltaSink.commit`` compares ``transaction_version`` with the
    batch's sequence itself. If deltalake starts refusing such commits, the sink's check
    becomes a second guard; its skip (returning False) must still come first, or a
    replay after a crash would fail instead of being skipped.
    """
    handle = DeltaTable(table)
    write_deltalake(handle, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    write_deltalake(handle, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    assert numbers(table) == [0, 1, 1]


def test_a_stale_handles_append_for_another_app_id_lands(table: str) -> None:
    """Two sources writing one table commit blind appends with different app ids.

    The sink's comment says such a race is retried inside deltalake and lands: the
    conflict check above must stay specific to one app id, and keep both transactions.
    """
    writer, stale = DeltaTable(table), DeltaTable(table)
    write_deltalake(writer, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    write_deltalake(stale, rows(1, 2), mode="append", commit_properties=txn("t", 7))
    fresh = DeltaTable(table)
    assert (fresh.transaction_version("s"), fresh.transaction_version("t")) == (5, 7)
    assert numbers(table) == [0, 1, 2]


# Commits without retries: the lease (lakeflow/sinks/delta/lease.py) is an overwrite committed with
# max_commit_retries=0 on the version just read, so of two takers exactly one lands.


def test_a_no_retry_overwrite_that_lost_the_race_raises_and_the_winners_row_stays(
    table: str,
) -> None:
    """The second of two lease takers gets a :class:`CommitFailedError`.

    ``lease._take`` turns a :class:`DeltaError` into ``LeaseHeld``, and ``maintain``
    retries on :class:`CommitFailedError`: the loser's error must be both, and the
    winner's row must be what the lease table holds.
    """
    first, second = DeltaTable(table), DeltaTable(table)
    write_deltalake(first, rows(1, 1), mode="overwrite", commit_properties=NO_RETRIES)
    with pytest.raises(CommitFailedError) as lost:
        write_deltalake(second, rows(1, 2), mode="overwrite", commit_properties=NO_RETRIES)
    assert isinstance(lost.value, DeltaError)
    assert numbers(table) == [1]


def test_a_no_retry_commit_fails_even_when_it_would_not_conflict(table: str) -> None:
    """No retries means "the next version or nothing", not "retry unless it conflicts".

    A blind append never conflicts, yet without retries it fails when another commit
    took the version. The lease's first take relies on this: two creators of the lease
    table would otherwise both land (lease.py: "a retried create lands on top of the
    winner's and both would hold the lease").
    """
    first, second = DeltaTable(table), DeltaTable(table)
    write_deltalake(first, rows(1, 1), mode="append")
    with pytest.raises(CommitFailedError):
        write_deltalake(second, rows(1, 2), mode="append", commit_properties=NO_RETRIES)
    assert numbers(table) == [0, 1]


# Rewrites. maintain.py compacts or Z-orders while collectors append.

REWRITES: dict[str, Callable[[DeltaTable], object]] = {
    "compact": lambda handle: handle.optimize.compact(),
    "z_order": lambda handle: handle.optimize.z_order(["n"]),
}


@pytest.mark.parametrize("rewrite", REWRITES.values(), ids=REWRITES.keys())
def test_two_concurrent_rewrites_of_the_same_files_both_land_and_double_the_rows(
    small_files: str, rewrite: Callable[[DeltaTable], object]
) -> None:
    """deltalake 1.6.6 lets both land: the rows double.

    Two handles at one version each rewrite the same small files; the second commit
    does not see that the first removed them (1.5.0 and 1.6.3 refused it with "a
    concurrent transaction deleted the same data your transaction deletes"; 1.6.4 to
    1.6.6 let it through). lakeflow's lease (lakeflow/sinks/delta/lease.py) and the local flock in
    lakeflow/sinks/delta/maintain.py are what prevent it. If this test fails because the second
    rewrite is refused, the fix has landed upstream: the lease can stay, update this test.
    """
    first, second = DeltaTable(small_files), DeltaTable(small_files)
    rewrite(first)
    try:
        rewrite(second)
    except CommitFailedError as exc:
        pytest.fail(
            f"deltalake {deltalake.__version__} now refuses the second of two concurrent "
            f"rewrites ({exc}): the fix has landed upstream. Keep the lease; pin the "
            "refusal here instead."
        )
    expected = list(range(APPENDS * ROWS_PER_APPEND))
    assert numbers(small_files) == sorted(expected * 2)


def test_a_stale_handles_blind_append_lands_on_top_of_a_compaction(small_files: str) -> None:
    """The collector appends from a handle opened before maintenance compacted.

    Both commits land: the append is rebased onto the compaction, nothing lost or doubled.
    """
    maintainer, collector = DeltaTable(small_files), DeltaTable(small_files)
    maintainer.optimize.compact()
    write_deltalake(collector, rows(2, 100), mode="append")
    assert numbers(small_files) == [*range(APPENDS * ROWS_PER_APPEND), 100, 101]


def test_a_stale_handles_compaction_lands_on_top_of_a_blind_append(small_files: str) -> None:
    """Maintenance compacts from a handle opened before the collector appended.

    Both commits land: the compaction (``dataChange = false``, removing only files it
    read) is rebased onto the append, and the appended file is kept.
    """
    maintainer, collector = DeltaTable(small_files), DeltaTable(small_files)
    write_deltalake(collector, rows(2, 100), mode="append")
    maintainer.optimize.compact()
    assert numbers(small_files) == [*range(APPENDS * ROWS_PER_APPEND), 100, 101]


# Checkpoints: written by the default post-commit hooks every delta.checkpointInterval
# commits, so that opening a table with a long log reads one parquet file, not every
# JSON commit; maintain.py's cleanup_metadata then deletes old commits.


def test_a_checkpoint_interval_of_10_writes_a_checkpoint_with_the_10th_commit(
    tmp_path: Path,
) -> None:
    """The 10th commit (version 9) writes ``…09.checkpoint.parquet``; the 9 before write none."""
    uri = str(tmp_path / "table")
    write_deltalake(uri, rows(1), configuration={"delta.checkpointInterval": "10"})
    for i in range(1, 9):
        write_deltalake(uri, rows(1, i), mode="append")
    assert checkpoints(uri) == []
    write_deltalake(uri, rows(1, 9), mode="append")
    assert checkpoints(uri) == ["00000000000000000009.checkpoint.parquet"]


def test_no_checkpoint_is_written_when_the_post_commit_hook_is_turned_off(tmp_path: Path) -> None:
    """``PostCommitHookProperties(create_checkpoint=False)`` is the knob that turns them off."""
    uri = str(tmp_path / "table")
    write_deltalake(uri, rows(1), configuration={"delta.checkpointInterval": "10"})
    off = PostCommitHookProperties(create_checkpoint=False)
    for i in range(1, 25):
        write_deltalake(uri, rows(1, i), mode="append", post_commithook_properties=off)
    assert checkpoints(uri) == []


def test_a_table_opened_after_25_commits_reads_every_row_at_the_last_version(
    tmp_path: Path,
) -> None:
    """Checkpoints at versions 9 and 19 plus five commits after: the open combines them."""
    uri = str(tmp_path / "table")
    write_deltalake(uri, rows(1), configuration={"delta.checkpointInterval": "10"})
    for i in range(1, 25):
        write_deltalake(uri, rows(1, i), mode="append")
    handle = DeltaTable(uri)
    assert handle.version() == 24
    assert sorted(pl.read_delta(handle)["n"].to_list()) == list(range(25))


def test_a_checkpoint_keeps_the_app_transactions_once_older_commits_are_gone(
    tmp_path: Path,
) -> None:
    """Exactly-once survives log cleanup: the checkpoint carries the ``txn`` actions.

    A source's last sequence may sit in a commit long since deleted by
    ``cleanup_metadata``; if the checkpoint dropped it, ``transaction_version`` would
    answer None and the sink would write a replayed batch twice.
    """
    uri = str(tmp_path / "table")
    write_deltalake(uri, rows(1), configuration={"delta.checkpointInterval": "10"})
    write_deltalake(uri, rows(1, 1), mode="append", commit_properties=txn("s", 5))
    for i in range(2, 25):
        write_deltalake(uri, rows(1, i), mode="append")
    # What cleanup_metadata does, without waiting out a retention: every commit up to
    # the last checkpoint (version 19) is deleted.
    for version in range(20):
        (Path(uri) / "_delta_log" / f"{version:020d}.json").unlink()
    handle = DeltaTable(uri)
    assert handle.transaction_version("s") == 5
    assert sorted(pl.read_delta(handle)["n"].to_list()) == list(range(25))


# Tombstones: a compaction's `remove` actions stay in every checkpoint until they are
# older than delta.deletedFileRetentionDuration (a week by default). maintain.py sets it
# to the vacuum retention, so they do not pile up in every snapshot a commit opens, and
# vacuums in full mode, so the files of tombstones dropped that way are still deleted.


def compacted_twice(uri: str, configuration: dict[str, str]) -> DeltaTable:
    """Two rounds of appends and a compaction, then a checkpoint; the handle."""
    write_deltalake(uri, rows(1), configuration=configuration)
    for start in (1, 10):
        for i in range(start, start + 5):
            write_deltalake(uri, rows(1, i), mode="append")
        DeltaTable(uri).optimize.compact()
    handle = DeltaTable(uri)
    handle.create_checkpoint()
    return handle


def removes_in_last_checkpoint(uri: str) -> int:
    """The ``remove`` actions the newest checkpoint holds."""
    last = checkpoints(uri)[-1]
    column = pq.read_table(Path(uri) / "_delta_log" / last, columns=["remove"]).column("remove")
    return sum(1 for action in column.to_pylist() if action)


def test_a_checkpoint_keeps_removes_younger_than_the_tombstone_retention(tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    compacted_twice(uri, {"delta.deletedFileRetentionDuration": "interval 1 day"})
    assert removes_in_last_checkpoint(uri) == 12  # 6 files, then 5 + the first compaction's


def test_a_checkpoint_drops_removes_older_than_the_tombstone_retention(tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    compacted_twice(uri, {"delta.deletedFileRetentionDuration": "interval 0 seconds"})
    assert removes_in_last_checkpoint(uri) == 0


def test_a_full_vacuum_keeps_old_files_whose_remove_is_within_the_retention(
    small_files: str,
) -> None:
    """Files written long ago but removed just now stay for readers of older versions."""
    age(Path(small_files).glob("*.parquet"), days=2)
    handle = DeltaTable(small_files)
    handle.optimize.compact()
    assert handle.vacuum(retention_hours=24, enforce_retention_duration=False, full=True) == []


def test_a_full_vacuum_deletes_old_files_no_version_references(small_files: str) -> None:
    """What a checkpoint's dropped tombstones leave: an unreferenced file, deleted by age."""
    stray = Path(small_files) / "part-stray.parquet"
    stray.write_bytes(b"PAR1")
    age([stray], days=2)
    handle = DeltaTable(small_files)
    assert handle.vacuum(retention_hours=24, enforce_retention_duration=False) == []  # lite
    deleted = handle.vacuum(retention_hours=24, enforce_retention_duration=False, full=True)
    assert deleted == ["part-stray.parquet"]


def age(paths: Iterable[Path], *, days: float) -> None:
    """Set the modification time of ``paths`` ``days`` back: vacuum judges files by it."""
    then = time.time() - days * 86_400
    for path in paths:
        os.utime(path, (then, then))


# schema_mode="merge": the sink appends with it only when a record schema gained columns.


def test_merge_on_append_adds_a_nullable_column_and_old_rows_read_null(table: str) -> None:
    """A plugin upgrade's new column lands as a nullable column; rows before it read null."""
    grown = rows(1, 1).with_columns(pl.lit("new").alias("extra"))
    write_deltalake(table, grown, mode="append", schema_mode="merge")
    extra = next(f for f in DeltaTable(table).schema().fields if f.name == "extra")
    assert (extra.type.type, extra.nullable) == ("string", True)
    assert pl.read_delta(table).sort("n")["extra"].to_list() == [None, "new"]


def test_merge_on_append_records_the_commits_transaction(table: str) -> None:
    """The merging commit is a batch like any other: its ``txn`` must be recorded."""
    grown = rows(1, 1).with_columns(pl.lit("new").alias("extra"))
    write_deltalake(table, grown, mode="append", schema_mode="merge", commit_properties=txn("s", 9))
    assert DeltaTable(table).transaction_version("s") == 9


def test_merge_silently_casts_a_string_into_an_int64_column(table: str) -> None:
    """deltalake 1.6.6 casts ``"12"`` to ``12`` under merge, with no error and no schema change.

    So merge cannot be trusted to refuse a changed column type: ``_added_columns`` in
    lakeflow/sinks/delta/sink.py refuses it before the sink ever merges. If deltalake starts
    refusing, the sink's check stays (its error says what to do; deltalake's would not).
    """
    write_deltalake(table, pl.DataFrame({"n": ["12"]}), mode="append", schema_mode="merge")
    (column,) = DeltaTable(table).schema().fields
    assert column.type.type == "long"
    assert numbers(table) == [0, 12]
