"""The state machine: every node that applies the same entries ends with the same database
(rows and bytes), each request is applied exactly once and all-or-nothing, and SQL that
cannot replicate is refused by SQLite's authorizer even when the classifier is bypassed
(every entry here goes straight into apply, as a follower receives it)."""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsql.errors import (
    ConstraintError,
    ForbiddenSQL,
    NonDeterministicSQL,
    ParameterError,
    ProtocolError,
    RaftsqlError,
    SQLError,
    StaleRequest,
)
from raftsql.sql.command import CommandResult, Statement, StatementResult, WriteCommand
from raftsql.sql.environment import SeededRandom
from raftsql.sql.machine import MachineError, StateMachine, snapshot_index

T0 = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123 UTC
T0_TEXT = "2023-11-14 22:13:20"

Stmt = str | tuple[str, tuple | dict]  # type: ignore[type-arg]


def write(
    seq: int,
    *stmts: Stmt,
    session: bytes | str = b"client",
    time_ns: int = T0,
    seed: int = 1,
) -> bytes:
    """An encoded command, as the leader would put it in the log."""
    built = tuple(Statement(s) if isinstance(s, str) else Statement(*s) for s in stmts)
    return WriteCommand(session, seq, built, True, time_ns, seed).encode()


def result(payload: bytes | None) -> CommandResult:
    assert payload is not None
    return CommandResult.decode(payload)


def ok(payload: bytes | None) -> tuple[StatementResult, ...]:
    return result(payload).unwrap()


def failed(payload: bytes | None) -> RaftsqlError:
    error = result(payload).error
    assert error is not None, "expected the command to fail"
    return error


class Node:
    """A machine plus its next log index, so tests read like a sequence of requests."""

    def __init__(self, machine: StateMachine) -> None:
        self.m = machine
        self.seq = 0

    def apply(self, *payloads: bytes | None) -> list[bytes | None]:
        first = self.m.applied_index + 1
        return self.m.apply([(first + k, p) for k, p in enumerate(payloads)])

    def run(self, *stmts: Stmt, **kw: object) -> bytes | None:
        self.seq += 1
        return self.apply(write(self.seq, *stmts, **kw))[0]  # type: ignore[arg-type]

    def rows(self, sql: str) -> list[tuple]:  # type: ignore[type-arg]
        return self.m.query(sql).rows


@pytest.fixture
def node(open_machine: Callable[..., StateMachine]) -> Node:
    return Node(open_machine())


# --- basics -----------------------------------------------------------------------------


def test_applied_index_starts_at_zero_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db")
    with StateMachine(path) as m:
        assert m.applied_index == 0
        m.apply([(1, None), (2, write(1, "CREATE TABLE t(a)")), (3, None)])
        assert m.applied_index == 3
    with StateMachine(path) as m:
        assert m.applied_index == 3
        assert m.query("SELECT name FROM sqlite_schema WHERE name = 't'").rows == [("t",)]


def test_applied_index_never_runs_ahead_of_what_a_read_can_see(node: Node) -> None:
    """The server applies long batches in its disk worker while the loop reads
    ``applied_index`` to release linearizable reads. It must count an entry only once its
    transaction has committed: counting it when applied inside the still-open
    transaction let a read run before the COMMIT and miss an acknowledged write (seen in
    an e2e restore: 39,999 of 40,000 rows)."""
    node.run("CREATE TABLE t (k INTEGER)")
    slow = (
        "INSERT INTO t SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
        "SELECT x + 1 FROM c WHERE x < 300000) SELECT x FROM c)"
    )
    first = node.m.applied_index + 1
    batch = [(first + k, write(100 + k, "INSERT INTO t VALUES (1)", slow)) for k in range(4)]
    worker = threading.Thread(target=node.m.apply, args=(batch,))
    worker.start()
    seen = []
    while worker.is_alive():
        index = node.m.applied_index
        rows = node.rows("SELECT count(*) FROM t")[0][0]
        seen.append(index)
        assert rows >= 2 * (index - first + 1), (index, rows)  # two rows an entry
    worker.join()
    assert node.m.applied_index == first + 3
    assert node.rows("SELECT count(*) FROM t") == [(8,)]
    assert len(seen) > 10, "the batch ran too fast to watch"


def test_entries_must_follow_the_applied_index(node: Node) -> None:
    node.apply(None)
    with pytest.raises(ValueError, match="without gaps"):
        node.m.apply([(3, None)])
    with pytest.raises(ValueError, match="without gaps"):
        node.m.apply([(1, None)])
    with pytest.raises(ValueError, match="position 1"):
        node.m.apply([(2, None), (4, None)])
    assert node.m.applied_index == 1
    assert node.m.apply([]) == []


def test_noop_entries_only_advance_the_index(node: Node) -> None:
    assert node.apply(None, None) == [None, None]
    assert node.m.applied_index == 2


