"""Deterministic simulation of a raftsql Raft cluster: one integer seed replays one whole run.

Why: Raft's bugs live in rare interleavings (a vote answered before it is on disk, a leader
that commits an old-term entry by counting replicas, a read served before a new leader knows
the commit index). A real cluster meets them once a month; a seeded simulation of the pure
core meets them in seconds, and the seed replays the failure exactly (FoundationDB's and
TigerBeetle's lesson).

Everything random comes from the seed. The network, the faults and the clients share one
``random.Random(seed)``; each incarnation of each node gets its own generator derived from
(seed, node, incarnation), handed to its ``RaftCore``, so a node's election timeouts do not
shift just because the network made one more decision. Sets of ints are the only sets
iterated, so iteration order cannot vary between runs either.

A run is a fault phase (lossy, reordering, duplicating network with partitions; crashes,
some in the middle of persisting a Ready; slow clocks; leader transfers; snapshots), then a
healing phase that checks liveness: a leader must appear and new writes must commit
everywhere within a bound. Invariants (see ``invariants.py``) are checked after every step.

Re-run one seed, with a longer trace:

    PYTHONPATH=. python -m tests.sim.simulator 1234 [--core figure8] [--trace 300]

or from Python: ``from tests.sim.simulator import run_seed; run_seed(1234)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import random
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from raftsql.raft import Config, NotLeader, ProposalDropped, RaftCore, RaftError, Restored, Role
from raftsql.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from raftsql.raft.ready import Ready

from .invariants import ContractViolation, Invariants, InvariantViolation

# === the knobs of one run ==================================================================


@dataclass(frozen=True, slots=True)
class Profile:
    """Every knob of a run. A profile function draws one from the seed, so the seed alone
    still names the whole run; tests for broken cores pass their own profile functions to
    aim the faults at the window each bug needs."""

    nodes: int = 3
    fault_ticks: int = 600
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_msg_bytes: int = 1 << 20
    max_inflight: int = 8
    max_uncommitted_bytes: int = 64 << 20
    """Small values bound the backlog a leader builds while it cannot commit, so the
    liveness phase measures recovery rather than the time to drain a huge queue."""
    chunk_bytes: int = 1 << 20
    quorum_first: bool = False
    """The leader sends new entries at once only to the followers a quorum needs."""
    # network
    max_delay: int = 2
    drop: float = 0.0
    duplicate: float = 0.0
    partition: float = 0.0
    """Chance per tick that a partition starts (when none is in force)."""
    partition_ticks: tuple[int, int] = (10, 60)
    # nodes
    crash: float = 0.0
    """Chance per tick that some node crashes."""
    torn: float = 0.0
    """Share of crashes that strike in the middle of handling a Ready."""
    vote_crash: float = 0.0
    """Chance to crash while a Ready that grants a vote is being persisted."""
    downtime: tuple[int, int] = (5, 40)
    slow: tuple[float, ...] = ()
    """Per node: chance to skip a tick (clock skew)."""
    defer_ready: float = 0.0
    """Chance that a node takes its next message before handling the Ready (batching)."""
    leader_disk_lag: float = 0.0
    """Chance that a leader's Ready with entries stays out for a while, as with the
    server's disk worker: its messages leave at once, its entries reach the disk at a
    later tick (reported with ``persisted``), acks are stepped meanwhile and what they
    commit is applied at once (``take_committed``), and ``advance`` comes later still."""
    # clients and operators
    write: float = 0.5
    readers: int = 2
    read: float = 0.3
    read_timeout: int = 30
    transfer: float = 0.0
    compact: float = 0.0
    retain: int = 3
    # the end of the run
    kill_leader_at_heal: bool = False
    """Crash the leader as the faults stop, so that the liveness phase always has to elect
    (without it, a leader that survived the faults often just carries on)."""

    def describe(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


def standard_profile(rng: random.Random) -> Profile:
    """The CI mix: every fault kind on, at rates that still let the cluster make progress
    most of the time (a run where nothing commits tests nothing)."""
    nodes = rng.choice((3, 5))
    election = rng.choice((8, 10, 12))
    msg_bytes = rng.choice((1, 256, 1024, 1 << 20))
    chunk = rng.choice((64, 512, 2048, 8192))
    return Profile(
        nodes=nodes,
        fault_ticks=rng.randint(250, 750),
        election_ticks=election,
        heartbeat_ticks=rng.choice((1, 2, 3)),
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        # Small messages and chunks exercise batching and resumable snapshot streams; with
        # the smallest sizes a full in-flight window keeps catching up reasonably fast
        # (the liveness bound also grows with what lagging followers must receive).
        max_msg_bytes=msg_bytes,
        max_inflight=8 if msg_bytes == 1 or chunk == 64 else rng.choice((2, 4, 8)),
        max_uncommitted_bytes=rng.choice((1024, 4096)),
        chunk_bytes=chunk,
        max_delay=rng.randint(0, 3),
        drop=rng.choice((0.0, 0.01, 0.05, 0.1)),
        duplicate=rng.choice((0.0, 0.01, 0.05)),
        partition=rng.choice((0.0, 0.005, 0.02)),
        partition_ticks=(5, rng.choice((30, 80))),
        crash=rng.choice((0.0, 0.005, 0.01, 0.03)),
        torn=rng.choice((0.0, 0.3, 0.7)),
        vote_crash=rng.choice((0.0, 0.0, 0.1)),
        downtime=(1, rng.choice((10, 40, 100))),
        slow=tuple(rng.choice((0.0, 0.0, 0.05, 0.2)) for _ in range(nodes)),
        defer_ready=rng.choice((0.0, 0.3)),
        leader_disk_lag=rng.choice((0.0, 0.3, 0.7)),
        write=rng.choice((0.2, 0.5, 1.0)),
        readers=rng.randint(1, 3),
        read=rng.choice((0.1, 0.3)),
        read_timeout=3 * election,
        transfer=rng.choice((0.0, 0.005, 0.02)),
        compact=rng.choice((0.01, 0.03, 0.1)),
        retain=rng.choice((0, 2, 10)),
        quorum_first=rng.random() < 0.5,  # drawn last: the draws above keep their seeds
    )


ProfileFn = Callable[[random.Random], Profile]


@dataclass(slots=True)
class SimStats:
    """What a run did: the tests sum these over a batch to prove the runs were not
    vacuous (writes acknowledged, reads served, snapshots installed, crashes survived)."""

    seed: int
    nodes: int = 0
    ticks: int = 0
    msgs_sent: int = 0
    msgs_dropped: int = 0
    msgs_duplicated: int = 0
    writes_proposed: int = 0
    writes_refused: int = 0
    writes_acked: int = 0
    reads_started: int = 0
    reads_served: int = 0
    reads_timed_out: int = 0
    leaders_elected: int = 0
    transfers_requested: int = 0
    timeout_now_delivered: int = 0
    crashes: int = 0
    mid_ready_crashes: int = 0
    """Crashes in the middle of handling a Ready (torn writes among them)."""
    restarts: int = 0
    partitions: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    early_commits: int = 0
    """Entries applied while their leader's Ready was still out (``leader_disk_lag``)."""
    ticks_to_elect: int | None = None
    """Ticks from healing until a stable leader (liveness phase)."""
    reelections_after_heal: int = 0
    """Stable leaders deposed after healing (only slow clocks may do that)."""


