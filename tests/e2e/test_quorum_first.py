"""Quorum-first replication on real nodes (loopback, fsync on, one trio program): the
spare follower lags by up to a tick, and still serves linearizable reads of every
acknowledged write at once; the status shows which follower is the spare; the node's
command line turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from raftsql.cli import build_parser
from raftsql.server.node import Node
from tests.e2e.in_process import some_nodes, three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)

TICK = 0.1  # long ticks, so the spare is visibly behind between them even on a slow run


def spares(leader: Node) -> list[int]:
    progress = leader.status()["progress"]
    return [int(pid) for pid, p in progress.items() if p["spare"]]


async def test_a_spare_lags_by_a_tick_yet_reads_every_acknowledged_write(tmp_path: Path) -> None:
    async with three_nodes(tmp_path, tick_seconds=TICK) as nodes:
        leader = await wait_leader(nodes)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        by_id = {n.config.id: n for n in nodes}
        (spare_id,) = spares(leader)
        spare = by_id[spare_id]
        behind = 0
        for x in range(20):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
            behind += spare.core.last_index < leader.core.last_index
            # linearizable on the spare: it is sent what it lacks with its read index
            result = await spare.read("SELECT count(*) FROM t")
            assert result.rows == [(x + 1,)]
        assert behind > 0, "the spare was never behind: nothing here was tested"
        # with no more writes it catches up by itself within a tick or two
        with trio.fail_after(10):
            while spare.core.last_index < leader.core.last_index:
                await trio.sleep(TICK / 4)
        stale = await spare.read("SELECT count(*) FROM t", consistency="stale")
        assert stale.rows == [(20,)]


async def test_five_nodes_have_two_spares_and_every_node_reads_every_write(
    tmp_path: Path,
) -> None:
    async with some_nodes(tmp_path, 5, tick_seconds=TICK) as nodes:
        leader = await wait_leader(nodes)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        assert len(spares(leader)) == 2  # two followers and the leader make three of five
        followers = [n for n in nodes if n is not leader]
        for x in range(12):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
            reader = followers[x % len(followers)]  # spares and quorum followers in turn
            result = await reader.read("SELECT count(*) FROM t")
            assert result.rows == [(x + 1,)]
        with trio.fail_after(10):
            while any(n.core.last_index < leader.core.last_index for n in nodes):
                await trio.sleep(TICK / 4)


async def test_with_it_off_no_follower_is_a_spare(tmp_path: Path) -> None:
    async with three_nodes(tmp_path, quorum_first=False) as nodes:
        leader = await wait_leader(nodes)
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        assert len(leader.status()["progress"]) == 2
        assert spares(leader) == []


def test_the_node_command_turns_it_off() -> None:
    args = ["node", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data-dir", "d"]
    assert build_parser().parse_args(args).quorum_first is True
    assert build_parser().parse_args([*args, "--no-quorum-first"]).quorum_first is False