def test_returning_rowcount_and_lastrowid(node: Node) -> None:
    node.run("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    (ins,) = ok(node.run(("INSERT INTO t(name) VALUES (?), (?) RETURNING id, name", ("a", "b"))))
    assert ins.rows == [(1, "a"), (2, "b")]
    assert ins.columns == ["id", "name"]
    assert (ins.rowcount, ins.lastrowid) == (2, 2)
    upd, dele, sel, none = ok(
        node.run(
            "UPDATE t SET name = upper(name)",
            "DELETE FROM t WHERE id = 1 RETURNING name",
            "SELECT id FROM t",
            "SELECT * FROM t WHERE 0",
        )
    )
    assert (upd.rowcount, upd.lastrowid) == (2, None)
    assert (dele.rows, dele.rowcount) == ([("A",)], 1)
    assert (sel.rows, sel.rowcount, sel.columns) == ([(2,)], -1, ["id"])
    assert (none.rows, none.columns) == ([], ["id", "name"])  # columns even without rows
    (replace,) = ok(node.run("REPLACE INTO t(id, name) VALUES (2, 'z')"))
    assert (replace.rowcount, replace.lastrowid) == (1, 2)
    (upsert,) = ok(
        node.run("INSERT INTO t(id, name) VALUES (2, 'y') ON CONFLICT(id) DO UPDATE SET name = 'w'")
    )
    assert upsert.rowcount == 1
    (nothing,) = ok(node.run("INSERT INTO t SELECT * FROM t WHERE 0"))
    assert (nothing.rowcount, nothing.lastrowid) == (0, None)  # no stale rowid leaks
    (ddl,) = ok(node.run("CREATE INDEX i ON t(name)"))
    assert (ddl.rowcount, ddl.lastrowid) == (-1, None)


def test_sql_errors_carry_sqlites_message(node: Node) -> None:
    err = failed(node.run("SELECT * FROM nowhere"))
    assert type(err) is SQLError
    assert err.message == "no such table: nowhere"
    assert err.details == {"statement": 0}
    node.run("CREATE TABLE t(a INTEGER PRIMARY KEY, b NOT NULL)")
    err = failed(node.run("INSERT INTO t VALUES (1, 1)", "INSERT INTO t VALUES (2, NULL)"))
    assert isinstance(err, ConstraintError)
    assert err.message == "NOT NULL constraint failed: t.b"
    assert err.details == {"statement": 1}
    err = failed(node.run(("INSERT INTO t VALUES (?, ?)", (1,))))
    assert isinstance(err, ParameterError)
    err = failed(node.run(("INSERT INTO t VALUES (:a, :b)", {"a": 1})))
    assert isinstance(err, ParameterError) and ":b" in err.message


def test_undecodable_entry_is_a_deterministic_error_result(node: Node) -> None:
    (payload,) = node.apply(b"\x00garbage")
    assert isinstance(failed(payload), ProtocolError)
    assert node.m.applied_index == 1


# --- all or nothing -----------------------------------------------------------------------


def test_failing_entry_in_a_batch_rolls_back_only_itself(node: Node) -> None:
    node.run("CREATE TABLE t(a INTEGER PRIMARY KEY)")
    out = node.apply(
        write(10, "INSERT INTO t VALUES (1)"),
        write(11, "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (1)"),  # 2nd fails
        write(12, "INSERT INTO t VALUES (3)"),
    )
    assert result(out[0]).ok and result(out[2]).ok
    assert isinstance(failed(out[1]), ConstraintError)
    assert node.rows("SELECT a FROM t ORDER BY a") == [(1,), (3,)]  # no 2: all or nothing


@pytest.mark.parametrize(
    "setup",
    [
        ["CREATE TABLE t(a INTEGER PRIMARY KEY ON CONFLICT ROLLBACK)"],
        [
            "CREATE TABLE t(a INTEGER PRIMARY KEY)",
            "CREATE TRIGGER guard BEFORE INSERT ON t WHEN new.a = 1 "
            "AND EXISTS (SELECT 1 FROM t WHERE a = 1) BEGIN SELECT RAISE(ROLLBACK, 'dup'); END",
        ],
    ],
    ids=["on-conflict-rollback", "raise-rollback"],
)
def test_rollback_conflict_resolution_aborts_only_its_request(
    open_machine: Callable[..., StateMachine], setup: list[str]
) -> None:
    """ROLLBACK makes SQLite end the whole transaction, other requests of the batch
    included; the machine must redo those and give the same result as a node that applied
    the failing request in a batch of its own."""
    entries = [
        write(1, *setup),
        write(2, "INSERT INTO t VALUES (1)"),
        write(3, "INSERT INTO t VALUES (2)"),
        write(4, "INSERT INTO t VALUES (3)", "INSERT INTO t VALUES (1)"),
        write(5, "INSERT INTO t VALUES (4)"),
    ]
    one_batch = Node(open_machine("batch.db"))
    singles = Node(open_machine("singles.db"))
    batched = one_batch.apply(*entries)
    alone = [singles.apply(e)[0] for e in entries]
    assert batched == alone
    assert isinstance(failed(batched[3]), ConstraintError)
    assert all(result(batched[i]).ok for i in (0, 1, 2, 4))
    assert one_batch.rows("SELECT a FROM t ORDER BY a") == [(1,), (2,), (4,)]
    assert one_batch.m.content_digest() == singles.m.content_digest()
    assert one_batch.m.applied_index == 5


def test_deferred_foreign_keys_are_checked_per_request(node: Node) -> None:
    node.run(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY)",
        "CREATE TABLE child(pid REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
    )
    out = node.apply(
        write(10, "INSERT INTO child VALUES (7)"),  # never resolved: fails
        write(11, "INSERT INTO child VALUES (8)", "INSERT INTO parent VALUES (8)"),  # resolved
        write(12, "INSERT INTO parent VALUES (9)"),
    )
    err = failed(out[0])
    assert isinstance(err, ConstraintError) and "FOREIGN KEY" in err.message
    assert result(out[1]).ok and result(out[2]).ok
    assert node.rows("SELECT pid FROM child") == [(8,)]


