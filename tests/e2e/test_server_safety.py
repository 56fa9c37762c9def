"""Safety bugs checked on the server (the core's rules are tested
message by message in tests/unit): acks ahead of the disk (PySyncObj #84), a read
index reused across retries (etcd #20418), a follower read released inside a batch
still being applied, and a write's waiter lost when its index is reused (both found
here). Three nodes in one trio program, on loopback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from raftsql import errors
from raftsql.raft.messages import AppendEntriesResponse, Message, ReadIndexResponse
from raftsql.server.node import Node, WriteWaiter
from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)


class AckAudit:
    """Wraps one follower's log sync and its link to the leader: records the highest index
    fsynced so far and every acknowledged index, with any ack that got ahead of the disk."""

    def __init__(self, node: Node, leader_id: int) -> None:
        self.lock = threading.Lock()
        self.synced = node.storage.log.last_index  # recovered at open: on disk already
        self.acked: list[int] = []
        self.ahead: list[tuple[int, int]] = []
        log = node.storage.log
        real_sync = log.sync

        def sync() -> None:
            last = log.last_index
            real_sync()
            with self.lock:
                self.synced = max(self.synced, last)

        log.sync = sync  # type: ignore[method-assign]
        link = node.links[leader_id]
        link.send_from_thread = self._watch(link.send_from_thread)  # type: ignore[method-assign]
        link.send_batch = self._watch(link.send_batch)  # type: ignore[method-assign]

    def _watch(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def watched(messages: Sequence[Message], *args: Any) -> Any:
            with self.lock:
                for m in messages:
                    if isinstance(m, AppendEntriesResponse) and m.success:
                        self.acked.append(m.index)
                        if m.index > self.synced:
                            self.ahead.append((m.index, self.synced))
            return send(messages, *args)

        return watched


async def test_followers_acknowledge_only_what_their_log_has_fsynced(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as nodes:
        leader = await wait_leader(nodes)
        audits = [AckAudit(n, leader.config.id) for n in nodes if n is not leader]
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        for x in range(40):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
        last = leader.core.last_index
        with trio.fail_after(10):  # the spare follower (quorum_first) acks at the next tick
            while min(max(a.acked, default=0) for a in audits) < last:
                await trio.sleep(0.01)
        for audit in audits:
            assert not audit.ahead, f"acks ahead of the disk (acked, synced): {audit.ahead}"
        # the audit saw the acks that committed these writes (else it proves nothing): each
        # write, sent after the last one was acknowledged, was committed by an ack of its
        # own from one follower or the other (quorum_first: the spare acks once a batch)
        assert sum(len(a.acked) for a in audits) >= 40


async def test_a_late_read_index_answer_to_an_earlier_attempt_is_not_used(
    tmp_path: Path,
) -> None:
    """etcd #20418: a read retried with the context of an earlier attempt can take that
    attempt's late answer, a read index from before writes acknowledged since. Each attempt
    here asks with a fresh context: the late answer finds no read and is dropped, and the
    read is served at a read index from its latest attempt."""
    async with three_nodes(tmp_path) as nodes:
        leader = await wait_leader(nodes)
        follower = next(n for n in nodes if n is not leader)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        await leader.write([("INSERT INTO t VALUES (1)", ())])
        held: list[Message] = []
        real_step = follower.core.step

        def step(m: Message) -> None:
            if isinstance(m, ReadIndexResponse):
                held.append(m)  # every answer waits until the test lets it through
            else:
                real_step(m)

        follower.core.step = step  # type: ignore[method-assign]
        done = trio.Event()
        slot = follower.start_read(
            "SELECT count(*) FROM t", (), "linearizable", lambda _: done.set()
        )
        with trio.fail_after(10):
            while not held:
                await trio.sleep(0.005)
        await leader.write([("INSERT INTO t VALUES (2)", ())])  # acknowledged now
        acknowledged = leader.core.commit
        with trio.fail_after(10):
            while len(held) < 2:  # the read was retried (after retry_at) and answered again
                await trio.sleep(0.005)
        late, *rest = held
        assert isinstance(late, ReadIndexResponse) and late.index < acknowledged
        follower.core.step = real_step  # type: ignore[method-assign]
        real_step(late)  # the late answer first: it must find no read waiting for it
        follower._kick()
        await trio.sleep(0.05)
        for m in rest:
            real_step(m)
        follower._kick()
        with trio.fail_after(10):
            await done.wait()
        assert slot.error is None
        assert slot.index >= acknowledged
        assert slot.result is not None and slot.result.rows == [(2,)]


def slow_insert(rows: int) -> str:
    """An INSERT that counts ``rows`` rows first: ~0.1 s a million here, long enough that
    its apply moves to the disk worker."""
    return (
        "INSERT INTO t (k) SELECT -count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION "
        f"ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)"
    )


async def test_a_follower_read_waits_for_the_commit_of_the_batch_holding_its_index(
    tmp_path: Path,
) -> None:
    """A linearizable read on a follower whose read index falls inside a batch that its
    disk worker is still applying must wait for that batch's COMMIT. The applied index
    used to count each entry as soon as it ran inside the open transaction, so a read
    released meanwhile ran before the COMMIT and missed the entry at its own read index.

    The follower's machine is held busy (its machine lock, as a snapshot would) while a
    fast entry A commits, the read starts (read index A) and a slow entry B commits; on
    release its applier runs [A, B] in one transaction, and meanwhile the test keeps
    asking the follower to release applied reads, as its loop does on every Ready."""
    async with three_nodes(tmp_path, follower_apply_batch=1) as ns:
        leader = await wait_leader(ns)
        follower = next(n for n in ns if n is not leader)
        await leader.write([("CREATE TABLE t (k INTEGER)", ())])

        async def commit_on_follower(sql: str) -> int:
            await leader.write([(sql, ())])
            index = leader.core.commit
            with trio.fail_after(10):
                while follower.core.commit < index:
                    await trio.sleep(0.001)
            return index

        async with follower._machine_lock:
            a_index = await commit_on_follower("INSERT INTO t (k) VALUES (1)")
            reading = follower.start_read("SELECT count(*) FROM t WHERE k = 1", (), "linearizable")
            with trio.fail_after(10):
                while not reading.index:  # the read index arrives from the leader
                    await trio.sleep(0.001)
            assert reading.index == a_index
            await commit_on_follower(slow_insert(1_500_000))
            assert follower.machine.applied_index < a_index  # nothing applied yet
        with trio.fail_after(30):
            while not reading.done.is_set():
                follower._release_applied_reads()
                await trio.sleep(0.001)
        assert reading.error is None, reading.error
        assert reading.result.rows == [(1,)], "the read missed the entry at its read index"


async def test_a_write_whose_index_is_reused_gets_an_answer(tmp_path: Path) -> None:
    """A leader that lost its leadership with a write in flight, whose entry the next
    leader truncated, can lead again and propose a new write at the same index. The old
    write's waiter was then overwritten and its client never answered; now it is told
    the leadership changed (and retrying is safe). The earlier write is stood in for by a
    waiter of an earlier term at the index the next proposal will take."""
    async with three_nodes(tmp_path) as ns:
        leader = await wait_leader(ns)
        await leader.write([("CREATE TABLE t (k INTEGER)", ())])
        now = time.monotonic()
        old = WriteWaiter(leader.core.term - 1, now + 60, now)
        leader._writes[leader.core.last_index + 1] = old
        fresh = leader.submit_write(
            leader.check_statements([("INSERT INTO t VALUES (1)", ())]), True, b"", 0
        )
        assert old.done.is_set() and isinstance(old.error, errors.NotLeaderError)
        with trio.fail_after(10):
            await fresh.done.wait()
        assert fresh.error is None
