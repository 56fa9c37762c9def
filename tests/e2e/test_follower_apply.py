"""A follower holds committed entries and applies them in batches (``follower_apply_batch``,
``follower_apply_delay``): reads, digests and a change of leader must never see the
difference. Three nodes in one trio program, on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from raftsql.server.node import Node
from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)

BATCH = 5


async def wait_commit(node: Node, index: int) -> None:
    """Until ``node`` knows ``index`` is committed (from the next append or heartbeat)."""
    with trio.fail_after(10):
        while node.core.commit < index:
            await trio.sleep(0.005)


async def test_a_follower_applies_in_batches_and_reads_see_every_committed_write(
    tmp_path: Path,
) -> None:
    async with three_nodes(tmp_path, follower_apply_batch=BATCH, follower_apply_delay=3600) as ns:
        leader = await wait_leader(ns)
        a, b = (n for n in ns if n is not leader)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        held_seen = 0
        for x in range(1, 3 * BATCH):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
            await wait_commit(a, leader.core.commit)
            # never more than a batch waits, and what waits is all that is not applied
            assert len(a._held) < BATCH
            assert a.machine.applied_index + len(a._held) == a.core.applied
            held_seen = max(held_seen, a.core.commit - a.machine.applied_index)
        assert held_seen > 0, "the follower applied every entry at once: nothing was held"
        assert leader.machine.applied_index == leader.core.commit  # a leader never holds

        # until both followers hold entries (either may have just applied a full batch)
        x = 3 * BATCH
        while not (a._held and b._held) and x < 6 * BATCH:
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
            x += 1
            await wait_commit(a, leader.core.commit)
            await wait_commit(b, leader.core.commit)
        assert a._held and b._held
        want = [(sum(range(1, x)),)]
        # a linearizable read on a follower applies what it holds before it answers
        assert (await b.read("SELECT sum(x) FROM t")).rows == want
        assert not b._held
        # a stale read is as fresh as the node can be: it applies what it holds first
        assert (await a.read("SELECT sum(x) FROM t", consistency="stale")).rows == want
        assert not a._held and a.machine.applied_index == a.core.commit

        digests = {(await n.digest())["sha256"] for n in ns}
        assert len(digests) == 1  # the same bytes, whatever the batches were


async def test_held_entries_are_applied_within_the_delay(tmp_path: Path) -> None:
    async with three_nodes(tmp_path, follower_apply_batch=1000, follower_apply_delay=0.2) as ns:
        leader = await wait_leader(ns)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        await leader.write([("INSERT INTO t VALUES (1)", ())])
        commit = leader.core.commit
        with trio.fail_after(5):
            while any(n.machine.applied_index < commit for n in ns):
                await trio.sleep(0.01)
        assert all(not n._held for n in ns)


async def test_a_follower_that_holds_entries_becomes_leader_and_applies_them_first(
    tmp_path: Path,
) -> None:
    async with three_nodes(tmp_path, follower_apply_batch=1000, follower_apply_delay=3600) as ns:
        leader = await wait_leader(ns)
        await leader.write([("CREATE TABLE t (x INTEGER PRIMARY KEY, at TEXT)", ())])
        for x in range(1, 8):
            await leader.write([("INSERT INTO t VALUES (?, datetime('now'))", (x,))])
        heir = next(n for n in ns if n is not leader)
        await wait_commit(heir, leader.core.commit)
        assert heir._held  # the entries it will have to apply first
        leader.transfer_leader(heir.config.id)
        with trio.fail_after(10):
            while heir.status()["role"] != "leader":
                await trio.sleep(0.01)
        outcome = await heir.write([("INSERT INTO t VALUES (8, datetime('now'))", ())])
        assert outcome.unwrap()[0].rowcount == 1
        assert not heir._held
        assert (await heir.read("SELECT count(*), max(x) FROM t")).rows == [(8, 8)]
        for n in ns:
            await wait_commit(n, heir.core.commit)
        rows = {tuple((await n.read("SELECT x, at FROM t ORDER BY x")).rows) for n in ns}
        assert len(rows) == 1  # every node applied the same entries in the same order