def test_immediate_foreign_keys_are_enforced(node: Node) -> None:
    node.run("CREATE TABLE p(id INTEGER PRIMARY KEY)", "CREATE TABLE c(pid REFERENCES p(id))")
    assert isinstance(failed(node.run("INSERT INTO c VALUES (1)")), ConstraintError)


# --- exactly once -------------------------------------------------------------------------


def test_a_retried_request_runs_once_and_returns_the_first_result(node: Node) -> None:
    node.run("CREATE TABLE t(id INTEGER PRIMARY KEY, at TEXT)", session=b"setup")
    first = write(1, "INSERT INTO t(at) VALUES (datetime('now')) RETURNING id", session=b"c")
    retry = write(1, "INSERT INTO t(at) VALUES (datetime('now')) RETURNING id", session=b"c",
                  time_ns=T0 + 10**12, seed=99)  # fmt: skip
    out = node.apply(first, retry)  # the retry in the same batch
    later = node.apply(retry)  # and in a later one
    assert out[0] == out[1] == later[0]
    assert ok(out[0])[0].rows == [(1,)]
    assert node.rows("SELECT id, at FROM t") == [(1, T0_TEXT)]


def test_failed_results_are_remembered_too(node: Node) -> None:
    node.run("CREATE TABLE t(a INTEGER PRIMARY KEY)", session=b"setup")
    node.apply(write(1, "INSERT INTO t VALUES (1)", session=b"x"))
    bad = write(2, "INSERT INTO t VALUES (1)", session=b"x")
    first = node.apply(bad)[0]
    node.apply(write(1, "DELETE FROM t", session=b"y"))  # now the insert would succeed
    assert node.apply(bad)[0] == first
    assert isinstance(failed(first), ConstraintError)
    assert node.rows("SELECT count(*) FROM t") == [(0,)]


def test_older_seq_is_stale_and_does_not_run(node: Node) -> None:
    node.run("CREATE TABLE t(a)", session=b"setup")
    node.apply(write(5, "INSERT INTO t VALUES (5)", session="s"))
    (stale,) = node.apply(write(4, "INSERT INTO t VALUES (4)", session="s"))
    assert isinstance(failed(stale), StaleRequest)
    assert node.rows("SELECT a FROM t") == [(5,)]
    (again,) = node.apply(write(6, "INSERT INTO t VALUES (6)", session="s"))
    assert result(again).ok


def test_str_and_bytes_sessions_are_the_same_session(node: Node) -> None:
    node.run("CREATE TABLE t(a)", session=b"setup")
    a = node.apply(write(1, "INSERT INTO t VALUES (1)", session="same"))
    b = node.apply(write(1, "INSERT INTO t VALUES (1)", session=b"same"))
    assert a == b
    assert node.rows("SELECT count(*) FROM t") == [(1,)]


def test_empty_session_opts_out_of_deduplication(node: Node) -> None:
    node.run("CREATE TABLE t(a)", session=b"setup")
    node.apply(write(1, "INSERT INTO t VALUES (1)", session=b""))
    node.apply(write(1, "INSERT INTO t VALUES (1)", session=b""))
    assert node.rows("SELECT count(*) FROM t") == [(2,)]


def test_exactly_once_across_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "n.db")
    cmd = write(1, "INSERT INTO t VALUES (random())", session=b"c", seed=5)
    with StateMachine(path) as m:
        m.apply([(1, write(1, "CREATE TABLE t(a)", session=b"setup")), (2, cmd)])
        first = m.query("SELECT a FROM t").rows
    with StateMachine(path) as m:
        (again,) = m.apply([(3, cmd)])
        assert result(again).ok
        assert m.query("SELECT a FROM t").rows == first


