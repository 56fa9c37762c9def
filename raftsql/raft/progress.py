"""What a leader knows about one follower's log, and how it sends to it.

A follower is in one of three states (the names follow etcd's raft, whose design this
mirrors):

- PROBE: the leader does not know where the follower's log ends. It sends one
  AppendEntries at a time and waits for the answer (or the next heartbeat) before trying
  again, backing off with the follower's conflict hints.
- REPLICATE: the follower matched recently; the leader streams entries optimistically,
  with up to ``max_inflight`` messages in flight (pipelining).
- SNAPSHOT: the entries the follower needs were compacted away; the leader streams a
  snapshot in chunks, resuming from the follower's acknowledged offset.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from raftsql.raft.messages import SnapshotMeta


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)
    """Last index of each AppendEntries in flight (REPLICATE only)."""
    recent_active: bool = False
    """Heard from since the last CheckQuorum round."""
    read_round: int = 0
    """Highest ReadIndex heartbeat round this follower acknowledged."""
    stalls: int = 0
    """Heartbeat answers seen in a row while nothing we sent made progress."""
    catching_up: bool = False
    """REPLICATE: the last send stopped at a full in-flight window with entries left. A
    quorum-first leader then goes on sending to it as its acks free the window, even if it
    is a spare (sent to once a tick otherwise): a follower far behind is never throttled
    to a window a tick."""
    progress_mark: int = -1
    snapshot: SnapshotMeta | None = None
    snap_sent: int = 0
    snap_acked: int = 0
    snap_done_sent: bool = False
    snap_rewound_to: int = -1
    """Offset we last rewound to on a rejection. Every chunk of the window sent before the
    rewind is rejected with that same offset: acting on each of those would resend the
    whole window once per rejection, a storm that grows with every lost chunk."""

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot = None
        self.stalls = 0
        self.catching_up = False

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.stalls = 0
        self.catching_up = False

    def become_snapshot(self, meta: SnapshotMeta) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot = meta
        self.snap_sent = 0
        self.snap_acked = 0
        self.snap_done_sent = False
        self.snap_rewound_to = -1
        self.inflight.clear()
        self.stalls = 0
        self.catching_up = False

    def rewind_snapshot(self, offset: int) -> None:
        """Resend the snapshot from ``offset`` (the follower's resume point)."""
        self.snap_acked = self.snap_sent = offset
        self.snap_done_sent = False
        self.snap_rewound_to = offset

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True

    def maybe_update(self, index: int) -> bool:
        """A follower acknowledged ``index``: True if that is news (match moved)."""
        self.free_inflight(index)
        if index > self.match:
            self.match = index
            self.next = max(self.next, index + 1)
            self.probe_sent = False
            return True
        return False

    def free_inflight(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A follower rejected an append at ``rejected``: move ``next`` back.

        Returns False for a stale rejection (of a message sent before a newer decision), so
        an old answer arriving late cannot undo progress.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.become_probe()
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def note_heartbeat_answer(self) -> bool:
        """Called on each heartbeat answer; True when sending looks stuck.

        Messages can be lost: a full pipeline whose answers never come, or a snapshot chunk
        that vanished, would otherwise wait forever. Two heartbeat answers in a row with no
        progress in between mean the window is lost, and the caller rewinds.
        """
        mark = self.match if self.state is not ProgressState.SNAPSHOT else self.snap_acked
        if self.state is ProgressState.PROBE:
            self.probe_sent = False
            return False
        busy = bool(self.inflight) if self.state is ProgressState.REPLICATE else True
        if not busy or mark != self.progress_mark:
            self.progress_mark = mark
            self.stalls = 0
            return False
        self.stalls += 1
        return self.stalls >= 2
