"""``Config.quorum_first``: new entries go at once only to the followers a quorum needs;
the spares get them at the next tick, or at once when they ask to read or are to lead.

Commitment is unchanged (a majority on disk); what these show is who is sent what and
when, and that a spare never holds up a read, a transfer or a commit for long."""

from __future__ import annotations

import pytest

from raftsql.raft import Role
from raftsql.raft.messages import AppendEntries
from tests.unit.raft_harness import Cluster

pytestmark = pytest.mark.timeout(30)


def settled(n: int, **config: object) -> Cluster:
    """Node 1 leads ``n`` nodes, every follower has its no-op and knows it committed."""
    c = Cluster(n, heartbeat_ticks=2, **config)  # type: ignore[arg-type]
    c.elect(1)
    c.tick_all(2)
    assert all(c.core(i).commit == c.core(1).last_index for i in c.voters)
    return c


def appends_with_entries(c: Cluster) -> set[int]:
    return {m.to for m in c.queue if isinstance(m, AppendEntries) and m.entries}


@pytest.mark.parametrize(("n", "at_once"), [(3, {2}), (5, {2, 3})])
def test_new_entries_go_at_once_only_to_the_followers_a_quorum_needs(
    n: int, at_once: set[int]
) -> None:
    c = settled(n, quorum_first=True)
    index = c.propose(1, b"a")
    assert appends_with_entries(c) == at_once  # ties go to the lower ids
    c.deliver()
    assert c.core(1).commit == index  # committed by the leader and the quorum followers
    spares = set(c.voters) - at_once - {1}
    assert all(c.core(i).last_index < index for i in spares)
    c.tick(1)  # not a heartbeat tick: the spares' catch-up alone
    assert appends_with_entries(c) == spares
    c.deliver()
    assert all(c.core(i).last_index == index for i in c.voters)


def test_without_it_every_follower_is_sent_new_entries_at_once() -> None:
    c = settled(3, quorum_first=False)
    c.propose(1, b"a")
    assert appends_with_entries(c) == {2, 3}


def test_an_idle_leader_has_nothing_to_do_on_a_tick_between_heartbeats() -> None:
    """The spares' catch-up on each tick costs nothing when they are not behind."""
    c = settled(3, quorum_first=True)
    c.tick(1, 2)  # a heartbeat tick
    c.deliver()
    c.core(1).tick()
    assert not c.core(1).has_ready()


def test_a_spare_takes_the_place_of_a_quorum_follower_that_stopped_answering() -> None:
    c = settled(3, quorum_first=True)
    c.crash(2)
    index = c.propose(1, b"a")
    c.deliver()
    assert c.core(1).commit < index  # its append went to node 2 alone, which is down
    c.tick(1)  # the spare is sent what it lacks, acks, and the write commits
    c.deliver()
    assert c.core(1).commit == index
    # node 3 is now ahead of node 2: the next write goes to it at once and commits
    index = c.propose(1, b"b")
    assert appends_with_entries(c) == {3}
    c.deliver()
    assert c.core(1).commit == index


def test_a_spare_asking_for_a_read_index_is_sent_the_entries_with_it() -> None:
    """Its read needs it to apply up to the read index: no waiting for the next tick."""
    c = settled(3, quorum_first=True)
    index = c.propose(1, b"a")
    c.deliver()
    assert c.core(3).last_index < index
    c.core(3).read_index(b"ctx")
    c.pump(3)
    c.deliver()  # no tick anywhere
    read = c.nodes[3].read_states
    assert [(r.ctx, r.index) for r in read] == [(b"ctx", index)]
    assert c.core(3).commit >= index and b"a" in c.nodes[3].applied_data


def test_a_spare_that_is_to_lead_is_caught_up_at_once() -> None:
    c = settled(3, quorum_first=True)
    index = c.propose(1, b"a")
    c.deliver()
    assert c.core(3).last_index < index
    c.core(1).transfer_leader(3)
    c.pump(1)
    c.deliver()  # no tick: caught up, told to campaign, elected
    assert c.core(3).role is Role.LEADER
    assert c.core(3).log.term_at(index) is not None


def test_after_the_leader_dies_a_follower_asked_by_a_spare_campaigns_at_once() -> None:
    """The spare (a tick behind) cannot win an election; the quorum follower can. When
    the spare's timer fires first, its PreVote tells the quorum follower, out of touch
    with the leader for an election timeout too, to campaign now rather than wait for
    its own timer (failover would otherwise take the quorum follower's timeout alone,
    not the earlier of the two)."""
    c = settled(3, quorum_first=True)
    c.propose(1, b"a")
    c.deliver()  # node 2 has it, the spare node 3 not yet
    c.crash(1)
    timeout = c.core(2).config.election_ticks
    c.core(2)._randomized_timeout = 2 * timeout  # its own timer fires late
    c.core(3)._randomized_timeout = timeout + 1
    c.tick(2, timeout)  # out of touch with the leader for a whole election timeout
    assert c.core(2).role is Role.FOLLOWER
    c.tick(3, timeout + 1)  # the spare campaigns first: a PreVote node 2 refuses
    c.deliver()
    assert c.core(2).role is Role.LEADER
    assert c.core(2).log.term_at(c.core(2).commit) == c.core(2).term


def test_a_spare_far_behind_is_sent_more_as_its_acks_free_the_window() -> None:
    """Not a window a tick: once a tick's send fills the spare's in-flight window with
    entries left over, its acks bring the rest at once, as for a quorum follower."""
    c = settled(3, quorum_first=True, max_msg_bytes=1, max_inflight=2)
    c.crash(3)
    for k in range(6):
        c.propose(1, b"%d" % k)
    c.deliver()
    c.restart(3)
    c.tick(1)  # between heartbeats: the spare's catch-up alone
    assert len([m for m in c.queue if isinstance(m, AppendEntries) and m.to == 3]) == 2
    c.deliver()  # no more ticks
    assert c.core(3).last_index == c.core(1).last_index
    # caught up, it is a spare again: the next entry waits for a tick
    c.propose(1, b"next")
    assert appends_with_entries(c) == {2}