def test_exactly_once_across_snapshot_and_restore(
    open_machine: Callable[..., StateMachine], tmp_path: Path
) -> None:
    src = Node(open_machine("src.db"))
    cmd = write(1, "INSERT INTO t VALUES (1) RETURNING rowid", session=b"c")
    src.run("CREATE TABLE t(a)", session=b"setup")
    (first,) = src.apply(cmd)
    src.m.snapshot_to(str(tmp_path / "snap.db"))
    dst = Node(open_machine("dst.db"))
    assert dst.m.restore_from(str(tmp_path / "snap.db")) == 2
    assert dst.m.applied_index == 2
    (retry,) = dst.apply(cmd)
    assert retry == first
    assert dst.rows("SELECT count(*) FROM t") == [(1,)]


def test_idle_sessions_expire_deterministically(open_machine: Callable[..., StateMachine]) -> None:
    node = Node(open_machine(session_ttl_ns=1000, expire_every=4))
    node.apply(write(1, "CREATE TABLE t(a)", session=b"setup", time_ns=0))  # index 1
    cmd = write(1, "INSERT INTO t VALUES (1)", session=b"old", time_ns=0)
    node.apply(cmd)  # index 2, session "old" last seen at t=0
    node.apply(cmd)  # index 3: a retry, deduplicated
    assert node.rows("SELECT count(*) FROM t") == [(1,)]
    node.apply(write(1, "SELECT 1", session=b"new", time_ns=5000))  # index 4: expiry runs
    node.apply(cmd)  # index 5: "old" was forgotten, so this runs again
    assert node.rows("SELECT count(*) FROM t") == [(2,)]
    assert node.rows("SELECT session FROM _raftsql_sessions ORDER BY session") == [
        (b"new",),
        (b"old",),
    ]


# --- the pinned environment ---------------------------------------------------------------

NONDETERMINISTIC_SCHEMA = (
    "CREATE TABLE t(id INTEGER PRIMARY KEY, r INT, b BLOB, now TEXT, ms REAL, "
    "created TEXT DEFAULT CURRENT_TIMESTAMP, day TEXT DEFAULT CURRENT_DATE, "
    "dr INT DEFAULT (random()))",
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, r INT, at TEXT, blob BLOB)",
    "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN "
    "INSERT INTO audit(r, at, blob) VALUES (random(), datetime('now'), randomblob(8)); END",
)
NONDETERMINISTIC_WRITES = (
    "INSERT INTO t(r, b, now, ms) VALUES "
    "(random(), randomblob(16), datetime('now'), unixepoch('now', 'subsec'))",
    "INSERT INTO t(r) SELECT random() FROM t ORDER BY random() LIMIT 1",
    "UPDATE t SET b = randomblob(4) WHERE id = (SELECT id FROM t ORDER BY random() LIMIT 1)",
)


def _nondeterministic_node(open_machine: Callable[..., StateMachine], name: str, seed: int) -> Node:
    node = Node(open_machine(name))
    node.apply(
        write(1, *NONDETERMINISTIC_SCHEMA, seed=seed),
        write(2, *NONDETERMINISTIC_WRITES, seed=seed),
        write(3, *NONDETERMINISTIC_WRITES, seed=seed + 1, time_ns=T0 + 86_400 * 10**9),
    )
    return node


def test_random_time_defaults_and_triggers_are_identical_on_two_nodes(
    open_machine: Callable[..., StateMachine],
) -> None:
    a = _nondeterministic_node(open_machine, "a.db", seed=7)
    b = _nondeterministic_node(open_machine, "b.db", seed=7)
    for table in ("t", "audit"):
        rows = a.rows(f"SELECT * FROM {table} ORDER BY id")
        assert rows == b.rows(f"SELECT * FROM {table} ORDER BY id")
        assert len(rows) >= 3
    assert a.m.serialize() == b.m.serialize()


def test_the_environment_really_is_pinned(open_machine: Callable[..., StateMachine]) -> None:
    node = Node(open_machine("p.db"))
    (row,) = ok(
        node.run(
            "CREATE TABLE p(r, b, now, ms)",
            "INSERT INTO p VALUES (random(), randomblob(16), datetime('now'), "
            "unixepoch('now', 'subsec')) RETURNING *",
            seed=7,
        )
    )[1].rows
    expected = SeededRandom()
    expected.reset(7)
    assert row[0] == expected.random()  # our seeded stream, not SQLite's own PRNG
    assert row[1] == expected.randomblob(16)
    assert row[2] == T0_TEXT
    assert row[3] == pytest.approx(T0 / 1e9, abs=1e-3)

    node = _nondeterministic_node(open_machine, "a.db", seed=7)
    assert node.rows("SELECT created, day FROM t WHERE id = 1") == [(T0_TEXT, "2023-11-14")]
    # The third entry ran a day later, with its own seed; triggers saw its time.
    days = node.rows("SELECT DISTINCT at FROM audit ORDER BY at")
    assert days == [(T0_TEXT,), ("2023-11-15 22:13:20",)]
    other = _nondeterministic_node(open_machine, "c.db", seed=8)
    assert other.rows("SELECT r, dr FROM t") != node.rows("SELECT r, dr FROM t")


