"""A follower's persist job ends quietly (``Worker.submit_quiet``): its loop is not woken
when the fsync ends, because the ack leaves from the disk worker; it notices the job's end
when the next message wakes it. Neither the next append nor an ack the worker could not
send (the link busy) may wait for a tick or a heartbeat. Three nodes in one trio program,
on loopback."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from raftsql.raft.messages import Message
from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(90)

TICK = 0.2  # long ticks: an ack left for the next tick or heartbeat would show plainly


@pytest.mark.parametrize("link", ["idle", "busy"])
async def test_a_followers_next_append_and_its_ack_wait_for_no_tick(
    tmp_path: Path, link: str
) -> None:
    async with three_nodes(tmp_path, tick_seconds=TICK, election_ticks=10) as ns:
        leader = await wait_leader(ns)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        refused: list[int] = []
        for follower in (n for n in ns if n is not leader and link == "busy"):

            def busy(messages: Sequence[Message], *_: object) -> bool:
                refused.append(len(messages))
                return False  # as if older messages were still queued: the loop sends

            follower.links[leader.config.id].send_from_thread = busy  # type: ignore[method-assign]
        writes = 10
        started = time.monotonic()
        for x in range(writes):
            with trio.fail_after(10):
                await leader.write([("INSERT INTO t VALUES (?)", (x,))])
        took = time.monotonic() - started
        if link == "busy":
            assert len(refused) >= writes  # every ack went through the loop
        # waiting for a tick or a heartbeat would cost ~TICK/2 a write (~1 s in all)
        assert took < writes * TICK / 4, f"{writes} writes took {took:.2f}s"
        rows = await leader.read("SELECT count(*) FROM t")
        assert rows.rows == [(writes,)]
