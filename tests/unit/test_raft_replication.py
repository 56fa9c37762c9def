"""Log replication and commitment, message by message (Raft §5.3, §5.4.2, thesis §10.2)."""

from __future__ import annotations

import random

import pytest

from raftsql.raft import Config, ProposalDropped, RaftCore, Ready, Restored, Role
from raftsql.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    ReadIndexRequest,
    RequestVoteResponse,
)
from tests.unit.raft_harness import Cluster

pytestmark = pytest.mark.timeout(30)


def test_5_3_entries_replicate_and_apply_in_order_everywhere() -> None:
    c = Cluster(3)
    c.elect(1)
    for k in range(20):
        c.propose(1, b"%d" % k)
    c.deliver()
    c.tick_all(2)
    want = [b"%d" % k for k in range(20)]
    assert all(c.nodes[i].applied_data == want for i in (1, 2, 3))


def leader_with_a_write_out(data: bytes) -> tuple[RaftCore, Ready]:
    """Node 1 leads 3 nodes and has proposed ``data``: its Ready is out, not advanced."""
    c = Cluster(3)
    c.elect(1)
    core = c.core(1)
    core.propose(data)
    rd = core.ready()
    assert [e.data for e in rd.entries] == [data]
    return core, rd


def test_leader_sends_appends_before_its_own_fsync_but_counts_itself_only_after() -> None:
    """Thesis §10.2.1: the leader writes its log in parallel with replication."""
    core, rd = leader_with_a_write_out(b"a")
    assert any(isinstance(m, AppendEntries) and m.entries for m in rd.messages)
    # one follower acknowledges before the leader's own write completed: 1 of 3 durable
    core.step(AppendEntriesResponse(2, 1, 1, True, 2))
    assert core.commit == 1
    core.advance(rd)  # now the leader's own copy is durable: 2 of 3
    assert core.commit == 2


def test_a_leaders_fsync_told_early_counts_at_once_and_commits_with_the_next_ack() -> None:
    """``persisted``: the disk worker says the entries are durable before the loop can
    ``advance``. A follower's ack arriving in between now commits the write on the spot,
    ``take_committed`` hands it out once, and neither the next Ready nor ``advance``
    repeats it."""
    core, rd = leader_with_a_write_out(b"a")
    (entry,) = rd.entries
    core.persisted(entry.index, entry.term)
    assert core.commit == 1  # 1 of 3 durable: the leader's own copy alone commits nothing
    assert core.take_committed() == []
    core.step(AppendEntriesResponse(2, 1, entry.term, True, entry.index))
    assert core.commit == entry.index  # leader + follower 2, while the Ready is still out
    assert [e.data for e in core.take_committed()] == [b"a"]
    assert core.applied == entry.index
    assert core.take_committed() == []  # handed out once
    core.advance(rd)  # repeats the durability claim harmlessly
    assert core.commit == entry.index
    nxt = core.ready() if core.has_ready() else None
    assert nxt is None or not nxt.committed


def test_an_early_durability_claim_for_a_replaced_entry_counts_for_nothing() -> None:
    """Like ``advance``: the claim names the entry's term, and a log whose entry at that
    index has another term (truncated and rewritten meanwhile) is not made stable."""
    core, rd = leader_with_a_write_out(b"a")
    (entry,) = rd.entries
    core.persisted(entry.index, entry.term + 1)
    core.step(AppendEntriesResponse(2, 1, entry.term, True, entry.index))
    assert core.commit == 1
    assert core.take_committed() == []
    core.advance(rd)
    assert core.commit == entry.index


def test_a_leader_applies_only_what_is_on_its_own_disk_even_when_committed() -> None:
    """Both followers' acks commit the entry before the leader's fsync ends (a majority
    has it), but ``take_committed`` keeps it until the leader's own copy is durable:
    the leader's state machine, and a snapshot of it, never run ahead of its log."""
    core, rd = leader_with_a_write_out(b"a")
    (entry,) = rd.entries
    for follower in (2, 3):
        core.step(AppendEntriesResponse(follower, 1, entry.term, True, entry.index))
    assert core.commit == entry.index
    assert core.take_committed() == []
    core.persisted(entry.index, entry.term)
    assert [e.data for e in core.take_committed()] == [b"a"]