def test_reads_use_the_real_clock(node: Node) -> None:
    import time

    node.run(("SELECT datetime('now')", ()))
    (now,) = node.rows("SELECT unixepoch('now')")[0]
    assert abs(now - time.time()) < 60


# --- refusals at apply time (the classifier bypassed) -------------------------------------


@pytest.mark.parametrize(
    ("sql", "error", "needle"),
    [
        ("ATTACH DATABASE ':memory:' AS x", ForbiddenSQL, "ATTACH and VACUUM INTO are not"),
        ("DETACH x", ForbiddenSQL, "DETACH is not allowed"),
        # SQLite refuses VACUUM inside the batch's transaction before asking the authorizer.
        ("VACUUM", SQLError, "cannot VACUUM from within a transaction"),
        ("VACUUM INTO 'copy.db'", SQLError, "cannot VACUUM from within a transaction"),
        ("BEGIN", ForbiddenSQL, "BEGIN is not allowed"),
        ("COMMIT", ForbiddenSQL, "COMMIT is not allowed"),
        ("SAVEPOINT sp", ForbiddenSQL, "SAVEPOINT is not allowed"),
        ("RELEASE raftsql_command", ForbiddenSQL, "RELEASE is not allowed"),
        ("ROLLBACK TO raftsql_command", ForbiddenSQL, "ROLLBACK is not allowed"),
        ("PRAGMA journal_mode = DELETE", ForbiddenSQL, "PRAGMA journal_mode is not allowed"),
        ("PRAGMA foreign_keys = OFF", ForbiddenSQL, "PRAGMA foreign_keys is not allowed"),
        ("PRAGMA synchronous = FULL", ForbiddenSQL, "PRAGMA synchronous is not allowed"),
        ("SELECT * FROM pragma_journal_mode", ForbiddenSQL, "PRAGMA journal_mode"),
        ("CREATE TEMP TABLE x(a)", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TABLE temp.x(a)", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TEMP VIEW v AS SELECT 1", ForbiddenSQL, "TEMP objects are not allowed"),
        ("SELECT load_extension('x')", ForbiddenSQL, "load_extension() is not allowed"),
        ("SELECT changes()", NonDeterministicSQL, "changes() is not allowed"),
        ("SELECT last_insert_rowid()", NonDeterministicSQL, "last_insert_rowid()"),
        ("SELECT total_changes()", NonDeterministicSQL, "total_changes()"),
        ("CREATE TABLE v(a DEFAULT (sqlite_version()))", NonDeterministicSQL, "sqlite_version()"),
        ("SELECT no_such_udf(1)", SQLError, "no such function: no_such_udf"),
        ("CREATE VIRTUAL TABLE s USING dbstat", ForbiddenSQL, "module 'dbstat'"),
        ("SELECT 1; SELECT 2", ForbiddenSQL, "exactly one statement"),
    ],
)
def test_the_authorizer_refuses_what_cannot_replicate(
    node: Node, sql: str, error: type[RaftsqlError], needle: str
) -> None:
    node.run("CREATE TABLE t(a)")
    err = failed(node.run(sql, "INSERT INTO t VALUES (1)"))
    assert type(err) is error
    assert needle in err.message
    assert node.rows("SELECT count(*) FROM t") == [(0,)]  # the whole request rolled back
    assert node.rows("SELECT name FROM sqlite_schema WHERE name IN ('v', 'x', 's')") == []
    assert node.m.applied_index == 2
    assert node.rows("PRAGMA user_version") == [(0,)]
    ok(node.run("INSERT INTO t VALUES (2)"))  # and the node carries on


def test_a_multi_statement_string_is_rolled_back_whole(node: Node) -> None:
    node.run("CREATE TABLE t(a)")
    err = failed(node.run("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)"))
    assert "exactly one statement" in err.message
    assert node.rows("SELECT count(*) FROM t") == [(0,)]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO _raftsql_meta VALUES (1, 99, 1)",
        "UPDATE _raftsql_meta SET applied_index = 99",
        "DELETE FROM _raftsql_sessions",
        "UPDATE _raftsql_sessions SET seq = 0",
        "DROP TABLE _raftsql_sessions",
        "ALTER TABLE _raftsql_meta ADD COLUMN x",
        "ALTER TABLE _raftsql_meta RENAME TO mine",
        "CREATE INDEX steal ON _raftsql_sessions(seq)",
        "CREATE TRIGGER spy AFTER INSERT ON _raftsql_sessions BEGIN SELECT 1; END",
        "CREATE TABLE _raftsql_mine(a)",
        "CREATE TABLE t2 AS SELECT * FROM _raftsql_meta WHERE 0; DROP TABLE _raftsql_meta",
    ],
)
def test_user_sql_cannot_write_internal_tables(node: Node, sql: str) -> None:
    node.run("SELECT 1", session=b"someone")
    err = failed(node.run(sql))
    assert isinstance(err, ForbiddenSQL)
    assert node.m.applied_index == 2
    assert node.rows("SELECT applied_index FROM _raftsql_meta") == [(2,)]
    assert node.rows("SELECT count(*) FROM _raftsql_sessions") == [(2,)]
    names = {r[0] for r in node.rows("SELECT name FROM sqlite_schema")}
    assert {"steal", "spy", "_raftsql_mine", "mine"}.isdisjoint(names)


