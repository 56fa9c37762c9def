"""ReadIndex (thesis §6.4), leadership transfer (§3.10) and chunked snapshots (§5)."""

from __future__ import annotations

import pytest

from raftsql.raft import NotLeader, ProposalDropped, Role
from raftsql.raft.messages import Heartbeat, InstallSnapshot, ReadState
from tests.unit.raft_harness import Cluster

pytestmark = pytest.mark.timeout(30)


def test_6_4_read_index_waits_for_the_leaders_noop() -> None:
    c = Cluster(3)
    c.elect(1)
    c.propose(1, b"a")
    c.deliver()
    # node 2 wins term 2, but its no-op's AppendEntries are lost: it cannot commit yet
    c.core(1).transfer_leader(2)
    c.pump(1)
    c.deliver(keep=lambda m: not (m.frm == 2 and type(m).__name__ == "AppendEntries"))
    core = c.core(2)
    assert core.role is Role.LEADER and core.commit < core.last_index
    core.read_index(b"r")
    c.pump(2)
    c.deliver()
    assert c.nodes[2].read_states == [], "a read before the no-op commits may be stale"
    c.tick_all(2)  # the no-op commits; the read is then confirmed by a heartbeat round
    assert c.nodes[2].read_states == [ReadState(b"r", 3)]


def test_6_4_many_reads_share_one_heartbeat_round() -> None:
    c = Cluster(3)
    c.elect(1)
    core = c.core(1)
    for k in range(10):
        core.read_index(b"r%d" % k)
    rd = core.ready()
    beats = [m for m in rd.messages if isinstance(m, Heartbeat)]
    assert len(beats) == 2 and {m.round for m in beats} == {1}
    core.advance(rd)
    c.queue.extend(rd.messages)
    c.deliver()
    assert [r.ctx for r in c.nodes[1].read_states] == [b"r%d" % k for k in range(10)]


def test_6_4_a_read_is_not_confirmed_without_a_majority() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(1)
    c.core(1).read_index(b"r")
    c.pump(1)
    c.deliver()
    assert c.nodes[1].read_states == []


def test_a_follower_gets_a_read_index_from_the_leader() -> None:
    c = Cluster(3)
    c.elect(1)
    c.propose(1, b"a")
    c.deliver()
    c.core(3).read_index(b"f")
    c.pump(3)
    c.deliver()
    assert c.nodes[3].read_states == [ReadState(b"f", 2)]


def test_a_read_with_no_known_leader_fails_fast() -> None:
    c = Cluster(3)
    with pytest.raises(NotLeader):
        c.core(1).read_index(b"x")


def test_3_10_leadership_transfer_catches_up_the_target_first() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    for k in range(5):
        c.propose(1, b"%d" % k)
    c.deliver()
    c.heal()
    c.core(1).transfer_leader(3)
    with pytest.raises(ProposalDropped):
        c.core(1).propose(b"during transfer")
    c.pump(1)
    c.tick_all(4)  # heartbeats notice the lost pipeline to node 3 and catch it up
    assert c.leader() == 3 and c.core(3).term == 2
    assert c.core(1).role is Role.FOLLOWER
    c.tick_all(2)
    assert c.nodes[3].applied_data == [b"%d" % k for k in range(5)]


def test_a_transfer_that_cannot_finish_is_abandoned() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.cut -= {(1, 2), (2, 1)}
    c.core(1).transfer_leader(3)
    c.tick_all(c.core(1).config.election_ticks + 1)
    assert c.core(1).role is Role.LEADER and c.core(1).lead_transferee is None
    c.propose(1, b"accepted again")


def _cluster_with_lagging_follower(chunk: int, max_inflight: int = 2) -> Cluster:
    c = Cluster(3, snapshot_chunk_bytes=chunk, max_inflight=max_inflight)
    c.elect(1)
    c.isolate(3)
    for k in range(30):
        c.propose(1, b"value-%02d" % k)
    c.deliver()
    c.tick_all(1)
    c.nodes[1].take_snapshot()
    c.heal()
    return c


def test_snapshot_is_streamed_in_chunks_to_a_follower_behind_the_log() -> None:
    c = _cluster_with_lagging_follower(chunk=64)
    c.trace.clear()
    c.tick_all(5)
    chunks = [t for t in c.trace if "1->3 InstallSnapshot" in t]
    assert len(chunks) > 3
    assert c.nodes[3].applied_data == c.nodes[1].applied_data
    assert c.core(3).snapshot_meta.index == c.core(1).snapshot_meta.index
    c.propose(1, b"after")
    c.deliver()
    c.tick_all(1)
    assert c.nodes[3].applied_data[-1] == b"after"


def test_snapshot_transfer_resumes_after_a_lost_chunk() -> None:
    c = _cluster_with_lagging_follower(chunk=64, max_inflight=4)
    lost = []

    def drop_second_chunk(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == 64 and not lost:
            lost.append(m)
            return False
        return True

    for _ in range(6):
        for i in (1, 2, 3):
            c.tick(i)
        c.deliver(keep=drop_second_chunk)
        if lost:
            break
    assert lost
    sent_before = [t for t in c.trace if "1->3 InstallSnapshot " in t]
    c.trace.clear()
    c.tick_all(6)
    resent = [t for t in c.trace if "InstallSnapshot" in t and "offset=0 " in t]
    assert not resent, "the transfer should resume at the lost chunk, not start over"
    assert c.nodes[3].applied_data == c.nodes[1].applied_data
    # every chunk of the window after the lost one is rejected; answering each rejection
    # with a new window would snowball (the storm the simulator found, seed 76)
    size = c.core(1).snapshot_meta.size
    chunks = sent_before + [t for t in c.trace if "1->3 InstallSnapshot " in t]
    assert len(chunks) <= 2 * (size // 64 + 1), f"{len(chunks)} chunks for {size} bytes"


def test_a_snapshot_stream_survives_one_compaction_and_restarts_after_two() -> None:
    c = _cluster_with_lagging_follower(chunk=16, max_inflight=1)
    first = c.core(1).snapshot_meta

    def stream_a_little() -> set[int]:
        c.trace.clear()
        for _ in range(3):
            for i in (1, 2, 3):
                c.tick(i)
            c.deliver(limit=6)
        return {int(t.split("snap=")[1].split("/")[0]) for t in c.trace if "InstallSnapshot " in t}

    assert stream_a_little() == {first.index}
    c.propose(1, b"more")
    c.deliver(keep=lambda m: m.to != 3 and m.frm != 3)
    c.nodes[1].take_snapshot()  # the stream in progress goes on with the first snapshot
    assert c.core(1).snapshot_meta.index > first.index
    assert stream_a_little() == {first.index}
    c.propose(1, b"even more")
    c.deliver(keep=lambda m: m.to != 3 and m.frm != 3)
    c.nodes[1].take_snapshot()  # now the first one is gone: start over with the newest
    newest = c.core(1).snapshot_meta
    assert stream_a_little() == {newest.index}
    c.tick_all(40)
    assert c.nodes[3].applied_data == c.nodes[1].applied_data


def test_restart_from_snapshot_and_log() -> None:
    c = _cluster_with_lagging_follower(chunk=1 << 20)
    c.tick_all(3)
    c.propose(1, b"tail")
    c.deliver()
    c.tick_all(1)
    c.crash(3)
    c.restart(3)
    assert c.core(3).snapshot_meta.index > 0
    c.tick_all(3)
    assert c.nodes[3].applied_data == c.nodes[1].applied_data