def test_take_committed_is_only_for_a_leader_with_a_ready_out() -> None:
    """No Ready out: what is committed comes in the next Ready, as always. A follower's
    committed entries always wait for ``advance`` (its apply follows its own ack)."""
    c = Cluster(3)
    c.elect(1)
    leader = c.core(1)
    leader.propose(b"x")
    assert leader.take_committed() == []  # nothing out
    c.pump(1)
    c.deliver()
    follower = c.core(2)
    follower.step(
        AppendEntries(
            1,
            2,
            leader.term,
            leader.log.last_index,
            leader.term,
            [Entry(leader.term, leader.log.last_index + 1, b"y")],
            leader.commit,
        )
    )
    rd = follower.ready()
    assert rd.entries and follower.take_committed() == []
    follower.advance(rd)


def test_proposals_made_while_a_write_is_persisted_share_the_next_one() -> None:
    """Group commit: what arrives while a Ready's entries are on their way to disk goes
    out in the next Ready, all in one append (one fsync), not one Ready each. And a second
    Ready cannot be taken before the first is advanced, so storage completions can never
    come back out of order (openraft PR #1964)."""
    core, rd = leader_with_a_write_out(b"first")
    for k in range(20):
        core.propose(b"%d" % k)
    assert not core.has_ready()  # nothing more until the disk is done
    with pytest.raises(RuntimeError, match="advance"):
        core.ready()
    core.advance(rd)
    nxt = core.ready()
    assert [e.data for e in nxt.entries] == [b"%d" % k for k in range(20)]
    new = [e.index for e in nxt.entries]
    for peer in (2, 3):  # and each follower gets them in one message
        (append,) = [m for m in nxt.messages if isinstance(m, AppendEntries) and m.to == peer]
        assert [e.index for e in append.entries] == new


def test_5_3_only_a_conflicting_suffix_is_truncated() -> None:
    c = Cluster(3)
    c.elect(1)
    for k in range(3):
        c.propose(1, b"%d" % k)
    c.deliver()
    follower = c.core(2)
    last = follower.last_index
    # a delayed duplicate of an early AppendEntries must not cut the log short
    old = AppendEntries(1, 2, 1, 1, 1, (Entry(1, 2, b"0"),), 1)
    follower.step(old)
    assert follower.last_index == last


def test_fast_backtracking_skips_a_whole_term_per_round_trip() -> None:
    c = Cluster(3, check_quorum=False)
    c.elect(1)
    c.crash(2)
    c.crash(3)
    for k in range(50):
        c.propose(1, b"lost%d" % k)  # never committed: only node 1 has them
    c.crash(1)
    c.restart(2)
    c.restart(3)
    c.elect(3)
    for k in range(50):
        c.propose(3, b"kept%d" % k)
    c.deliver()
    assert c.core(3).role is Role.LEADER and c.core(3).commit == 52
    # a new leader (node 2, term 3) starts out assuming node 1 is as long as its own log
    c.core(3).transfer_leader(2)
    c.pump(3)
    c.deliver()
    assert c.leader() == 2 and c.core(2).term == 3
    c.restart(1)
    # node 1 holds 50 entries of term 1 where the leader has 50 of term 2: one-by-one
    # backtracking would need 50 rejections, the term hints need one
    c.trace.clear()
    c.tick_all(4)
    rejects = [t for t in c.trace if "1->2 AppendEntriesResponse" in t and "success=False" in t]
    assert len(rejects) == 1, "\n".join(c.trace)
    assert c.core(1).last_index == c.core(2).last_index
    assert c.nodes[1].applied_data == c.nodes[2].applied_data