def test_internal_statements_cannot_be_reused_through_the_statement_cache(node: Node) -> None:
    """Our own statements are prepared with everything allowed; a user sending the same
    text must not get that prepared statement back from apsw's cache."""
    node.run("SELECT 1")
    for sql in ("SAVEPOINT raftsql_command", "RELEASE raftsql_command",
                "UPDATE _raftsql_meta SET applied_index = ? WHERE id = 0"):  # fmt: skip
        err = failed(node.run((sql, (99,) if "?" in sql else ())))
        assert isinstance(err, ForbiddenSQL)
    assert node.m.applied_index == node.rows("SELECT applied_index FROM _raftsql_meta")[0][0]


def test_trigger_body_with_forbidden_function_is_caught_by_sqlite(node: Node) -> None:
    node.run("CREATE TABLE t(a, b)", "CREATE TABLE log(x)")
    err = failed(
        node.run(
            "CREATE TRIGGER tr AFTER UPDATE OF b ON t BEGIN INSERT INTO log VALUES (changes()); END"
        )
    )
    assert isinstance(err, NonDeterministicSQL)
    assert "changes()" in err.message and "'tr'" in err.message
    err = failed(node.run("CREATE VIEW v AS SELECT a, sqlite_version() AS ver FROM t"))
    assert isinstance(err, NonDeterministicSQL) and "'v'" in err.message
    assert node.rows("SELECT name FROM sqlite_schema WHERE type IN ('trigger', 'view')") == []
    # A good trigger is fine, and the table still works.
    ok(
        node.run(
            "CREATE TRIGGER good AFTER INSERT ON t BEGIN INSERT INTO log VALUES (random()); END"
        )
    )
    ok(node.run("INSERT INTO t VALUES (1, 2)"))
    assert node.rows("SELECT count(*) FROM log") == [(1,)]


def test_forbidden_function_in_a_trigger_is_refused_when_it_fires(node: Node) -> None:
    """A trigger whose body the creation probe could not compile (it names a table that
    does not exist yet) is still refused, deterministically, each time it would fire."""
    node.run("CREATE TABLE t(a)")
    ok(
        node.run(
            "CREATE TRIGGER later AFTER INSERT ON t BEGIN INSERT INTO log VALUES (changes()); END"
        )
    )
    node.run("CREATE TABLE log(x)")
    err = failed(node.run("INSERT INTO t VALUES (1)"))
    assert isinstance(err, NonDeterministicSQL) and "'later'" in err.message
    assert node.rows("SELECT count(*) FROM t") == [(0,)]
    assert node.rows("SELECT count(*) FROM log") == [(0,)]


def test_allowed_pragmas_in_writes(node: Node) -> None:
    ok(node.run("PRAGMA user_version = 42", "CREATE TABLE t(a)"))
    (info,) = ok(node.run("PRAGMA table_info(t)"))
    assert info.rows[0][1] == "a"
    assert node.rows("PRAGMA user_version") == [(42,)]


# --- reads ------------------------------------------------------------------------------


def test_query_is_read_only_and_bounded(node: Node) -> None:
    node.run("CREATE TABLE t(a)", "INSERT INTO t VALUES (1), (2), (3)")
    r = node.m.query("SELECT a FROM t ORDER BY a", max_rows=2)
    assert (r.rows, r.truncated, r.columns, r.rowcount) == ([(1,), (2,)], True, ["a"], -1)
    assert not node.m.query("SELECT a FROM t", max_rows=3).truncated
    assert node.m.query("SELECT a FROM t WHERE a = :x", {"x": 2}).rows == [(2,)]
    assert node.m.query("SELECT sqlite_version()").rows  # fine in a read
    plan = node.m.query("EXPLAIN QUERY PLAN INSERT INTO t SELECT * FROM t")
    assert plan.rows
    for sql, error in [
        ("INSERT INTO t VALUES (4)", ForbiddenSQL),
        ("DELETE FROM t", ForbiddenSQL),
        ("CREATE TABLE u(a)", ForbiddenSQL),
        ("PRAGMA user_version = 3", ForbiddenSQL),
        ("BEGIN", ForbiddenSQL),
        ("SELECT changes()", NonDeterministicSQL),
        ("SELECT 1; SELECT 2", ForbiddenSQL),
        ("SELECT * FROM missing", SQLError),
    ]:
        with pytest.raises(error):
            node.m.query(sql)
    with pytest.raises(ParameterError):
        node.m.query("SELECT ?", (1, 2))
    with pytest.raises(ParameterError):
        node.m.query("SELECT :a", {"b": 1})
    assert node.rows("SELECT count(*) FROM t") == [(3,)]


