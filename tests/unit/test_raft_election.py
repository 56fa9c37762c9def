"""Leader election, message by message (Raft §5.2, §5.4.1; thesis §6.2, §9.6)."""

from __future__ import annotations

import random

import pytest

from raftsql.raft import Config, NotLeader, RaftCore, Role
from raftsql.raft.messages import RequestVote, RequestVoteResponse
from tests.unit.raft_harness import Cluster

pytestmark = pytest.mark.timeout(30)


def test_randomized_election_timeout_is_within_t_and_2t() -> None:
    seen = set()
    for seed in range(200):
        core = RaftCore(Config(1, frozenset({1, 2, 3}), election_ticks=10), random.Random(seed))
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) <= 20
    assert len(seen) > 5, "timeouts should actually be spread out"


def test_5_2_a_candidate_wins_with_a_majority_and_appends_a_noop() -> None:
    c = Cluster(3)
    c.elect(1)
    assert c.leader() == 1
    assert [c.core(i).term for i in (1, 2, 3)] == [1, 1, 1]
    # §8: the new leader's first entry is a no-op of its own term, and it commits
    assert c.core(1).last_index == 1 and c.core(1).commit == 1
    assert all(c.core(i).leader_id == 1 for i in (2, 3))


def test_5_2_vote_is_granted_only_after_it_is_durable() -> None:
    c = Cluster(3, pre_vote=False)
    core2 = c.core(2)
    core2.step(RequestVote(1, 2, 1, 0, 0))
    rd = core2.ready()
    assert not any(isinstance(m, RequestVoteResponse) for m in rd.messages)
    (resp,) = rd.messages_after_persist
    assert isinstance(resp, RequestVoteResponse) and resp.granted
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.hard_state.term == 1


def test_5_2_one_vote_per_term_survives_a_restart() -> None:
    c = Cluster(3, pre_vote=False)
    c.core(2).step(RequestVote(1, 2, 1, 0, 0))
    c.pump(2)
    c.queue.clear()
    c.crash(2)
    c.restart(2)
    assert c.core(2).vote == 1 and c.core(2).term == 1
    c.core(2).step(RequestVote(3, 2, 1, 0, 0))
    (resp,) = c.core(2).ready().messages_after_persist
    assert isinstance(resp, RequestVoteResponse) and not resp.granted


def test_5_4_1_a_candidate_with_a_stale_log_is_refused() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.propose(1, b"a")
    c.deliver()
    c.heal()
    # node 3 missed entry 2: its vote request (pre and real) must be refused by 1 and 2
    c.crash(1)
    core3 = c.core(3)
    core3.step(RequestVote(3, 3, 0, 0, 0))  # addressed to itself: ignored, harmless
    c.tick(3, 25)
    c.deliver()
    assert c.core(3).role is not Role.LEADER
    assert c.core(2).vote in (None, 1, 2)
    assert c.core(2).role is not Role.LEADER or c.core(2).term > 1


def test_9_6_prevote_keeps_a_rejoining_node_from_deposing_the_leader() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    for _ in range(50):  # node 3 times out again and again, alone
        c.tick(3)
        c.deliver()
        c.tick(1)
        c.tick(2)
        c.deliver()
    assert c.core(3).term == 1, "PreVote must not bump the term of an isolated node"
    c.heal()
    c.tick_all(3)
    assert c.leader() == 1 and c.core(1).term == 1


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    """The contrast that shows why PreVote matters (etcd #9333)."""
    c = Cluster(3, pre_vote=False, check_quorum=False)
    c.elect(1)
    c.isolate(3)
    c.tick(3, 45)
    c.deliver()
    assert c.core(3).term > 1


def test_6_2_check_quorum_leader_steps_down_when_it_hears_no_majority() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(1)
    c.tick(1, 2 * c.core(1).config.election_ticks + 1)
    assert c.core(1).role is Role.FOLLOWER
    with pytest.raises(NotLeader):
        c.core(1).propose(b"x")


def test_a_stale_leader_learns_the_new_term_and_steps_down() -> None:
    c = Cluster(3, check_quorum=False)
    c.elect(1)
    c.isolate(1)
    c.elect(2)
    assert c.core(2).role is Role.LEADER and c.core(2).term == 2
    c.heal()
    c.tick(1)  # old leader heartbeats with term 1
    c.deliver()
    assert c.core(1).role is Role.FOLLOWER and c.core(1).term == 2
    assert c.leader() == 2


def test_split_votes_resolve_into_one_leader() -> None:
    for seed in range(20):
        c = Cluster(5, seed=seed)
        c.tick_all(60)
        leaders = [i for i in c.voters if c.core(i).role is Role.LEADER]
        assert len(leaders) == 1, f"seed {seed}: leaders {leaders}"


def test_followers_refuse_proposals_and_name_the_leader() -> None:
    c = Cluster(3)
    c.elect(1)
    with pytest.raises(NotLeader) as err:
        c.core(2).propose(b"x")
    assert err.value.leader_id == 1
