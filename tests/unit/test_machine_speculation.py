"""Speculation: the leader runs entries before they commit, in a transaction left open,
and the apply of the committed entries keeps that work only when it is the same work.

What must hold whatever happens to a speculation (kept, cut short by a shorter commit,
replaced by another leader's entries, over its deadline, aborted by a ROLLBACK conflict):
nothing speculated is visible before its apply, and the database, the results and the
applied index are exactly those of a machine that never speculated."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from raftsql.sql.machine import StateMachine
from tests.unit.test_machine import (
    HISTORIES,
    Node,
    _entries,
    _entry,
    failed,
    ok,
    write,
)
from tests.unit.test_machine_budget import HEAVY

SOON = 10.0  # seconds: a deadline no speculation here reaches


def _soon() -> float:
    return time.perf_counter() + SOON


def _indexed(m: StateMachine, payloads: list[bytes | None]) -> list[tuple[int, bytes | None]]:
    first = m.applied_index + 1
    return [(first + k, p) for k, p in enumerate(payloads)]


def _pair(open_machine: Callable[..., StateMachine], *setup: str) -> tuple[Node, Node]:
    """A machine to speculate on and a plain one to compare with, both with ``setup``."""
    spec, plain = Node(open_machine("spec.db")), Node(open_machine("plain.db"))
    for n in (spec, plain):
        for sql in setup:
            n.run(sql)
    return spec, plain


def test_a_kept_speculation_commits_what_it_ran_and_is_invisible_until_then(
    open_machine: Callable[..., StateMachine],
) -> None:
    spec, plain = _pair(
        open_machine,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP, r)",
    )
    batch = _indexed(
        spec.m,
        [
            write(10, "INSERT INTO t (r) VALUES (random())"),
            None,
            write(11, "INSERT INTO t (r) VALUES (randomblob(4))", session=b"other"),
        ],
    )
    before = spec.m.applied_index
    assert spec.m.speculate(batch, _soon())
    assert spec.m.speculating
    assert spec.m.applied_index == before  # reads are not released for it
    assert spec.rows("SELECT count(*) FROM t") == [(0,)]  # and would not see it

    results = spec.m.apply(batch)
    assert not spec.m.speculating
    assert results == plain.m.apply(batch)
    assert spec.m.applied_index == plain.m.applied_index == before + 3
    assert ok(results[0])[0].lastrowid == 1
    assert spec.rows("SELECT * FROM t") == plain.rows("SELECT * FROM t")
    assert spec.m.content_digest() == plain.m.content_digest()


def test_a_speculation_replaced_by_another_leaders_entries_leaves_no_trace(
    open_machine: Callable[..., StateMachine],
) -> None:
    """The leader lost its leadership: the next leader's entries at the same indices
    differ (other session, time, seed), and only they may take effect."""
    spec, plain = _pair(open_machine, "CREATE TABLE t (k TEXT PRIMARY KEY, r)")
    ours = _indexed(spec.m, [write(1, "INSERT INTO t VALUES ('ours', random())", seed=1)])
    theirs = _indexed(
        spec.m,
        [
            write(1, "INSERT INTO t VALUES ('theirs', random())", session=b"b", seed=2),
            write(2, "INSERT INTO t VALUES ('ours', 0)", session=b"b"),
        ],
    )
    assert spec.m.speculate(ours, _soon())
    assert spec.m.apply(theirs) == plain.m.apply(theirs)
    assert spec.rows("SELECT k, r FROM t ORDER BY k") == plain.rows("SELECT k, r FROM t ORDER BY k")
    assert spec.rows("SELECT k FROM t ORDER BY k") == [("ours",), ("theirs",)]
    assert spec.m.content_digest() == plain.m.content_digest()


def test_a_commit_covering_only_part_of_a_speculation_applies_that_part_alone(
    open_machine: Callable[..., StateMachine],
) -> None:
    spec, plain = _pair(open_machine, "CREATE TABLE t (x)")
    batch = _indexed(
        spec.m, [write(k, f"INSERT INTO t VALUES ({k})", session=b"w") for k in range(1, 5)]
    )
    assert spec.m.speculate(batch, _soon())
    assert spec.m.apply(batch[:2]) == plain.m.apply(batch[:2])
    assert spec.m.applied_index == batch[1][0]
    assert spec.rows("SELECT x FROM t") == [(1,), (2,)]
    assert spec.m.apply(batch[2:]) == plain.m.apply(batch[2:])
    assert spec.m.content_digest() == plain.m.content_digest()


def test_a_retry_speculated_returns_the_first_result_and_runs_once(
    open_machine: Callable[..., StateMachine],
) -> None:
    node = Node(open_machine())
    node.run("CREATE TABLE t (x)")
    first = node.m.apply(_indexed(node.m, [write(5, "INSERT INTO t VALUES (1)", session=b"s")]))
    retry = _indexed(node.m, [write(5, "INSERT INTO t VALUES (1)", session=b"s")])
    assert node.m.speculate(retry, _soon())
    assert node.m.apply(retry) == first
    assert node.rows("SELECT count(*) FROM t") == [(1,)]


def test_no_speculation_past_its_deadline_or_out_of_order(
    open_machine: Callable[..., StateMachine],
) -> None:
    node = Node(open_machine())
    node.run("CREATE TABLE big (x)")
    heavy = _indexed(node.m, [write(10, HEAVY)])
    started = time.perf_counter()
    assert not node.m.speculate(heavy, time.perf_counter() + 0.005)
    assert time.perf_counter() - started < 2.0  # interrupted, not run to the end
    assert not node.m.speculating
    gap = [(heavy[0][0] + 1, write(11, "INSERT INTO big VALUES (1)"))]
    assert not node.m.speculate(gap, _soon())  # does not follow the committed state
    assert node.m.apply(heavy)  # the ordinary apply still runs it, unhurried
    assert node.rows("SELECT count(*) FROM big") == [(200_000,)]
    assert node.m.speculate(_indexed(node.m, [None]), _soon())
    assert not node.m.speculate(_indexed(node.m, [None]), _soon())  # one open at a time


def test_a_rollback_conflict_aborts_the_speculation_but_not_the_apply(
    open_machine: Callable[..., StateMachine],
) -> None:
    """ON CONFLICT ROLLBACK ends the whole transaction: the ordinary apply recovers by
    committing the entries before it, which speculation must never do (they are not
    committed by Raft). It gives up instead, and the apply gets the usual results."""
    spec, plain = _pair(
        open_machine,
        "CREATE TABLE t (a INTEGER PRIMARY KEY ON CONFLICT ROLLBACK)",
        "INSERT INTO t VALUES (1)",
    )
    batch = _indexed(
        spec.m,
        [
            write(10, "INSERT INTO t VALUES (2)", session=b"x"),
            write(10, "INSERT INTO t VALUES (1)", session=b"y"),
        ],
    )
    assert not spec.m.speculate(batch, _soon())
    assert spec.rows("SELECT a FROM t") == [(1,)]
    results = spec.m.apply(batch)
    assert results == plain.m.apply(batch)
    assert "UNIQUE" in failed(results[1]).message
    assert spec.m.content_digest() == plain.m.content_digest()


def test_snapshots_and_restores_drop_an_open_speculation(
    open_machine: Callable[..., StateMachine], tmp_path: Path
) -> None:
    node = Node(open_machine())
    node.run("CREATE TABLE t (x)")
    node.run("INSERT INTO t VALUES (1)")
    applied = node.m.applied_index
    pending = _indexed(node.m, [write(50, "INSERT INTO t VALUES (2)")])
    assert node.m.speculate(pending, _soon())
    with node.m.begin_snapshot() as snap:  # would fail with a write transaction open
        assert snap.index == applied
        snap.write_to(str(tmp_path / "snap.db"))
    assert not node.m.speculating
    assert node.m.speculate(pending, _soon())
    assert node.m.sync() == applied
    assert node.m.speculate(pending, _soon())
    assert node.m.restore_from(str(tmp_path / "snap.db")) == applied
    assert node.m.apply(pending)
    assert node.rows("SELECT x FROM t") == [(1,), (2,)]


_fate = st.sampled_from(["none", "same", "longer", "other"])


@HISTORIES
@given(
    spec=st.lists(_entry, min_size=1, max_size=20),
    rivals=st.lists(_entry, min_size=4, max_size=4),
    cuts=st.lists(st.integers(1, 6), min_size=1, max_size=25),
    fates=st.lists(_fate, min_size=1, max_size=25),
)
def test_random_histories_with_speculation_give_identical_databases(
    spec: list,  # type: ignore[type-arg]
    rivals: list,  # type: ignore[type-arg]
    cuts: list[int],
    fates: list[str],
) -> None:
    """Each committed batch may be preceded by a speculation of the same entries, of
    more entries than commit next, or of a rival leader's entries at those indices."""
    entries = _entries(spec)
    rival_entries = _entries(rivals)[1:]
    with tempfile.TemporaryDirectory() as tmp:
        a = StateMachine(os.path.join(tmp, "spec.db"))
        b = StateMachine(os.path.join(tmp, "plain.db"))
        try:
            results_a: list[bytes | None] = []
            results_b: list[bytes | None] = []
            pos, k = 0, 0
            while pos < len(entries):
                size = cuts[k % len(cuts)]
                fate = fates[k % len(fates)]
                k += 1
                batch = [
                    (pos + 1 + i, entries[pos + i]) for i in range(size) if pos + i < len(entries)
                ]
                if fate == "same":
                    a.speculate(batch, _soon())
                elif fate == "longer":
                    more = [(pos + 1 + i, e) for i, e in enumerate(entries[pos : pos + size + 2])]
                    a.speculate(more, _soon())
                elif fate == "other":
                    a.speculate([(pos + 1 + i, e) for i, e in enumerate(rival_entries)], _soon())
                assert a.applied_index == pos
                results_a += a.apply(batch)
                results_b += b.apply(batch)
                pos += len(batch)
            assert results_a == results_b
            assert a.applied_index == b.applied_index == len(entries)
            for sql in ("SELECT * FROM t ORDER BY k", "SELECT * FROM log", "SELECT * FROM child"):
                assert a.query(sql).rows == b.query(sql).rows
            assert a.content_digest() == b.content_digest()
        finally:
            a.close()
            b.close()