def test_query_never_sees_a_batch_before_it_commits(node: Node) -> None:
    node.run("CREATE TABLE t(a)")
    seen: list[list[tuple]] = []  # type: ignore[type-arg]

    def at_commit() -> bool:
        seen.append(node.m.query("SELECT count(*) FROM t").rows)
        return False  # let the commit go ahead

    node.m._db.set_commit_hook(at_commit)
    node.apply(write(10, "INSERT INTO t VALUES (1)"), write(11, "INSERT INTO t VALUES (2)"))
    node.m._db.set_commit_hook(None)
    assert seen == [[(0,)]]
    assert node.rows("SELECT count(*) FROM t") == [(2,)]


def test_query_from_another_thread_while_applying(node: Node) -> None:
    node.run("CREATE TABLE t(a)")
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                counts.append(node.m.query("SELECT count(*) FROM t").rows[0][0])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(50):
            node.apply(write(100 + i, *["INSERT INTO t VALUES (1)"] * 3))
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert all(c % 3 == 0 for c in counts)  # never half a request
    assert counts == sorted(counts)


# --- snapshots --------------------------------------------------------------------------


def _populate(node: Node, n: int = 20) -> None:
    node.run(*NONDETERMINISTIC_SCHEMA)
    for i in range(n):
        node.run(*NONDETERMINISTIC_WRITES, session=f"c{i % 3}", seed=i)


def test_snapshot_restore_is_byte_identical(
    open_machine: Callable[..., StateMachine], tmp_path: Path
) -> None:
    src = Node(open_machine("src.db"))
    _populate(src)
    snap = str(tmp_path / "snap.db")
    size = src.m.snapshot_to(snap)
    assert size == os.path.getsize(snap) and size % 4096 == 0
    assert snapshot_index(snap) == src.m.applied_index
    dst = Node(open_machine("dst.db"))
    dst.run("CREATE TABLE junk(a)", "INSERT INTO junk VALUES (1)")  # replaced wholesale
    assert dst.m.restore_from(snap) == src.m.applied_index == dst.m.applied_index
    assert dst.m.serialize() == src.m.serialize()
    # Both go on applying the same entries and stay identical.
    more = [write(1000 + i, *NONDETERMINISTIC_WRITES, seed=i) for i in range(5)]
    assert src.apply(*more) == dst.apply(*more)
    assert dst.m.serialize() == src.m.serialize()


def test_snapshot_is_consistent_while_writes_continue(
    open_machine: Callable[..., StateMachine], tmp_path: Path
) -> None:
    src = Node(open_machine("src.db"))
    _populate(src, 5)
    src.run("CREATE TABLE big(b BLOB)")
    with src.m.begin_snapshot() as snap:
        pinned = src.m.serialize()
        assert snap.index == src.m.applied_index
        # Enough writes to trigger several WAL auto-checkpoints (1000 pages each).
        for i in range(12):
            src.run(("INSERT INTO big VALUES (zeroblob(?))", (1_000_000,)), seed=i)
        path = str(tmp_path / "snap.db")
        assert snap.write_to(path) == len(pinned)
    dst = open_machine("dst.db")
    dst.restore_from(path)
    assert dst.serialize() == pinned
    assert src.m.query("SELECT count(*) FROM big").rows == [(12,)]


def test_one_snapshot_at_a_time(node: Node) -> None:
    with node.m.begin_snapshot(), pytest.raises(MachineError, match="already open"):
        node.m.begin_snapshot()
    with node.m.begin_snapshot():
        pass


def test_restore_refuses_a_file_that_is_not_a_snapshot(node: Node, tmp_path: Path) -> None:
    node.run("CREATE TABLE t(a)")
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MachineError, match="not a raftsql snapshot"):
        node.m.restore_from(str(bogus))
    assert node.m.applied_index == 1
    ok(node.run("INSERT INTO t VALUES (1)"))


def test_sync_checkpoints_everything_into_the_database_file(node: Node) -> None:
    node.run("CREATE TABLE t(a)", "INSERT INTO t VALUES (1)")
    assert node.m.sync() == node.m.applied_index
    assert os.path.getsize(node.m.path + "-wal") == 0


# --- identical nodes, whatever the batching --------------------------------------------


def test_batching_changes_only_the_header_counters(
    open_machine: Callable[..., StateMachine],
) -> None:
    entries = [write(1, *NONDETERMINISTIC_SCHEMA)] + [
        write(2 + i, *NONDETERMINISTIC_WRITES, f"CREATE TABLE x{i}(a)", seed=i) for i in range(8)
    ]
    a, b, c = (Node(open_machine(n)) for n in ("a.db", "b.db", "c.db"))
    batched = a.apply(*entries)
    assert b.apply(*entries) == batched  # same batching: identical files
    assert a.m.serialize() == b.m.serialize()
    singles = [c.apply(e)[0] for e in entries]  # other batching: same results and content
    assert singles == batched
    assert a.m.content_digest() == c.m.content_digest()
    image_a, image_c = a.m.serialize(), c.m.serialize()
    differing = {i for i in range(len(image_a)) if image_a[i] != image_c[i]}
    assert differing <= set(range(24, 28)) | set(range(92, 96))


