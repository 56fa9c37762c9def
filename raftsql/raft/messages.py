"""The vocabulary of the Raft protocol: log entries, persistent state and messages.

Everything here is a frozen dataclass made of plain values (ints, bytes, tuples, frozensets),
so that the same objects can be compared in tests, hashed into the simulator's invariant
tables, and turned into CBOR by the transport without any custom hooks.

Every message carries ``frm``, ``to`` and ``term``: the receiver first compares terms (Raft
§5.1) and only then looks at the rest, so those three live in the common base class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class EntryKind(IntEnum):
    """What an entry's ``data`` means to the layer that applies it."""

    NORMAL = 0
    """Opaque bytes proposed by the application (for raftsql: an encoded SQL command)."""
    NOOP = 1
    """Appended by every new leader at once (Raft §8): it commits the previous terms' tail
    and is what ReadIndex waits for before serving reads. Carries no data."""
    CONFIG = 2
    """Reserved for membership changes: ``data`` will hold an encoded configuration."""


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL

    def size(self) -> int:
        """Bytes this entry costs in an AppendEntries message (data plus a small header)."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a node answers anything that depends on it.

    ``term`` and ``vote`` are the two promises of Raft §5.2 (a node votes at most once a
    term, and never goes back to an older term). ``commit`` is persisted as a hint so that a
    restarted node can re-apply committed entries without waiting for a leader.
    """

    term: int = 0
    vote: int | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Describes a snapshot: the log prefix it replaces and the configuration at that point.

    ``size`` is the byte length of the snapshot's data, which lives outside the core (a
    SQLite file in the server, a bytes blob in the simulator). The core only ever talks about
    offsets and lengths inside it, so snapshots are streamed in chunks and never built in
    memory by the protocol.
    """

    index: int = 0
    term: int = 0
    voters: frozenset[int] = field(default_factory=frozenset)
    size: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    frm: int
    to: int
    term: int


@dataclass(frozen=True, slots=True)
class RequestVote(Message):
    """A (pre-)candidate asks for a vote.

    With ``pre`` set this is a PreVote (thesis §9.6): ``term`` is the term the sender *would*
    use, and neither side changes its term. ``transfer`` marks an election started by
    TimeoutNow, which voters honour even while they still hear from the current leader.
    """

    last_log_index: int = 0
    last_log_term: int = 0
    pre: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse(Message):
    granted: bool = False
    pre: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries(Message):
    """Entries after ``prev_index``/``prev_term``, plus the leader's commit index."""

    prev_index: int = 0
    prev_term: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse(Message):
    """Success: ``index`` is the last index the follower now matches.

    Rejection: ``index`` echoes the rejected ``prev_index``, and (``hint_index``,
    ``hint_term``) is the follower's last entry at or before it whose term is not newer than
    the leader's ``prev_term``, so the leader can skip a whole term's worth of entries per
    round trip instead of one (thesis §5.3 "fast backtracking").
    """

    success: bool = False
    index: int = 0
    hint_index: int = 0
    hint_term: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Leader liveness plus a safe commit index; ``round`` confirms leadership for reads."""

    commit: int = 0
    round: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatResponse(Message):
    round: int = 0


@dataclass(frozen=True, slots=True)
class ReadIndexRequest(Message):
    """A follower forwards a linearizable read to the leader; ``ctx`` identifies it."""

    ctx: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadIndexResponse(Message):
    """The leader's answer: the read may be served once the follower applied ``index``."""

    ctx: bytes = b""
    index: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow(Message):
    """Leader transfer: the target is up to date and should start an election right now."""


@dataclass(frozen=True, slots=True)
class InstallSnapshot(Message):
    """One chunk of a snapshot: ``length`` bytes at ``offset`` of the snapshot ``meta``.

    The core emits this with ``data == b""``: whoever sends it reads the chunk from the
    snapshot file and fills ``data`` in (``dataclasses.replace``), so the protocol never
    holds a snapshot in memory. ``done`` marks the last chunk.
    """

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    offset: int = 0
    length: int = 0
    data: bytes = b""
    done: bool = False


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse(Message):
    """``next_offset`` is the byte the follower expects next for snapshot ``index`` (resume
    point), or ``meta.size`` once it has installed the whole snapshot."""

    index: int = 0
    next_offset: int = 0
    done: bool = False
    rejected: bool = False
    """Set when the chunk was not the one expected (lost or reordered): the leader rewinds
    to ``next_offset`` at once instead of waiting for a stall to be noticed."""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may run once the local applied index reaches ``index``."""

    ctx: bytes
    index: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """A chunk a follower received, for the caller to write at ``offset`` of a staging file
    for snapshot ``meta``. ``offset == 0`` means start a new file."""

    meta: SnapshotMeta
    offset: int
    data: bytes
