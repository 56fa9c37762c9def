"""Nothing on a write's path waits for a tick or a heartbeat: a follower's next append, an
ack its disk worker could not send itself (the link busy: the loop sends it), the leader's
commit, a node alone. Each would cost ~TICK/2 a write with long ticks. (Written for a
change that let persist jobs end without waking the loop, measured and not kept; they
guard whatever wakes the loop next.) Nodes in one trio program, on loopback."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from raftsql.cluster import free_ports
from raftsql.raft.messages import Message
from raftsql.server.config import NodeConfig
from raftsql.server.node import Node, open_node
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
        await _writes_wait_for_no_tick(leader)
        if link == "busy":
            assert len(refused) >= WRITES  # every ack went through the loop


async def test_a_lone_nodes_writes_wait_for_no_tick(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = NodeConfig(
        id=1, peers={1: ("127.0.0.1", port)}, data_dir=tmp_path / "solo", tick_seconds=TICK
    )
    async with open_node(config) as node:
        await wait_leader([node])
        await node.write([("CREATE TABLE t (x INTEGER)", ())])
        await _writes_wait_for_no_tick(node)


WRITES = 10


async def _writes_wait_for_no_tick(leader: Node) -> None:
    started = time.monotonic()
    for x in range(WRITES):
        with trio.fail_after(10):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
    took = time.monotonic() - started
    # waiting for a tick or a heartbeat would cost ~TICK/2 a write (~1 s in all)
    assert took < WRITES * TICK / 4, f"{WRITES} writes took {took:.2f}s"
    assert (await leader.read("SELECT count(*) FROM t")).rows == [(WRITES,)]