_keys = st.sampled_from(["a", "b", "c", "d"])
_operations = st.one_of(
    st.tuples(st.just("INSERT INTO t(k, v) VALUES (?, ?)"), st.tuples(_keys, st.integers(0, 9))),
    st.tuples(
        st.just("INSERT OR REPLACE INTO t(k, v, r) VALUES (?, ?, random())"),
        st.tuples(_keys, st.integers(0, 9)),
    ),
    st.tuples(
        st.just("INSERT OR ROLLBACK INTO t(k, v) VALUES (?, ?)"),
        st.tuples(_keys, st.integers(0, 9)),
    ),
    st.tuples(
        st.just("UPDATE t SET v = v + ?, r = random(), at = datetime('now') WHERE k = ?"),
        st.tuples(st.integers(-3, 3), _keys),
    ),
    st.tuples(st.just("DELETE FROM t WHERE k = ?"), st.tuples(_keys)),
    st.tuples(
        st.just("INSERT INTO t(k, v, b) VALUES (?, 0, randomblob(?))"),
        st.tuples(_keys, st.integers(0, 3000)),
    ),
    st.tuples(
        st.just("INSERT INTO t(k, v) SELECT k || '+', v FROM t ORDER BY random() LIMIT 1"),
        st.just(()),
    ),
    st.tuples(st.just("INSERT INTO child(pid) VALUES (?)"), st.tuples(_keys)),
    st.tuples(st.just("SELECT changes()"), st.just(())),
    st.tuples(st.just("DELETE FROM t WHERE v > 5 RETURNING k, b"), st.just(())),
)
_entry = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from([b"c1", b"c2", b""]),
        st.sampled_from(["next", "next", "next", "retry", "stale"]),
        st.lists(_operations, min_size=1, max_size=3),
        st.integers(0, 10**12),
        st.integers(0, 2**64 - 1),
    ),
)
HYPOTHESIS_SCHEMA = (
    "CREATE TABLE t(k TEXT PRIMARY KEY, v INT CHECK (v < 12), r INT DEFAULT (random()), "
    "b BLOB, at TEXT DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE child(pid REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE log(k, r, at)",
    "CREATE TRIGGER t_log AFTER UPDATE ON t BEGIN "
    "INSERT INTO log VALUES (new.k, random(), datetime('now')); END",
)


def _entries(spec: list) -> list[bytes | None]:  # type: ignore[type-arg]
    seqs: dict[bytes, int] = {}
    out: list[bytes | None] = [write(1, *HYPOTHESIS_SCHEMA, session=b"schema")]
    for item in spec:
        if item is None:
            out.append(None)
            continue
        session, how, ops, dt, seed = item
        last = seqs.get(session, 0)
        if how == "next" or last == 0:
            seq = last + 1
            seqs[session] = seq
        elif how == "retry":
            seq = last
        else:
            seq = max(last - 2, 0)
        out.append(write(seq, *ops, session=session, time_ns=T0 + dt, seed=seed))
    return out


def _apply_in_batches(m: StateMachine, entries: list, cuts: list[int]) -> list:  # type: ignore[type-arg]
    out: list[bytes | None] = []
    bounds = sorted({c % (len(entries) + 1) for c in cuts} | {0, len(entries)})
    for lo, hi in itertools.pairwise(bounds):
        out += m.apply([(i + 1, entries[i]) for i in range(lo, hi)])
    return out


HISTORIES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Hypothesis settings of the random-history tests (each example opens real databases)."""


@HISTORIES
@given(
    spec=st.lists(_entry, min_size=1, max_size=25),
    cuts_a=st.lists(st.integers(0, 30), max_size=6),
    cuts_b=st.lists(st.integers(0, 30), max_size=6),
)
def test_random_histories_give_identical_databases(
    spec: list,
    cuts_a: list[int],
    cuts_b: list[int],  # type: ignore[type-arg]
) -> None:
    entries = _entries(spec)
    with tempfile.TemporaryDirectory() as tmp:
        a = StateMachine(os.path.join(tmp, "a.db"))
        b = StateMachine(os.path.join(tmp, "b.db"))
        c = StateMachine(os.path.join(tmp, "c.db"))
        try:
            results_a = _apply_in_batches(a, entries, cuts_a)
            results_b = _apply_in_batches(b, entries, cuts_b)
            b.sync()
            results_c = _apply_in_batches(c, entries, cuts_a)
            assert results_a == results_b == results_c
            assert a.applied_index == b.applied_index == len(entries)
            for sql in ("SELECT * FROM t ORDER BY k", "SELECT * FROM log", "SELECT * FROM child"):
                assert a.query(sql).rows == b.query(sql).rows
            assert a.content_digest() == b.content_digest()
            assert a.serialize() == c.serialize()  # same batching: byte for byte
        finally:
            a.close()
            b.close()
            c.close()