# === the trace =============================================================================


def describe(m: Message) -> str:
    """One readable line per message, for traces: ``n2 -> n3 AppendEntries(term=4 ...)``."""
    if isinstance(m, AppendEntries):
        span = f" [{m.entries[0].index}..{m.entries[-1].index}]" if m.entries else ""
        body = f"prev={m.prev_index}/{m.prev_term} n={len(m.entries)}{span} commit={m.commit}"
    elif isinstance(m, AppendEntriesResponse):
        if m.success:
            body = f"ok index={m.index}"
        else:
            body = f"reject index={m.index} hint={m.hint_index}/{m.hint_term}"
    elif isinstance(m, RequestVote):
        flags = (" pre" if m.pre else "") + (" transfer" if m.transfer else "")
        body = f"last={m.last_log_index}/{m.last_log_term}{flags}"
    elif isinstance(m, RequestVoteResponse):
        body = ("granted" if m.granted else "refused") + (" pre" if m.pre else "")
    elif isinstance(m, Heartbeat):
        body = f"commit={m.commit} round={m.round}"
    elif isinstance(m, HeartbeatResponse):
        body = f"round={m.round}"
    elif isinstance(m, InstallSnapshot):
        body = (
            f"snap={m.meta.index}/{m.meta.term} size={m.meta.size} off={m.offset} "
            f"len={m.length}{' done' if m.done else ''}"
        )
    elif isinstance(m, InstallSnapshotResponse):
        body = f"index={m.index} next={m.next_offset}{' done' if m.done else ''}" + (
            " rejected" if getattr(m, "rejected", False) else ""
        )
    elif isinstance(m, ReadIndexRequest):
        body = f"ctx={m.ctx!r}"
    elif isinstance(m, ReadIndexResponse):
        body = f"ctx={m.ctx!r} index={m.index}"
    elif isinstance(m, TimeoutNow):
        body = ""
    else:
        body = repr(m)
    sep = " " if body else ""
    return f"n{m.frm} -> n{m.to} {type(m).__name__}(term={m.term}{sep}{body})"


class Trace:
    """Ring buffer of the last events. Messages are stored as objects and formatted only
    when a run fails: formatting every delivery would cost more than simulating it."""

    def __init__(self, size: int) -> None:
        self.events: deque[tuple[int, str, object]] = deque(maxlen=max(1, size))

    def msg(self, t: int, m: Message) -> None:
        self.events.append((t, "msg", m))

    def drop(self, t: int, m: Message, why: str) -> None:
        self.events.append((t, why, m))

    def note(self, t: int, text: str) -> None:
        self.events.append((t, "note", text))

    def render(self) -> str:
        lines = []
        for t, kind, obj in self.events:
            if kind == "note":
                lines.append(f"t={t} {obj}")
            elif kind == "msg":
                assert isinstance(obj, Message)
                lines.append(f"t={t} {describe(obj)}")
            else:
                assert isinstance(obj, Message)
                lines.append(f"t={t} {describe(obj)}  [dropped: {kind}]")
        return "\n".join(lines)


# === the network ===========================================================================

STORM_LIMIT = 20_000
"""Deliveries in one tick that mean a feedback loop (each answer triggering more than one
message): a healthy 5-node cluster delivers well under a hundred per tick. The first core
had one, in its snapshot-chunk rejections, that doubled the traffic every tick."""


class Network:
    """Messages in flight, each with a delivery time. Random delays reorder them; drops,
    duplicates and cut links (one direction at a time, so partitions can be asymmetric)
    are decided by the shared generator. A cut is checked at delivery time, so a partition
    also catches messages already on the wire."""

    def __init__(self, rng: random.Random, profile: Profile, trace: Trace, stats: SimStats):
        self.rng = rng
        self.trace = trace
        self.stats = stats
        self.max_delay = profile.max_delay
        self.drop = profile.drop
        self.duplicate = profile.duplicate
        self.cut: set[tuple[int, int]] = set()
        self.queue: list[tuple[int, int, Message]] = []
        self._seq = 0

    def send(self, m: Message, now: int) -> None:
        rng = self.rng
        self.stats.msgs_sent += 1
        if self.drop and rng.random() < self.drop:
            self.stats.msgs_dropped += 1
            self.trace.drop(now, m, "lost")
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            self.stats.msgs_duplicated += 1
            copies = 2
        for _ in range(copies):
            delay = rng.randint(0, self.max_delay) if self.max_delay else 0
            heapq.heappush(self.queue, (now + delay, self._seq, m))
            self._seq += 1

    def due(self, now: int) -> Iterator[Message]:
        """Messages to deliver now, including ones sent with no delay while delivering."""
        q = self.queue
        budget = STORM_LIMIT
        while q and q[0][0] <= now:
            budget -= 1
            if budget == 0:
                raise InvariantViolation(
                    "message-storm", f"more than {STORM_LIMIT} deliveries in tick t={now}"
                )
            yield heapq.heappop(q)[2]


# === one node ==============================================================================

_ITEM = struct.Struct(">QQI")


def encode_item(index: int, term: int, data: bytes) -> bytes:
    """One applied write in the canonical snapshot encoding (index, term, length, data)."""
    return _ITEM.pack(index, term, len(data)) + data


