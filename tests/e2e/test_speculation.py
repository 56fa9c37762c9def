"""The leader runs a write's statements while its AppendEntries are out (speculation) and
commits that work once the entry commits. A client must never see the difference: the
results are those of an ordinary apply, nothing shows before the commit, and a leader
deposed with a speculation open ends with exactly the new leader's data. Three nodes in
one trio program, on loopback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from raftsql import errors
from raftsql.raft.messages import Message
from raftsql.server.node import Node
from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)


async def _digests(nodes: list[Node], index: int) -> set[str]:
    """Every node's database digest once it has applied up to ``index``."""
    with trio.fail_after(10):
        for n in nodes:
            while n.machine.applied_index < index:
                await n.read("SELECT 1", consistency="stale")  # applies what it holds
                await trio.sleep(0.01)
    return {(await n.digest())["sha256"] for n in nodes}


async def test_one_writers_writes_are_speculated_and_answered_as_usual(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as ns:
        leader = await wait_leader(ns)
        await leader.write([("CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT, r INT)", ())])
        before = dict(leader.machine.speculations)
        for n in range(1, 21):
            result = await leader.write(
                [("INSERT INTO t (at, r) VALUES (datetime('now'), random())", ())],
                session=b"writer",
                seq=n,
            )
            assert result.results[0].lastrowid == n and result.results[0].rowcount == 1
        spec = {k: v - before[k] for k, v in leader.machine.speculations.items()}
        # one writer: every write ran before its commit, and that work was kept
        assert spec == {"started": 20, "kept": 20, "dropped": 0}, spec
        assert leader.status()["counters"]["speculations_kept"] >= 20
        # a retry of the last write returns its first result without running again
        again = await leader.write(
            [("INSERT INTO t (at, r) VALUES (datetime('now'), random())", ())],
            session=b"writer",
            seq=20,
        )
        assert again.results[0].lastrowid == 20
        assert len(await _digests(ns, leader.machine.applied_index)) == 1
        rows = (await ns[0].read("SELECT count(*), count(DISTINCT r) FROM t")).rows
        assert rows == [(20, 20)]


async def test_a_leader_deposed_with_a_speculation_open_keeps_none_of_it(
    tmp_path: Path,
) -> None:
    """The leader's messages stop reaching the others (one-way partition) after it has
    speculated a write; the others elect a new leader, which writes its own row; when the
    old leader hears of it, its entry is replaced, the speculation rolled back, and its
    client told the leadership changed."""
    async with three_nodes(tmp_path) as ns:
        old = await wait_leader(ns)
        await old.write([("CREATE TABLE t (k TEXT)", ())])

        def drop(messages: Sequence[Message], *_: object) -> bool:
            return True  # "sent"

        for link in old.links.values():
            link.send_batch = drop  # type: ignore[method-assign]
            link.send_from_thread = drop  # type: ignore[method-assign]
        waiter = old.submit_write(
            old.check_statements([("INSERT INTO t VALUES ('lost')", ())]), True, b"w", 1
        )
        with trio.fail_after(5):
            while not old.machine.speculating:
                await trio.sleep(0.001)
        assert (await old.read("SELECT count(*) FROM t", consistency="stale")).rows == [(0,)]

        others = [n for n in ns if n is not old]
        new = await wait_leader(others)
        await new.write([("INSERT INTO t VALUES ('kept')", ())])
        for link in old.links.values():  # heal: the instance attributes go
            del link.send_batch
            del link.send_from_thread
        with trio.fail_after(15):
            await waiter.done.wait()
        assert isinstance(waiter.error, errors.NotLeaderError)
        assert len(await _digests(ns, new.machine.applied_index)) == 1
        assert not old.machine.speculating
        assert old.machine.speculations["dropped"] >= 1
        for n in ns:
            assert (await n.read("SELECT k FROM t", consistency="stale")).rows == [("kept",)]
