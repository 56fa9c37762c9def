"""RaftCore variants with one rule broken each, to prove the simulator catches them.

A simulator that never fails proves nothing by itself: maybe its invariants are too weak or
its faults never open the window a bug needs. Each class below turns off exactly one rule
(through the hook the core keeps for it, or for the liveness bug by skipping the one
branch that applies the rule) and comes with the fault mix that opens that bug's window;
tests/sim/test_sim_broken.py asserts every one is caught within a bounded number of
seeds.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from raftsql.raft import RaftCore, Role
from raftsql.raft.messages import AppendEntriesResponse
from raftsql.raft.progress import Progress

from .simulator import Profile, ProfileFn, standard_profile


class CommitsOldTermByCounting(RaftCore):
    """Figure 8 of the Raft paper: counts replicas of a previous-term entry to commit it.
    A later leader whose last entry has a newer term can still win and overwrite it."""

    def _may_commit_at(self, index: int) -> bool:
        return True


class VotesWithoutUpToDateCheck(RaftCore):
    """Grants votes to candidates whose log is behind: a leader without committed
    entries gets elected and overwrites them (§5.4.1)."""

    def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
        return True


class VotesBeforePersisting(RaftCore):
    """Sends the vote before the vote is on disk: a crash in between, and the restarted
    node votes again, for someone else, in the same term (PySyncObj #84)."""

    def _vote_response_waits_for_persist(self) -> bool:
        return False


class ReadsBeforeNoopCommits(RaftCore):
    """Answers ReadIndex before its own term's no-op committed, with a commit index that
    may not yet cover what the previous leader committed and acknowledged."""

    def _read_index_ready(self) -> bool:
        return True


class ClaimsUnwrittenEntriesDurable(RaftCore):
    """On an early durability claim (``persisted``), counts its whole log toward the
    quorum, entries proposed after the Ready being written included: an entry commits
    with fewer durable copies than a quorum, followers apply it, and a crash of the leader
    lets it be overwritten (openraft #1802: a commit index advanced without a real
    quorum). What the leader itself applies still waits for its disk."""

    def persisted(self, index: int, term: int) -> None:
        super().persisted(index, term)
        if self.role is Role.LEADER and self.progress[self.id].maybe_update(self.log.last_index):
            self._maybe_commit()


class NeverBacksUpAfterRejection(RaftCore):
    """A liveness bug, not a safety one: when a follower rejects an append (its log lacks
    or conflicts with the entry before), the leader never moves back to find where the
    logs agree, so that follower stays behind for good. Nothing wrong is ever committed;
    what the simulator must notice is that writes stop reaching every node after healing
    (its liveness bounds, loosened for slow clocks and long tails, must still catch it)."""

    def _handle_append_response(self, m: AppendEntriesResponse, pr: Progress) -> None:
        if not m.success:
            return
        super()._handle_append_response(m, pr)


# --- the fault mixes that open each bug's window -------------------------------------------


def _churn(rng: random.Random) -> Profile:
    """Leaders come and go all the time: crashes with short downtimes, torn writes,
    partitions, and a write every tick so every leader leaves entries behind."""
    base = standard_profile(rng)
    return dataclasses.replace(
        base,
        fault_ticks=rng.randint(400, 800),
        crash=rng.choice((0.02, 0.04)),
        torn=0.5,
        downtime=(1, rng.choice((10, 30))),
        partition=rng.choice((0.01, 0.03)),
        partition_ticks=(5, 40),
        drop=rng.choice((0.0, 0.05)),
        write=1.0,
    )


def figure8_profile(rng: random.Random) -> Profile:
    """Figure 8 needs three leaders in quick succession, each crashing or cut off before
    its entries spread: elections without PreVote or leases and with short timeouts, many
    short crashes, lossy links and partitions. One entry per AppendEntries (one in flight)
    lets a new leader get an old-term entry onto a majority before its own no-op."""
    return dataclasses.replace(
        _churn(rng),
        nodes=3,
        slow=(),
        pre_vote=False,
        check_quorum=False,
        election_ticks=6,
        max_delay=2,
        drop=0.25,
        crash=0.08,
        downtime=(1, 5),
        partition=0.05,
        partition_ticks=(3, 20),
        max_msg_bytes=1,
        max_inflight=1,
    )


def stale_vote_profile(rng: random.Random) -> Profile:
    """Any history with crashes: a stale candidate wins quickly once voters skip the check."""
    return _churn(rng)


def vote_persist_profile(rng: random.Random) -> Profile:
    """Crash right while a granted vote is being persisted, come back fast, and let
    elections run often (no PreVote, short timeouts) so the node is asked again."""
    return dataclasses.replace(
        _churn(rng),
        vote_crash=0.5,
        downtime=(1, 3),
        pre_vote=False,
        check_quorum=False,
        election_ticks=rng.choice((4, 6)),
        max_delay=rng.randint(1, 3),
    )


def early_claim_profile(rng: random.Random) -> Profile:
    """Leaders whose Readys stay out across ticks (so that writes are proposed meanwhile)
    and who crash often, on 5 nodes (a quorum of 3 where one copy is imaginary)."""
    return dataclasses.replace(
        _churn(rng),
        nodes=5,
        leader_disk_lag=1.0,
        crash=rng.choice((0.04, 0.08)),
        downtime=(1, 10),
    )


def lagging_follower_profile(rng: random.Random) -> Profile:
    """Crashes with torn writes and partitions leave followers behind or diverged; slow
    clocks stay on (the liveness check must still fail for the right reason with them)."""
    return _churn(rng)


def stale_read_profile(rng: random.Random) -> Profile:
    """Many reads while leaders crash and move: a new leader learns the commit index only
    with its no-op, so its first reads are the stale ones; heartbeats every third tick
    leave followers' commit index behind the old leader's for longer."""
    return dataclasses.replace(
        _churn(rng),
        heartbeat_ticks=3,
        readers=4,
        read=0.8,
        transfer=0.02,
    )


@dataclass(frozen=True, slots=True)
class BrokenVariant:
    core: type[RaftCore]
    profile: ProfileFn
    invariants: tuple[str, ...]
    """Which invariant failures count as catching this bug."""
    check_votes: bool = True
    """False: without the direct one-vote-per-term check, so election safety must fail."""
    liveness: bool = False
    """True: run the liveness phase after the faults (a liveness bug is only seen there)."""


BROKEN: dict[str, BrokenVariant] = {
    "figure8": BrokenVariant(
        CommitsOldTermByCounting,
        figure8_profile,
        ("state-machine-safety", "acked-write-lost", "leader-completeness", "linearizable-read"),
    ),
    "no-up-to-date-check": BrokenVariant(
        VotesWithoutUpToDateCheck,
        stale_vote_profile,
        ("leader-completeness", "state-machine-safety", "acked-write-lost", "log-matching"),
    ),
    "vote-before-persist": BrokenVariant(
        VotesBeforePersisting, vote_persist_profile, ("one-vote-per-term",)
    ),
    "vote-before-persist-two-leaders": BrokenVariant(
        VotesBeforePersisting, vote_persist_profile, ("election-safety",), check_votes=False
    ),
    "early-claim-without-disk": BrokenVariant(
        ClaimsUnwrittenEntriesDurable,
        early_claim_profile,
        ("acked-write-lost", "state-machine-safety", "leader-completeness"),
    ),
    "read-before-noop": BrokenVariant(
        ReadsBeforeNoopCommits, stale_read_profile, ("linearizable-read",)
    ),
    "never-backs-up": BrokenVariant(
        NeverBacksUpAfterRejection, lagging_follower_profile, ("liveness",), liveness=True
    ),
}