def decode_blob(blob: bytes) -> Iterator[tuple[int, int, bytes]]:
    pos, end = 0, len(blob)
    while pos < end:
        index, term, n = _ITEM.unpack_from(blob, pos)
        pos += _ITEM.size
        yield index, term, blob[pos : pos + n]
        pos += n


class SimNode:
    """A RaftCore plus what a server keeps around it: durable state (hard state, snapshot
    meta + blob, log after the snapshot) that survives crashes, and volatile state (the
    state machine, snapshot staging, waiting reads and writes) that does not.

    The state machine is an append-only list of the applied writes, kept as a dict
    index -> (term, payload) for checks and as its canonical encoding, grown as entries
    apply, so that taking a snapshot is a single copy.
    """

    def __init__(self, config: Config, core_cls: type[RaftCore], seed: int) -> None:
        self.id = config.id
        self.config = config
        self.core_cls = core_cls
        self.seed = seed
        self.incarnation = 0
        # durable
        self.hard_state = HardState()
        self.snap_meta = SnapshotMeta()
        self.snap_blob = b""
        self.prev_snap_meta = SnapshotMeta()  # kept until the next snapshot, as the server's
        self.prev_snap_blob = b""  # SnapshotStore keeps two: streams of it may still run
        self.log: list[Entry] = []
        # volatile
        self.alive = True
        self.core = core_cls(config, self._rng(), None)
        self.restart_at = 0
        self.crash_stage: str | None = None
        self.crash_downtime = 0
        self._reset_volatile({}, bytearray(), 0)

    def _rng(self) -> random.Random:
        return random.Random(f"{self.seed}/{self.id}/{self.incarnation}")

    def _reset_volatile(
        self, sm: dict[int, tuple[int, bytes]], sm_bytes: bytearray, applied: int
    ) -> None:
        self.sm = sm
        self.sm_bytes = sm_bytes
        self.applied = applied
        self.staging: dict[SnapshotMeta, bytearray] = {}
        """One staging file per snapshot: chunks of a newer snapshot may arrive in the same
        Ready as the install of an older one."""
        self.pending_reads: list[tuple[int, bytes]] = []
        self.pending_writes: dict[int, tuple[int, bytes]] = {}
        self.out: Ready | None = None
        """A leader's Ready whose entries are being persisted (``leader_disk_lag``)."""
        self.out_durable = False
        self.heard_leader = (0, 0, 0)
        """(term, leader, time) of the last message received from a leader."""
        self.seen_term = self.core.term
        self.seen_commit = self.core.commit
        self.seen_applied = self.core.applied
        self.seen_role = self.core.role

    def restart(self) -> None:
        """Come back from disk: the core gets the durable state, the state machine is
        rebuilt from the snapshot blob, and the core re-delivers committed entries after
        the snapshot in later Readys."""
        self.incarnation += 1
        restored = Restored(
            self.hard_state, self.snap_meta, tuple(self.log), applied=self.snap_meta.index
        )
        self.core = self.core_cls(self.config, self._rng(), restored)
        self.alive = True
        blob = self.snap_blob
        sm = {index: (term, data) for index, term, data in decode_blob(blob)}
        self._reset_volatile(sm, bytearray(blob), self.snap_meta.index)

    def persist(self, entries: list[Entry], hard_state: HardState | None) -> None:
        """Write entries (truncating the stored log at the first one) and the hard state."""
        if entries:
            first = entries[0].index
            base = self.snap_meta.index
            if first <= base or first > base + len(self.log) + 1:
                raise ContractViolation(
                    f"n{self.id}: asked to persist entries from {first}, stored log is "
                    f"{base + 1}..{base + len(self.log)}"
                )
            del self.log[first - base - 1 :]
            self.log.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state

    def write_chunk(self, meta: SnapshotMeta, offset: int, data: bytes) -> None:
        if offset == 0:
            self.staging[meta] = bytearray()
        buf = self.staging.get(meta)
        if buf is None or offset != len(buf):
            raise ContractViolation(
                f"n{self.id}: chunk at {offset} of snapshot {meta.index}/{meta.term}, but its "
                f"staging file holds {None if buf is None else len(buf)} bytes"
            )
        buf += data

    def staged_blob(self, meta: SnapshotMeta) -> bytes:
        """Take the staged file of ``meta``, and forget the staging of older snapshots."""
        buf = self.staging.pop(meta, None)
        if buf is None and meta.size == 0:
            buf = bytearray()
        if buf is None or len(buf) != meta.size:
            raise ContractViolation(
                f"n{self.id}: install snapshot {meta} but its staging file holds "
                f"{None if buf is None else len(buf)} bytes"
            )
        for old in [m for m in self.staging if m.index <= meta.index]:
            del self.staging[old]
        return bytes(buf)


# === clients ===============================================================================


@dataclass(slots=True)
class ReadAttempt:
    """One try of a linearizable read; a retry is a new attempt with a fresh ctx and its
    own start time (reusing a ctx served stale reads in etcd #20418)."""

    ctx: bytes
    node: int
    start: int
    watermark: int
    deadline: int
    served: bool = False


@dataclass(slots=True)
class Clients:
    """Writers propose unique payloads to whoever is leader; readers keep one read attempt
    each in flight, retrying with a fresh ctx when one times out."""

    writes_on: bool = True
    next_write: int = 0
    next_read: int = 0
    reads: dict[bytes, ReadAttempt] = field(default_factory=dict)
    active: list[bytes | None] = field(default_factory=list)
    tracking: bool = False
    tracked: list[tuple[int, int, bytes]] = field(default_factory=list)
    """Writes accepted since the liveness phase found a stable leader: all must commit."""


# === the simulation ========================================================================

_MAX_REELECTIONS = 3
"""How many times a stable leader may be deposed after healing (slow clocks) before the
liveness check fails."""

_CRASH_STAGES = ("persist", "persist", "send", "apply")
"""Where a mid-Ready crash strikes: while persisting (torn write, twice as likely: it is
where the durability promises live), after persisting but before the acknowledgements
go out, or part-way through applying."""


class SimulationFailure(AssertionError):
    """A run broke an invariant (or the core raised): carries the seed and the trace."""

    def __init__(self, seed: int, invariant: str, message: str) -> None:
        super().__init__(message)
        self.seed = seed
        self.invariant = invariant