def test_5_4_2_figure_8_a_previous_term_entry_is_not_committed_by_counting() -> None:
    """Figure 8: S1 (term 4) gets its old term-2 entry onto a majority; it must not
    count that as committed, because S5 (whose log ends in term 3) could still win."""
    voters = frozenset(range(1, 6))
    log = (Entry(1, 1), Entry(2, 2, b"old"))
    leader = RaftCore(
        Config(1, voters, pre_vote=False, check_quorum=False),
        random.Random(0),
        Restored(HardState(term=3, vote=None, commit=1), entries=log, applied=1),
    )
    leader._campaign(transfer=False)
    for v in (2, 3):
        leader.step(RequestVoteResponse(v, 1, 4, True))
    assert leader.role is Role.LEADER and leader.term == 4
    rd = leader.ready()
    leader.advance(rd)  # the leader's no-op (index 3, term 4) is durable on the leader
    assert leader.term_at(3) == 4
    leader.step(AppendEntriesResponse(2, 1, 4, True, 2))
    leader.step(AppendEntriesResponse(3, 1, 4, True, 2))
    assert leader.commit == 1, "entry 2 (term 2) is on 3 of 5 nodes but must not commit yet"
    leader.step(AppendEntriesResponse(2, 1, 4, True, 3))
    assert leader.commit == 1
    leader.step(AppendEntriesResponse(3, 1, 4, True, 3))
    assert leader.commit == 3, "the no-op of term 4 commits, and entry 2 with it"


def test_pipelining_keeps_at_most_max_inflight_appends_per_follower() -> None:
    c = Cluster(3, max_inflight=3, max_msg_bytes=1)
    c.elect(1)
    core = c.core(1)
    for k in range(10):
        core.propose(b"%d" % k)
    rd = core.ready()
    to2 = [m for m in rd.messages if isinstance(m, AppendEntries) and m.to == 2]
    assert len(to2) == 3 and all(len(m.entries) == 1 for m in to2)
    core.advance(rd)


def test_uncommitted_tail_is_bounded() -> None:
    c = Cluster(3, max_uncommitted_bytes=1000)
    c.elect(1)
    c.isolate(1)
    with pytest.raises(ProposalDropped):
        for _ in range(100):
            c.propose(1, b"x" * 100)
    assert c.core(1).last_index < 20


def test_followers_learn_the_commit_index_from_the_next_heartbeat_not_an_extra_round() -> None:
    """Committing sends nothing by itself: a follower hears of the new commit index with
    the next append or heartbeat (one writer: no extra wake-apply-answer round per write
    competing with the leader for the CPU)."""
    c = Cluster(3)
    c.elect(1)
    c.tick(1, c.core(1).config.heartbeat_ticks)
    c.deliver()
    c.propose(1, b"a")
    c.deliver()
    assert [c.core(i).commit for i in (1, 2, 3)] == [2, 1, 1]
    c.propose(1, b"b")  # the next append carries commit 2
    c.deliver()
    assert [c.core(i).commit for i in (1, 2, 3)] == [3, 2, 2]
    c.tick(1, c.core(1).config.heartbeat_ticks)  # and the next heartbeat carries commit 3
    c.deliver()
    assert [c.core(i).commit for i in (1, 2, 3)] == [3, 3, 3]


def test_a_leader_heartbeats_while_its_own_write_is_being_persisted() -> None:
    """etcd #7312: a Ready out for a slow fsync must not hold back the heartbeats queued
    since; a follower's messages, though, wait for its Ready to be persisted."""
    c = Cluster(3)
    c.elect(1)
    leader = c.core(1)
    leader.propose(b"a")
    rd = leader.ready()  # out: its entry is being fsynced
    assert leader.take_messages() == []  # nothing queued since
    c.tick(1, leader.config.heartbeat_ticks)
    taken = leader.take_messages()
    assert sorted(m.to for m in taken) == [2, 3]
    assert all(m.term == leader.term for m in taken)
    assert leader.take_messages() == []  # taken once
    leader.advance(rd)
    assert not any(m in taken for m in leader.ready().messages)  # and not sent again

    c.deliver()
    follower = c.core(2)
    follower.read_index(b"ctx")  # queues a ReadIndexRequest to the leader
    out = follower.ready()
    assert [type(m).__name__ for m in out.messages] == ["ReadIndexRequest"]
    follower.read_index(b"ctx2")  # queued while that Ready is out
    assert follower.take_messages() == []  # a follower's wait for advance()
    follower.advance(out)
    assert [type(m).__name__ for m in follower.ready().messages] == ["ReadIndexRequest"]


