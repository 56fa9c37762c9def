"""Static settings of one Raft node, and what a restarting node read back from disk."""

from __future__ import annotations

from dataclasses import dataclass, field

from raftsql.raft.messages import Entry, HardState, SnapshotMeta


@dataclass(frozen=True, slots=True)
class Config:
    """Timeouts are counted in ticks: the caller decides how long a tick is.

    ``election_ticks`` is T: a follower's election timeout is drawn from [T, 2T] so that
    split votes resolve. ``max_inflight`` bounds the AppendEntries (or snapshot chunks) in
    flight per follower (hashicorp/raft found small windows enough; etcd defaults to 256).
    ``max_uncommitted_bytes`` bounds the leader's uncommitted tail so a lost quorum turns
    into backpressure rather than unbounded memory.

    ``quorum_first``: the leader sends new entries at once only to the followers a quorum
    needs (the most caught-up ones in REPLICATE: one of two, two of four); the others, the
    spares, get them at the next tick, or at once when they ask for a read index or are
    the target of a leadership transfer. Commitment still needs a majority on disk, and a
    spare that overtakes a quorum follower (one that stopped answering) takes its place
    at that tick. Why: when the nodes share a machine's cores and disk (the local
    cluster), the spare's wake-up, append and fsync for every entry competed with the
    leader and the quorum follower for the same cores and flushes, for an ack the commit
    did not wait for: with it on, one writer measured 1.18-1.23x the writes a second
    (paired bursts, benchmarks/README.md, eleventh round). The cost:
    a spare lags up to a tick, and if a quorum follower stops answering, a commit can wait
    up to a tick for the spare.
    """

    id: int
    voters: frozenset[int]
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_msg_bytes: int = 1 << 20
    max_inflight: int = 8
    max_uncommitted_bytes: int = 64 << 20
    snapshot_chunk_bytes: int = 1 << 20
    quorum_first: bool = False


@dataclass(frozen=True, slots=True)
class Restored:
    """Durable state handed to a restarting node.

    ``entries`` are the stored log entries after ``snapshot.index`` (contiguous). ``applied``
    is how far the state machine got (at least ``snapshot.index``): raftsql keeps it in the
    SQLite file in the same transaction as the data, so it is exact.
    """

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta = field(default_factory=SnapshotMeta)
    entries: tuple[Entry, ...] = ()
    applied: int = 0