class Simulation:
    """One seeded run of a cluster. ``run()`` returns the stats or raises
    ``SimulationFailure`` naming the seed, the broken invariant and the last events."""

    def __init__(
        self,
        seed: int,
        *,
        core_cls: type[RaftCore] = RaftCore,
        profile: ProfileFn = standard_profile,
        trace: int = 60,
        liveness: bool = True,
        check_votes: bool = True,
    ) -> None:
        self.seed = seed
        self.core_cls = core_cls
        self.rng = random.Random(seed)
        self.profile = p = drawn_profile(seed, profile)
        self.trace = Trace(trace)
        self.stats = SimStats(seed=seed, nodes=p.nodes)
        self.inv = Invariants(check_votes=check_votes)
        self.liveness = liveness
        self.now = 0
        self.faults_on = True
        self.partition_until = 0
        self.net = Network(self.rng, p, self.trace, self.stats)
        voters = frozenset(range(1, p.nodes + 1))
        self.nodes: dict[int, SimNode] = {}
        for i in sorted(voters):
            cfg = Config(
                id=i,
                voters=voters,
                election_ticks=p.election_ticks,
                heartbeat_ticks=p.heartbeat_ticks,
                pre_vote=p.pre_vote,
                check_quorum=p.check_quorum,
                max_msg_bytes=p.max_msg_bytes,
                max_inflight=p.max_inflight,
                max_uncommitted_bytes=p.max_uncommitted_bytes,
                snapshot_chunk_bytes=p.chunk_bytes,
                quorum_first=p.quorum_first,
            )
            self.nodes[i] = SimNode(cfg, core_cls, seed)
        self.slow = {i: (p.slow[i - 1] if i - 1 < len(p.slow) else 0.0) for i in self.nodes}
        self.clients = Clients(active=[None] * p.readers)

    # --- driving --------------------------------------------------------------------------

    def run(self) -> SimStats:
        try:
            for _ in range(self.profile.fault_ticks):
                self._tick()
            if self.liveness:
                self._heal_and_check_liveness()
            self._final_checks()
        except Exception as e:
            raise self._failure(e) from e
        self.stats.ticks = self.now
        return self.stats

    def _failure(self, e: Exception) -> SimulationFailure:
        if isinstance(e, InvariantViolation):
            invariant = e.invariant
        elif isinstance(e, ContractViolation):
            invariant = "contract"
        else:
            invariant = f"exception {type(e).__name__}"
        core = "" if self.core_cls is RaftCore else f" core={self.core_cls.__name__}"
        flags = (f" --core {self.core_cls.__name__}" if core else "") + (
            "" if self.inv.check_votes else " --no-vote-check"
        )
        if self.profile.kill_leader_at_heal:
            flags += " --liveness-profile"
        msg = (
            f"simulation seed {self.seed}{core} failed at t={self.now}: {e}\n"
            f"re-run: PYTHONPATH=. python -m tests.sim.simulator {self.seed} --trace 300{flags}"
            f"  (or run_seed({self.seed}, ...))\n"
            f"profile: {self.profile.describe()}\n"
            f"last {len(self.trace.events)} events:\n{self.trace.render()}"
        )
        return SimulationFailure(self.seed, invariant, msg)

    def _tick(self) -> None:
        self.now += 1
        self._faults()
        for m in self.net.due(self.now):
            self._deliver(m)
        order = list(self.nodes.values())
        self.rng.shuffle(order)
        for node in order:
            if not node.alive:
                continue
            slow = self.slow[node.id]
            if slow and self.rng.random() < slow:
                continue
            node.core.tick()
            self._observe(node)
            if node.out is not None:
                self._progress_out(node)
            self._drain(node)
        for node in order:
            self._drain(node)  # whatever a deferred message left behind
        self._clients()

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or not node.alive:
            self.trace.drop(self.now, m, "receiver down")
            return
        if (m.frm, m.to) in self.net.cut:
            self.trace.drop(self.now, m, "partition")
            return
        self.trace.msg(self.now, m)
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            node.heard_leader = (m.term, m.frm, self.now)
        elif isinstance(m, TimeoutNow):
            self.stats.timeout_now_delivered += 1
        node.core.step(m)
        self._observe(node)
        if node.out is not None:
            self._take_committed(node)
        defer = self.profile.defer_ready
        if not defer or self.rng.random() >= defer:
            self._drain(node)

    def _observe(self, node: SimNode) -> None:
        """After every input to a node: monotonicity, and election checks on a new leader."""
        core = node.core
        term, commit, applied, role = core.term, core.commit, core.applied, core.role
        if term < node.seen_term or commit < node.seen_commit or applied < node.seen_applied:
            raise InvariantViolation(
                "monotonic",
                f"n{node.id} went from term/commit/applied {node.seen_term}/{node.seen_commit}/"
                f"{node.seen_applied} to {term}/{commit}/{applied}",
            )
        if role is not node.seen_role or term != node.seen_term:
            if role is Role.LEADER:
                self.stats.leaders_elected += 1
                self.inv.leader_elected(node.id, term)
                self.inv.leader_completeness(
                    node.id, term, core.snapshot_meta, core.term_at(self.inv.max_applied)
                )
            if role is not node.seen_role:
                self.trace.note(self.now, f"n{node.id} becomes {role.name} term {term}")
        node.seen_term, node.seen_commit, node.seen_applied, node.seen_role = (
            term,
            commit,
            applied,
            role,
        )

    # --- handling a Ready, in ready.py's order, with crashes in the middle -----------------

    def _drain(self, node: SimNode) -> None:
        while node.alive and node.core.has_ready():
            self._handle_ready(node, node.core.ready())

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        stage = node.crash_stage
        if (
            stage is None
            and self.profile.vote_crash
            and self.faults_on
            and _grants_vote(rd)
            and self.rng.random() < self.profile.vote_crash
        ):
            stage = "persist"
            node.crash_downtime = self.rng.randint(*self.profile.downtime)
        if rd.entries:
            self._check_new_entries(node, rd.entries)
        for m in rd.messages:
            self._send(node, m)
        if (
            stage is None
            and core.role is Role.LEADER
            and rd.entries
            and rd.snapshot is None
            and not rd.snapshot_chunks
            and (not rd.committed or rd.committed[-1].index < rd.entries[0].index)
            and self.rng.random() < self.profile.leader_disk_lag
        ):
            # like the server: entries committed before go to apply while the new ones
            # are written, and the Ready stays out until the disk is done (``advance``
            # then counts them applied, as the server's does)
            for e in rd.committed:
                self._apply(node, e)
            node.out, node.out_durable = rd, False
            self._observe(node)
            return
        if stage == "persist":
            # Torn write: the snapshot may or may not have been installed, a prefix of the
            # entries reached the disk, the hard state (written last) did not.
            installed = rd.snapshot is None or self.rng.random() < 0.5
            if rd.snapshot is not None and installed:
                self._install_snapshot(node, rd)
            k = self.rng.randint(0, len(rd.entries)) if installed else 0
            node.persist(rd.entries[:k], None)
            self._crash(node, f"torn write ({k}/{len(rd.entries)} entries, no hard state)")
            return
        self._install_snapshot(node, rd)
        if rd.hard_state is not None:
            self.inv.hard_state_persisted(node.id, node.hard_state, rd.hard_state)
        node.persist(rd.entries, rd.hard_state)
        if stage == "send":
            self._crash(node, "after persisting, before sending acknowledgements")
            return
        for m in rd.messages_after_persist:
            self._send(node, m)
        if stage == "apply":
            k = self.rng.randint(0, len(rd.committed))
            for e in rd.committed[:k]:
                self._apply(node, e)
            self._crash(node, f"while applying ({k}/{len(rd.committed)} applied)")
            return
        for e in rd.committed:
            self._apply(node, e)
        self._take_read_states(node, rd)
        core.advance(rd)
        self._observe(node)

    def _take_read_states(self, node: SimNode, rd: Ready) -> None:
        for rs in rd.read_states:
            attempt = self.clients.reads.get(rs.ctx)
            if attempt is None or attempt.node != node.id:
                raise ContractViolation(f"n{node.id} got a ReadState for unknown ctx {rs.ctx!r}")
            node.pending_reads.append((rs.index, rs.ctx))
        if node.pending_reads:
            self._serve_reads(node)

    def _progress_out(self, node: SimNode) -> None:
        """A tick of a node whose Ready is out: what the server's ticker sends meanwhile
        (``take_messages``), then maybe the disk finishes (``persisted``), then maybe the
        loop gets to ``advance``."""
        core = node.core
        for m in core.take_messages():
            self._send(node, m)
        rd = node.out
        assert rd is not None
        if not node.out_durable:
            if self.rng.random() < 0.1:
                return
            if rd.hard_state is not None:
                self.inv.hard_state_persisted(node.id, node.hard_state, rd.hard_state)
            node.persist(rd.entries, rd.hard_state)
            node.out_durable = True
            last = rd.entries[-1]
            core.persisted(last.index, last.term)
            self._observe(node)
            self._take_committed(node)
            if self.rng.random() < 0.5:
                return
        elif self.rng.random() < 0.2:
            return
        node.out = None
        for m in rd.messages_after_persist:
            self._send(node, m)
        self._take_read_states(node, rd)
        core.advance(rd)
        self._observe(node)

    def _take_committed(self, node: SimNode) -> None:
        taken = node.core.take_committed()
        for e in taken:
            self._apply(node, e)
        if taken:
            self.stats.early_commits += 1
            self._observe(node)
            if node.pending_reads:
                self._serve_reads(node)

    def _check_new_entries(self, node: SimNode, entries: list[Entry]) -> None:
        first = entries[0].index
        prev_term = node.core.term_at(first - 1)
        for e in entries:
            if e.index != first:
                raise ContractViolation(f"n{node.id}: Ready entries not contiguous at {e.index}")
            self.inv.entry_in_log(node.id, e, prev_term)
            prev_term = e.term
            first += 1

    def _send(self, node: SimNode, m: Message) -> None:
        if isinstance(m, InstallSnapshot):
            if m.meta == node.snap_meta:
                blob = node.snap_blob
            elif m.meta == node.prev_snap_meta:
                blob = node.prev_snap_blob  # the core may finish streaming the previous one
            else:
                raise ContractViolation(
                    f"n{node.id} sends chunks of snapshot {m.meta}, its stored ones are "
                    f"{node.snap_meta} and {node.prev_snap_meta}"
                )
            m = dataclasses.replace(m, data=blob[m.offset : m.offset + m.length])
        elif isinstance(m, RequestVoteResponse) and m.granted and not m.pre:
            self.inv.vote_granted(m.frm, m.term, m.to)
        self.net.send(m, self.now)

    def _install_snapshot(self, node: SimNode, rd: Ready) -> None:
        for chunk in rd.snapshot_chunks:
            node.write_chunk(chunk.meta, chunk.offset, chunk.data)
        meta = rd.snapshot
        if meta is None:
            return
        if meta.index < node.applied:
            raise InvariantViolation(
                "monotonic",
                f"n{node.id} installs snapshot {meta.index}/{meta.term} over applied "
                f"{node.applied}",
            )
        blob = node.staged_blob(meta)
        items = list(decode_blob(blob))
        self.inv.snapshot_contents(node.id, meta, items)
        node.prev_snap_meta, node.prev_snap_blob = node.snap_meta, node.snap_blob
        node.snap_meta, node.snap_blob, node.log = meta, blob, []
        node.sm = {index: (term, data) for index, term, data in items}
        node.sm_bytes = bytearray(blob)
        node.applied = meta.index
        node.pending_writes.clear()  # their fate is unknown to the proposer: not acked
        self.stats.snapshots_installed += 1
        self.trace.note(self.now, f"n{node.id} installs snapshot {meta.index}/{meta.term}")

    def _apply(self, node: SimNode, e: Entry) -> None:
        if e.index != node.applied + 1:
            raise ContractViolation(f"n{node.id} applied {node.applied}, next committed {e.index}")
        self.inv.entry_applied(node.id, e)
        node.applied = e.index
        if e.kind is EntryKind.NORMAL:
            node.sm[e.index] = (e.term, e.data)
            node.sm_bytes += encode_item(e.index, e.term, e.data)
        pending = node.pending_writes.pop(e.index, None)
        if pending is not None and pending == (e.term, e.data):
            self.inv.acknowledge(e.index, e.term, e.data)
            self.stats.writes_acked += 1

    def _serve_reads(self, node: SimNode) -> None:
        waiting = []
        for index, ctx in node.pending_reads:
            if index > node.applied:
                waiting.append((index, ctx))
                continue
            attempt = self.clients.reads[ctx]
            self.inv.read_served(node.id, ctx, node.applied, index, attempt.watermark)
            if not attempt.served:
                attempt.served = True
                self.stats.reads_served += 1
                self.trace.note(
                    self.now,
                    f"n{node.id} serves read {ctx!r} at applied {node.applied} "
                    f"(read index {index}, began t={attempt.start})",
                )
        node.pending_reads = waiting

    # --- faults ---------------------------------------------------------------------------

    def _crash(self, node: SimNode, how: str) -> None:
        node.alive = False
        node.restart_at = self.now + (node.crash_downtime or 1)
        node.crash_stage = None
        self.stats.crashes += 1
        if how != "crash":
            self.stats.mid_ready_crashes += 1
        self.trace.note(self.now, f"crash n{node.id}: {how} (back at t={node.restart_at})")

    def _faults(self) -> None:
        p, rng = self.profile, self.rng
        for node in self.nodes.values():
            if not node.alive and self.now >= node.restart_at:
                node.restart()
                self.stats.restarts += 1
                hs = node.hard_state
                self.trace.note(
                    self.now,
                    f"restart n{node.id}: term={hs.term} vote={hs.vote} commit={hs.commit} "
                    f"snapshot={node.snap_meta.index}/{node.snap_meta.term} "
                    f"log={node.snap_meta.index + 1}..{node.snap_meta.index + len(node.log)}",
                )
                self._observe(node)
        if self.faults_on:
            if p.crash and rng.random() < p.crash:
                self._crash_someone()
            if self.partition_until:
                if self.now >= self.partition_until:
                    self.partition_until = 0
                    self.net.cut = set()
                    self.trace.note(self.now, "partition healed")
            elif p.partition and rng.random() < p.partition:
                self._partition()
            if p.transfer and rng.random() < p.transfer:
                self._transfer()
        if p.compact and rng.random() < p.compact:
            self._compact()

    def _live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def _leaders(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive and n.core.role is Role.LEADER]

    def _crash_someone(self) -> None:
        p, rng = self.profile, self.rng
        live = [n for n in self._live() if n.crash_stage is None]
        if not live:
            return
        leaders = [n for n in live if n.core.role is Role.LEADER]
        node = rng.choice(leaders) if leaders and rng.random() < 0.5 else rng.choice(live)
        node.crash_downtime = rng.randint(*p.downtime)
        if rng.random() < p.torn:
            node.crash_stage = rng.choice(_CRASH_STAGES)
        else:
            self._crash(node, "crash")

    def _partition(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        kind = rng.choice(("split", "isolate", "oneway", "bridge", "links"))
        cut: set[tuple[int, int]] = set()
        shuffled = ids[:]
        rng.shuffle(shuffled)
        if kind == "isolate":
            leaders = self._leaders()
            lone = rng.choice(leaders).id if leaders else shuffled[0]
            cut = {(a, b) for a in ids for b in ids if a != b and lone in (a, b)}
        elif kind == "links":
            cut = {(a, b) for a in ids for b in ids if a != b and rng.random() < 0.3}
        else:
            k = rng.randint(1, len(ids) - 1)
            side_a, side_b = shuffled[:k], shuffled[k:]
            if kind == "bridge" and len(side_b) > 1:
                side_b = side_b[1:]  # shuffled[k] hears and reaches both sides
            cut = {(a, b) for a in side_a for b in side_b}
            if kind != "oneway":
                cut |= {(b, a) for a in side_a for b in side_b}
        self.net.cut = cut
        self.partition_until = self.now + rng.randint(*self.profile.partition_ticks)
        self.stats.partitions += 1
        links = " ".join(f"{a}->{b}" for a, b in sorted(cut))
        self.trace.note(self.now, f"partition ({kind}) until t={self.partition_until}: {links}")

    def _transfer(self) -> None:
        leaders = self._leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        target = self.rng.choice([i for i in sorted(self.nodes) if i != node.id])
        try:
            node.core.transfer_leader(target)
        except RaftError:
            return
        self.stats.transfers_requested += 1
        self.trace.note(self.now, f"n{node.id} asked to transfer leadership to n{target}")
        self._observe(node)
        self._drain(node)

    def _compact(self) -> None:
        """Take a snapshot at the applied index, as the server does every so often."""
        live = self._live()
        if not live:
            return
        node = self.rng.choice(live)
        if node.applied <= node.snap_meta.index:
            return
        if node.applied != node.core.applied:
            raise ContractViolation(
                f"n{node.id} applied {node.applied} but the core thinks {node.core.applied}"
            )
        blob = bytes(node.sm_bytes)
        retain = self.rng.randint(0, self.profile.retain)
        meta = node.core.compact(node.applied, len(blob), retain=retain)
        if meta.index != node.applied or meta.size != len(blob):
            raise ContractViolation(f"n{node.id}: compact({node.applied}) returned {meta}")
        seen = self.inv.applied.get(meta.index)
        if seen is not None and seen[0] != meta.term:
            raise InvariantViolation(
                "state-machine-safety",
                f"n{node.id} snapshot {meta.index}/{meta.term} but {meta.index} applied "
                f"with term {seen[0]}",
            )
        del node.log[: meta.index - node.snap_meta.index]
        node.prev_snap_meta, node.prev_snap_blob = node.snap_meta, node.snap_blob
        node.snap_meta, node.snap_blob = meta, blob
        self.stats.snapshots_taken += 1
        self.trace.note(self.now, f"n{node.id} snapshot at {meta.index}/{meta.term} keep {retain}")
        self._observe(node)
        self._drain(node)

    # --- clients --------------------------------------------------------------------------

    def _clients(self) -> None:
        p, rng, c = self.profile, self.rng, self.clients
        if c.writes_on and rng.random() < p.write:
            self._write()
        for slot, ctx in enumerate(c.active):
            if ctx is not None:
                attempt = c.reads[ctx]
                if attempt.served:
                    c.active[slot] = None
                elif self.now > attempt.deadline:
                    c.active[slot] = None
                    self.stats.reads_timed_out += 1
                    self.trace.note(self.now, f"read {ctx!r} timed out")
            if c.active[slot] is None and rng.random() < p.read:
                c.active[slot] = self._read()

    def _write(self) -> bool:
        """Propose one unique payload, to a leader if there is one (mostly)."""
        live = self._live()
        if not live:
            return False
        leaders = [n for n in live if n.core.role is Role.LEADER]
        rng = self.rng
        node = rng.choice(leaders) if leaders and rng.random() < 0.95 else rng.choice(live)
        c = self.clients
        payload = b"w%d" % c.next_write
        c.next_write += 1
        try:
            index = node.core.propose(payload)
        except (NotLeader, ProposalDropped):
            self.stats.writes_refused += 1
            return False
        term = node.core.term
        if node.core.term_at(index) != term:
            raise ContractViolation(f"n{node.id}: propose returned {index}, not of term {term}")
        node.pending_writes[index] = (term, payload)
        self.stats.writes_proposed += 1
        if c.tracking:
            c.tracked.append((index, term, payload))
        self.trace.note(self.now, f"client -> n{node.id} propose {payload!r} = {index}/{term}")
        self._observe(node)
        self._drain(node)
        return True

    def _read(self) -> bytes | None:
        live = self._live()
        if not live:
            return None
        node = self.rng.choice(live)
        c = self.clients
        ctx = b"r%d" % c.next_read
        c.next_read += 1
        try:
            node.core.read_index(ctx)
        except NotLeader:
            return None
        c.reads[ctx] = ReadAttempt(
            ctx, node.id, self.now, self.inv.watermark, self.now + self.profile.read_timeout
        )
        self.stats.reads_started += 1
        self.trace.note(
            self.now, f"client -> n{node.id} read {ctx!r} (must see >= {self.inv.watermark})"
        )
        self._observe(node)
        self._drain(node)
        return ctx

    # --- liveness and the end -------------------------------------------------------------

    def _heal_and_check_liveness(self) -> None:
        """Heal everything, then require a stable leader within 20 election timeouts, and
        every write it accepts applied on every node within 20 more (plus, in each phase,
        the time the configured window needs to ship what lagging followers lack:
        liveness is about recovering, not about bandwidth). Snapshots go on being taken
        throughout.

        Slow clocks are not healed (they model a node's clock, not a fault that ends): a
        leader whose ticks are skipped may legitimately be deposed after it was stable,
        taking with it the writes that only it and part of a quorum had. With slow clocks
        in the profile a new term after stability restarts the check (at most
        ``_MAX_REELECTIONS`` times); without them nothing may depose a stable leader, so
        every write it accepted must commit whatever happens.
        """
        p = self.profile
        self.faults_on = False
        if p.kill_leader_at_heal:
            for node in self._leaders():
                self._crash(node, "crash")
        self.net.cut = set()
        self.partition_until = 0
        self.net.drop = 0.0
        for node in self.nodes.values():
            node.crash_stage = None
            if not node.alive:
                node.restart_at = self.now + 1
        self.trace.note(self.now, "healed: no more partitions, drops or crashes")
        healed = self.now
        slow_clocks = any(self.slow.values())
        for attempt in range(_MAX_REELECTIONS + 1):
            leader = self._elect_stable_leader()
            if attempt == 0:
                self.stats.ticks_to_elect = self.now - healed
            if self._commit_under(leader, give_up_on_new_term=slow_clocks):
                return
            if attempt == _MAX_REELECTIONS:
                raise InvariantViolation(
                    "liveness",
                    f"the stable leader was deposed {attempt + 1} times after healing "
                    f"(slow clocks), last n{leader.id} of term {leader.core.term} at "
                    f"t={self.now}",
                )
            self.stats.reelections_after_heal += 1
            self.trace.note(
                self.now, f"n{leader.id} deposed after healing (slow clocks): check again"
            )

    def _elect_stable_leader(self) -> SimNode:
        """Tick until there is a stable leader: within 20 election timeouts of now, plus
        the catch-up allowance of the first leader seen (a leader elected with a long
        uncommitted tail must ship it, at the profile's message size and window, before
        its no-op can commit)."""
        p = self.profile
        since = self.now
        bound = 20 * p.election_ticks
        allowed: SimNode | None = None
        while (leader := self._stable_leader(since)) is None:
            if allowed is None and len(leaders := self._leaders()) == 1:
                allowed = leaders[0]
                extra = self._catch_up_allowance(allowed)
                bound += extra
                self.trace.note(self.now, f"n{allowed.id} leads; election bound +{extra}")
            if self.now - since >= bound:
                raise InvariantViolation(
                    "liveness", f"no stable leader {bound} ticks after healing at t={since}"
                )
            self._tick()
        return leader

    def _commit_under(self, leader: SimNode, give_up_on_new_term: bool) -> bool:
        """Write through ``leader`` and require every write it accepted applied on every
        node within 20 election timeouts plus its catch-up allowance. With
        ``give_up_on_new_term``, False as soon as a newer term appears (an election
        began: the writes only the old leader had may be lost)."""
        p = self.profile
        c = self.clients
        c.tracking, c.writes_on, c.tracked = True, True, []
        stable = self.now
        term = leader.core.term
        bound = 20 * p.election_ticks + self._catch_up_allowance(leader)
        self.trace.note(self.now, f"n{leader.id} is the stable leader; commit bound {bound}")
        forced = 0
        try:
            while self.now - stable < 3 * p.election_ticks or forced < 3:
                if give_up_on_new_term and self._newer_term(term):
                    return False
                if self.now - stable >= bound:
                    raise InvariantViolation(
                        "liveness", f"the stable leader refused writes for {bound} ticks"
                    )
                if self.now - stable >= forced * p.election_ticks and self._write():
                    forced += 1
                self._tick()
            c.writes_on = False
            while not self._all_applied_everywhere(c.tracked):
                if give_up_on_new_term and self._newer_term(term):
                    return False
                if self.now - stable >= bound:
                    missing = [
                        (i, t, d, [n.id for n in self.nodes.values() if n.sm.get(i) != (t, d)])
                        for i, t, d in c.tracked
                        if any(n.sm.get(i) != (t, d) for n in self.nodes.values())
                    ]
                    raise InvariantViolation(
                        "liveness",
                        f"writes accepted after healing did not commit everywhere within "
                        f"{bound} ticks: (index, term, payload, missing on) {missing[:5]}",
                    )
                self._tick()
            return True
        finally:
            c.tracking = False

    def _newer_term(self, term: int) -> bool:
        """Some live node has moved past ``term`` (an election began)."""
        return any(n.alive and n.core.term > term for n in self.nodes.values())

    def _catch_up_allowance(self, leader: SimNode) -> int:
        """Round trips needed to ship every follower what it lacks, one window per trip."""
        p = self.profile
        lead = leader.core
        rtt = 2 * p.max_delay + p.heartbeat_ticks + 2
        entries_per_trip = p.max_inflight * max(1, p.max_msg_bytes // 24)
        chunk_bytes_per_trip = p.max_inflight * p.chunk_bytes
        trips = 0
        for node in self.nodes.values():
            if node is leader:
                continue
            have = node.core.last_index
            if have < lead.first_index - 1:
                trips += lead.snapshot_meta.size // chunk_bytes_per_trip + 2
                have = lead.snapshot_meta.index
            trips += max(0, lead.last_index - have) // entries_per_trip + 2
        return trips * rtt

    def _stable_leader(self, since: int) -> SimNode | None:
        """The one leader that every node follows in its term and has heard from since
        ``since``, with its no-op committed and nothing in flight that could depose it:
        a vote request of a newer term sent before healing, or a TimeoutNow of a transfer
        begun before healing (either would legitimately discard the writes accepted
        meanwhile, which is not what the liveness check is about)."""
        leaders = self._leaders()
        if len(leaders) != 1:
            return None
        lead = leaders[0].core
        if lead.term_at(lead.commit) != lead.term:
            return None
        if getattr(lead, "lead_transferee", None) is not None:
            return None
        for node in self.nodes.values():
            if not node.alive or node.core.term != lead.term or node.core.leader_id != lead.id:
                return None
            if node.id != lead.id:
                term, frm, when = node.heard_leader
                if term != lead.term or frm != lead.id or when < since:
                    return None
        if any(isinstance(m, TimeoutNow) or m.term > lead.term for _, _, m in self.net.queue):
            return None
        return leaders[0]

    def _all_applied_everywhere(self, writes: list[tuple[int, int, bytes]]) -> bool:
        nodes = list(self.nodes.values())
        return all(n.sm.get(i) == (t, d) for i, t, d in writes for n in nodes)

    def _final_checks(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                self.inv.final_state(node.id, node.applied, node.sm)


def _grants_vote(rd: Ready) -> bool:
    return any(
        isinstance(m, RequestVoteResponse) and m.granted and not m.pre
        for m in (*rd.messages, *rd.messages_after_persist)
    )


def liveness_profile(rng: random.Random) -> Profile:
    """The CI mix, ending with the leader crashed: ticks-to-elect then measures a real
    election after healing. Shorter fault phases: what is measured comes after it."""
    p = standard_profile(rng)
    return dataclasses.replace(p, fault_ticks=p.fault_ticks // 2, kill_leader_at_heal=True)


def sum_stats(runs: list[SimStats]) -> dict[str, int]:
    """Counters summed over runs (``seed`` and ``ticks_to_elect`` left out)."""
    totals: dict[str, int] = {}
    for st in runs:
        for f in dataclasses.fields(st):
            value = getattr(st, f.name)
            if f.name not in ("seed", "ticks_to_elect") and isinstance(value, int):
                totals[f.name] = totals.get(f.name, 0) + value
    return totals


def with_quorum_first(profile: ProfileFn, on: bool) -> ProfileFn:
    """``profile`` with its ``quorum_first`` draw overridden (soaks force it on or off)."""

    def forced(rng: random.Random) -> Profile:
        return dataclasses.replace(profile(rng), quorum_first=on)

    return forced


def drawn_profile(seed: int, profile: ProfileFn) -> Profile:
    """The profile a run of ``seed`` draws (from an RNG of its own, so that changes to the
    simulation's other draws leave it alone)."""
    return profile(random.Random(f"profile/{seed}"))


def run_seed(
    seed: int,
    *,
    core_cls: type[RaftCore] = RaftCore,
    profile: ProfileFn = standard_profile,
    trace: int = 60,
    liveness: bool = True,
    check_votes: bool = True,
) -> SimStats:
    """Run one seed; raises ``SimulationFailure`` (an AssertionError) with the trace.

    ``liveness=False`` skips the healing phase (the broken-core scans only look for safety
    failures); ``check_votes=False`` drops the direct one-vote-per-term check so that a
    lost vote has to show up as two leaders in one term.
    """
    return Simulation(
        seed,
        core_cls=core_cls,
        profile=profile,
        trace=trace,
        liveness=liveness,
        check_votes=check_votes,
    ).run()


def main(argv: list[str] | None = None) -> int:
    """Replay one seed: ``python -m tests.sim.simulator SEED [--core NAME] [--trace N]``."""
    from .broken import BROKEN

    parser = argparse.ArgumentParser(description="Replay one seed of the Raft simulation.")
    parser.add_argument("seed", type=int)
    parser.add_argument(
        "--core",
        default=None,
        help=f"a broken core, by variant or class name: {', '.join(BROKEN)}",
    )
    parser.add_argument("--trace", type=int, default=300, help="events to print on failure")
    parser.add_argument("--liveness-profile", action="store_true", help="as test_sim_liveness")
    parser.add_argument("--no-vote-check", action="store_true", help="as check_votes=False")
    parser.add_argument(
        "--quorum-first",
        choices=["on", "off"],
        help="override the profile's draw (soaks that force it on or off replay with this)",
    )
    args = parser.parse_args(argv)
    core_cls: type[RaftCore] = RaftCore
    profile = liveness_profile if args.liveness_profile else standard_profile
    check_votes = not args.no_vote_check
    if args.core:
        key = next((k for k, v in BROKEN.items() if args.core in (k, v.core.__name__)), None)
        if key is None:
            parser.error(f"unknown core {args.core!r}")
        variant = BROKEN[key]
        core_cls, profile = variant.core, variant.profile
        check_votes = check_votes and variant.check_votes
    if args.quorum_first is not None:
        profile = with_quorum_first(profile, args.quorum_first == "on")
    try:
        stats = run_seed(
            args.seed, core_cls=core_cls, profile=profile, trace=args.trace, check_votes=check_votes
        )
    except SimulationFailure as e:
        print(e, file=sys.stderr)
        return 1
    print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
