"""The maintenance lease: one maintainer per table on object storage, through Delta commits.

These run on local tables (the lease works the same on any URI deltalake takes); the
same races against a real S3 server are in ``test_s3.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from lakeflow.sinks.delta.lease import LeaseHeld, lease, lease_uri


def holder(table: Path) -> list[str]:
    return pl.read_delta(lease_uri(str(table)))["holder"].to_list()


def test_a_held_lease_refuses_a_second_maintainer_naming_the_holder(tmp_path):
    with lease(str(tmp_path)) as first:
        second = pytest.raises(LeaseHeld, match=f"lease held by {first} until")
        with second, lease(str(tmp_path)):
            pytest.fail("two maintainers hold one lease")
    assert holder(tmp_path) == [""]


def test_a_lease_given_back_can_be_taken_again(tmp_path):
    with lease(str(tmp_path)):
        pass
    with lease(str(tmp_path)) as second:
        assert holder(tmp_path) == [second]


@pytest.mark.parametrize("round_", range(20))
def test_two_maintainers_creating_a_new_lease_at_once_never_both_hold_it(tmp_path, round_):
    start = threading.Barrier(2)
    other_refused = threading.Event()
    held: list[str] = []
    refused: list[LeaseHeld] = []

    def maintain() -> None:
        start.wait()
        try:
            with lease(str(tmp_path)) as me:
                held.append(me)
                # Hold it until the other has tried (if both hold, both time out here).
                other_refused.wait(timeout=10)
        except LeaseHeld as exc:
            refused.append(exc)
            other_refused.set()

    workers = [threading.Thread(target=maintain) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(held) == 1 and len(refused) == 1, (held, refused)
    assert holder(tmp_path) == [""]


def test_an_expired_lease_is_taken_over_and_its_old_holder_does_not_free_it(tmp_path):
    with lease(str(tmp_path), seconds=0) as dead:  # a holder stalled past its lease
        with lease(str(tmp_path)) as successor:
            assert holder(tmp_path) == [successor]
        assert dead != successor
    # The stalled holder's give-back came after the successor's: nothing of its own left.
    assert holder(tmp_path) == [""]


def test_the_old_holder_giving_back_late_leaves_the_successors_lease_alone(tmp_path):
    outer = lease(str(tmp_path), seconds=0)  # a holder stalled past its lease
    outer.__enter__()
    with lease(str(tmp_path)) as successor:
        outer.__exit__(None, None, None)  # the stalled holder finishes now
        assert holder(tmp_path) == [successor]


def test_a_tables_vacuum_leaves_its_maintenance_lease_alone(tmp_path):
    # The lease lives inside the table's folder; a vacuum of the table, even a full
    # one that deletes every file its log does not know, must pass it over.
    table = tmp_path / "t"
    pl.DataFrame({"a": [1]}).write_delta(str(table))
    with lease(str(table)):
        pass
    vacuumed = DeltaTable(str(table)).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True
    )
    assert not [path for path in vacuumed if "_lakeflow_maintenance" in path]
    assert holder(table) == [""]
