"""Applying under a deadline (how the server applies on its event loop without stalling
it) and WAL checkpoints kept out of commits. A cut apply must leave no trace, and what is
applied afterwards must give exactly the results and bytes of an uncut apply."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from raftsql.errors import ConstraintError, SQLError
from raftsql.sql.machine import CHECKPOINT_PAGES, QueryOverBudget, StateMachine
from tests.unit.test_machine import Node, failed, result, write

# ~200k rows through a recursive CTE: tens of millions of SQLite VM steps, far past any
# deadline, whatever the machine
HEAVY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
    "INSERT INTO big SELECT x FROM c"
)
PAST = -1.0  # a deadline that has already passed


def _indexed(m: StateMachine, payloads: list[bytes]) -> list[tuple[int, bytes | None]]:
    first = m.applied_index + 1
    return [(first + k, p) for k, p in enumerate(payloads)]


def test_an_apply_cut_by_its_deadline_leaves_no_trace(tmp_path: Path) -> None:
    entries = [
        write(1, "CREATE TABLE t (a INTEGER PRIMARY KEY)", "CREATE TABLE big (x)"),
        write(2, "INSERT INTO t VALUES (1)"),
        write(3, HEAVY),
        write(4, "INSERT INTO t VALUES (2)"),
    ]
    with (
        StateMachine(str(tmp_path / "cut.db")) as cut,
        StateMachine(str(tmp_path / "whole.db")) as whole,
    ):
        assert cut.apply(_indexed(cut, entries), deadline=time.perf_counter() + PAST) == []
        assert cut.applied_index == 0
        assert cut.query("SELECT name FROM sqlite_schema WHERE name IN ('t', 'big')").rows == []
        # the rest (here: all of it) applied later gives what an uncut apply gives
        redone = cut.apply(_indexed(cut, entries))
        assert redone == whole.apply(_indexed(whole, entries))
        assert all(result(r).ok for r in redone)
        assert cut.query("SELECT count(*) FROM big").rows == [(200000,)]
        assert cut.content_digest() == whole.content_digest()


def test_a_cut_after_a_committed_run_returns_that_runs_results(tmp_path: Path) -> None:
    """An ON CONFLICT ROLLBACK ends a run early (committed, see the machine's doc); a
    deadline passing in the next run returns the first run's results, and those only."""
    entries = [
        write(
            1, "CREATE TABLE t (a INTEGER PRIMARY KEY ON CONFLICT ROLLBACK)", "CREATE TABLE big (x)"
        ),
        write(2, "INSERT INTO t VALUES (1)"),
        write(3, "INSERT INTO t VALUES (1)"),  # fails, and rolls back the transaction
        write(4, HEAVY),
        write(5, "INSERT INTO t VALUES (2)"),
    ]
    with (
        StateMachine(str(tmp_path / "cut.db")) as cut,
        StateMachine(str(tmp_path / "whole.db")) as whole,
    ):
        first = cut.apply(_indexed(cut, entries), deadline=time.perf_counter() + PAST)
        assert len(first) == 3 and cut.applied_index == 3
        assert isinstance(failed(first[2]), ConstraintError)
        assert cut.query("SELECT count(*) FROM big").rows == [(0,)]
        rest = cut.apply(_indexed(cut, entries[3:]))
        assert first + rest == whole.apply(_indexed(whole, entries))
        assert cut.query("SELECT a FROM t ORDER BY a").rows == [(1,), (2,)]
        assert cut.content_digest() == whole.content_digest()


def test_a_deadline_far_away_changes_nothing(tmp_path: Path) -> None:
    node = Node(StateMachine(str(tmp_path / "n.db")))
    try:
        payloads = [write(1, "CREATE TABLE big (x)"), write(2, HEAVY)]
        got = node.m.apply(_indexed(node.m, payloads), deadline=time.perf_counter() + 3600)
        assert len(got) == 2 and all(result(r).ok for r in got)
        assert node.rows("SELECT count(*) FROM big") == [(200000,)]
    finally:
        node.m.close()


def test_commits_never_checkpoint_the_checkpoint_is_explicit(tmp_path: Path) -> None:
    """SQLite's autocheckpoint would fsync inside a COMMIT, on the server's event loop;
    the machine asks for a checkpoint instead, which the server runs in a worker."""
    with StateMachine(str(tmp_path / "n.db")) as m:
        m.apply(_indexed(m, [write(1, "CREATE TABLE blobs (b BLOB)")]))
        assert not m.checkpoint_due
        db_size = os.path.getsize(m.path)
        seq = 2
        while not m.checkpoint_due:
            m.apply(_indexed(m, [write(seq, "INSERT INTO blobs VALUES (zeroblob(200000))")]))
            seq += 1
        assert m.wal_pages >= CHECKPOINT_PAGES
        assert os.path.getsize(m.path) == db_size  # nothing was copied into the file yet
        m.checkpoint()
        assert os.path.getsize(m.path) > db_size + CHECKPOINT_PAGES * 4096 // 2
        m.apply(_indexed(m, [write(seq, "INSERT INTO blobs VALUES (x'00')")]))
        assert m.wal_pages < 10 and not m.checkpoint_due  # the WAL started over
        assert m.query("SELECT count(*) FROM blobs").rows == [(seq - 1,)]


def test_a_query_past_its_deadline_is_interrupted_and_runs_again_without(
    tmp_path: Path,
) -> None:
    count = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
    count += "SELECT count(*) FROM c"
    with StateMachine(str(tmp_path / "n.db")) as m:
        with pytest.raises(QueryOverBudget):
            m.query(count, deadline=time.perf_counter() + PAST)
        assert m.query(count).rows == [(300000,)]  # the connection is fine afterwards
        assert m.query(count, deadline=time.perf_counter() + 3600).rows == [(300000,)]
        with pytest.raises(SQLError):  # a user error stays a user error under a deadline
            m.query("SELECT * FROM no_such_table", deadline=time.perf_counter() + 3600)
