"""ReadIndex (thesis §6.4), leadership transfer (§3.10) and chunked snapshots (§5)."""

from __future__ import annotations

import pytest

from raftsql.raft import NotLeader, ProposalDropped, Role
from raftsql.raft.messages import (
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
)
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


def test_reads_pending_when_their_leader_is_deposed_are_never_answered() -> None:
    """The read-index / leader-change race (etcd #21375): a leader starts a heartbeat
    round for its own read and for one a follower forwarded, then the leader of a newer
    term deposes it before the acknowledgements come back. Those acknowledgements (of
    the old term) must confirm nothing: no read state on the old leader, no
    ReadIndexResponse to the follower, not even once the old leader leads again (without
    leases here, so that it can win that election at once). Each side retries with a
    fresh context instead."""
    c = Cluster(3, check_quorum=False)
    c.elect(1)
    c.propose(1, b"a")
    c.deliver()
    old = c.core(1)
    old.read_index(b"on-leader")
    c.core(3).read_index(b"on-follower")
    (forwarded,) = [m for m in c.nodes[3].process() if isinstance(m, ReadIndexRequest)]
    old.step(forwarded)
    beats = [m for m in c.nodes[1].process() if isinstance(m, Heartbeat)]
    assert {m.to for m in beats} == {2, 3}, "the reads' heartbeat round went out"
    term = old.term
    # node 2 has won a newer term meanwhile (as after a partition): its first heartbeat
    # deposes node 1 at once
    old.step(Heartbeat(2, 1, term + 1))
    c.nodes[1].process()
    assert old.role is Role.FOLLOWER and old.term == term + 1 and old.leader_id == 2
    # the old round's acknowledgements arrive now
    acks = []
    for beat in beats:
        c.core(beat.to).step(beat)
        acks += [m for m in c.nodes[beat.to].process() if isinstance(m, HeartbeatResponse)]
    assert len(acks) == 2 and all(m.term == term for m in acks)
    out = []
    for ack in acks:
        old.step(ack)
        out += c.nodes[1].process()
    assert c.nodes[1].read_states == []
    assert not [m for m in out if isinstance(m, ReadIndexResponse)]
    assert c.nodes[3].read_states == []
    # node 1 leads again, in a newer term: its new heartbeat rounds must not confirm the
    # reads of its old leadership either
    c.elect(1)
    assert old.role is Role.LEADER and old.term > term + 1
    c.tick_all(3 * old.config.heartbeat_ticks)
    assert c.nodes[1].read_states == [] and c.nodes[3].read_states == []
    assert not [line for line in c.trace if line.startswith("1->3 ReadIndexResponse")]


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
