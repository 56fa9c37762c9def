"""Two of the peers' performance lessons, on the server: group commit (throughput is
fsync-bound without it: hashicorp/raft #578) and automatic compaction (unbounded log growth:
etcd PR #10167). Three nodes in one trio program, on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)


async def test_concurrent_writes_share_the_leaders_fsyncs(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as nodes:
        leader = await wait_leader(nodes)
        await leader.write([("CREATE TABLE t (k INTEGER)", ())])
        log = leader.storage.log
        real_sync = log.sync
        syncs = 0

        def counted() -> None:
            nonlocal syncs
            syncs += 1
            real_sync()

        log.sync = counted  # type: ignore[method-assign]
        writers = 40

        async def one(k: int) -> None:
            outcome = await leader.write(
                [("INSERT INTO t VALUES (?)", (k,))], session=b"w%d" % k, seq=1
            )
            assert outcome.unwrap()[0].rowcount == 1

        async with trio.open_nursery() as nursery:
            for k in range(writers):
                nursery.start_soon(one, k)
        assert (await leader.read("SELECT count(*) FROM t")).rows == [(writers,)]
        assert 1 <= syncs <= writers // 2, f"{syncs} fsyncs for {writers} concurrent writes"


async def test_the_log_is_compacted_behind_automatic_snapshots(tmp_path: Path) -> None:
    async with three_nodes(tmp_path, snapshot_every=30, snapshot_retain=5) as nodes:
        leader = await wait_leader(nodes)
        await leader.write([("CREATE TABLE t (k INTEGER)", ())])
        for k in range(150):
            await leader.write([("INSERT INTO t VALUES (?)", (k,))])
        # (a spare follower, sent entries once a tick, applies them in batches that may
        # cross two snapshot points at once: it takes fewer snapshots, later)
        with trio.fail_after(20):
            while not all(
                n.status()["snapshot_index"] >= 60
                and n.status()["first_index"] > 30
                and n.status()["counters"]["snapshots_taken"] >= 2
                for n in nodes
            ):
                await trio.sleep(0.02)
        for n in nodes:
            st = n.status()
            assert st["last_index"] - st["first_index"] < 60  # what is kept, not the history
            assert (await n.read("SELECT count(*), sum(k) FROM t")).rows == [(150, 11175)]
