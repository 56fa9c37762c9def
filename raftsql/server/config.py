"""Settings of one running node: who it is, where its peers are, its timeouts and paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raftsql import timing


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``) -> ``(host, port)`` with a clear error."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class NodeConfig:
    """One node. ``peers`` maps every voter's id (this node's included) to its address;
    peers and clients share the one listening port.

    Timing: a tick is ``tick_seconds``; the election timeout is drawn from
    [election_ticks, 2 * election_ticks] ticks, and the leader heartbeats every
    ``heartbeat_ticks``. The defaults are in :mod:`raftsql.timing`, which says why.
    """

    id: int
    peers: dict[int, tuple[str, int]]
    data_dir: Path
    tick_seconds: float = timing.TICK_SECONDS
    election_ticks: int = timing.ELECTION_TICKS
    heartbeat_ticks: int = timing.HEARTBEAT_TICKS
    snapshot_every: int = 10_000
    """Applied entries between snapshots (then the log is compacted)."""
    snapshot_retain: int = 1_000
    """Entries kept in the log behind a snapshot, so a follower that lags a little catches
    up from the log instead of a whole snapshot."""
    max_frame: int = 64 << 20
    request_timeout: float = 10.0
    max_read_rows: int = 1_000_000
    read_budget: float = 0.002
    """Seconds a read may run on the event loop before it is interrupted and run again
    by the read worker."""
    apply_budget: float = 0.010
    """Seconds an apply may run on the event loop before it is cut off and finished by
    the disk worker (heartbeats and client I/O wait while the loop applies)."""
    speculate_budget: float = 0.002
    """Seconds the leader may spend running its new entries before they commit, while
    their AppendEntries are out (``StateMachine.speculate``); past it, or at 0 (off),
    they are applied after the commit as usual."""
    follower_apply_batch: int = 16
    follower_apply_delay: float = timing.TICK_SECONDS
    """A follower holds committed entries until it has ``follower_apply_batch`` of them or
    the oldest has waited ``follower_apply_delay`` seconds (checked every tick), and at once
    when a read needs them: applying one entry per append cost each follower ~60-100 us
    of CPU right when the leader needs a core to commit and answer. A batch of 1 applies
    everything at once."""
    quorum_first: bool = True
    """Send new entries at once only to the followers a quorum needs; the others get
    them every tick, or at once when they ask for a read index (``raft.Config``
    says why: on one machine's shared cores and disk, 1.2x the writes a second at one
    writer). Off (``raftsql node --no-quorum-first``): every follower at once, the commit
    taking the fastest of their acks, for nodes on machines of their own whose acks
    race each other."""
    max_pending_writes: int = 10_000
    max_apply_backlog: float = 2.0
    """Backpressure on the leader: a write is refused at once (``UnavailableError``,
    "overloaded", nothing done, safe to retry) while ``max_pending_writes`` writes wait
    for their answer there, or while the entries it has not applied yet would take more
    than ``max_apply_backlog`` seconds to apply (measured cost per entry, recent
    batches), or the oldest waiting write has waited longer than that. Without it,
    pipelined clients queue work without bound and writes time out after being
    committed, their outcome unknown to the client (PySyncObj drops callbacks when
    overloaded)."""

    @property
    def address(self) -> tuple[str, int]:
        return self.peers[self.id]

    @property
    def voters(self) -> frozenset[int]:
        return frozenset(self.peers)