def test_a_follower_answers_heartbeats_while_its_write_is_being_persisted() -> None:
    """etcd #7312, the follower's side: while a follower's Ready is out for a slow fsync
    (or waits behind a long checkpoint), its heartbeat answers must still leave, or a
    leader whose followers' disks are all busy hears from no quorum and steps down
    (CheckQuorum). Only answers in a term already on disk: a new term must be durable
    before anyone hears of it, and acks promise entries, so both wait for advance()."""
    c = Cluster(3)
    c.elect(1)
    leader, follower = c.core(1), c.core(2)
    term = leader.term
    leader.propose(b"a")
    # the follower got the append: its Ready (entry + ack) is out, being fsynced
    append = next(m for m in leader.ready().messages if m.to == 2)
    follower.step(append)
    out = follower.ready()
    assert any(isinstance(m, AppendEntriesResponse) for m in out.messages_after_persist)
    follower.step(Heartbeat(1, 2, term, commit=0, round=7))
    taken = follower.take_messages()
    assert taken == [HeartbeatResponse(2, 1, term, 7)]
    assert follower.take_messages() == []  # taken once
    follower.advance(out)
    rd = follower.ready()
    assert not any(isinstance(m, HeartbeatResponse) for m in rd.messages_after_persist)
    follower.advance(rd)  # (the answer taken above is not sent twice)

    # a heartbeat of a newer term: the follower's new term is not on disk yet
    follower.step(AppendEntries(1, 2, term, leader.log.last_index, term, (), 0))
    out = follower.ready()
    follower.step(Heartbeat(3, 2, term + 1, commit=0, round=1))
    assert follower.take_messages() == []
    follower.advance(out)
    rd = follower.ready()
    assert rd.hard_state is not None and rd.hard_state.term == term + 1
    assert HeartbeatResponse(2, 3, term + 1, 1) in rd.messages_after_persist


def test_a_ready_that_needs_no_disk_is_told_apart() -> None:
    """``has_light_ready``: the server handles such a Ready where it stepped the message
    (no hop to its persisting loop), so it must never be one that needs an fsync."""
    core, rd = leader_with_a_write_out(b"a")
    assert not core.has_light_ready()  # a Ready is out: nothing at all to take
    core.advance(rd)
    while core.has_ready():  # what advancing left
        core.advance(core.ready())
    core.step(AppendEntriesResponse(2, 1, 1, True, 2))  # the ack commits entry 2
    assert core.has_light_ready()
    light = core.ready()
    assert [e.index for e in light.committed] == [2] and not light.entries
    core.advance(light)
    core.propose(b"b")  # an entry to persist
    assert core.has_ready() and not core.has_light_ready()
    core.advance(core.ready())
    core.advance(core.ready())
    core.step(ReadIndexRequest(2, 1, core.term, ctx=b"r"))  # a follower's read needs a round
    assert core.has_ready() and not core.has_light_ready()  # shared with the next reads
    core.step(ReadIndexRequest(3, 1, core.term, ctx=b"s"))
    rd = core.ready()
    rounds = {m.round for m in rd.messages if isinstance(m, Heartbeat)}
    assert len(rounds) == 1, "both reads confirmed by one heartbeat round"
    core.advance(rd)
    core.step(Heartbeat(2, 1, 5, commit=0))  # a higher term: a new term to persist first
    assert core.role is Role.FOLLOWER and core.has_ready() and not core.has_light_ready()
