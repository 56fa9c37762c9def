"""Open a node's durable state and turn it into the ``Restored`` the core starts from.

Each store recovers itself (torn log tail, torn hard-state slot, snapshot debris); this
module reconciles them with each other, because a crash can land between the steps of a
multi-file operation:

* Installing a snapshot commits the snapshot first, then resets the log. A crash in between
  leaves the new snapshot plus (a prefix of) the old log. Raft §7 says what to do: if the
  log holds the snapshot's last entry (same index and term), keep what follows it;
  otherwise the whole log is stale and is discarded.
* The commit index in the hard state is a hint. It is raised to the snapshot index (the
  snapshot only holds committed data) and to ``applied``, and lowered to the last log
  index: a hint pointing past the log would make the node apply entries it does not have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from raftsql.raft.config import Restored
from raftsql.raft.messages import HardState, SnapshotMeta
from raftsql.storage.hardstate import HardStateStore
from raftsql.storage.logstore import DEFAULT_SEGMENT_BYTES, LogStore, RecoveryReport, StorageError
from raftsql.storage.snapshots import SnapshotStore


@dataclass(slots=True)
class Storage:
    """The three stores of one node, under one data directory::

    <data_dir>/hardstate   <data_dir>/log/*.seg   <data_dir>/snapshots/snap-*
    """

    log: LogStore
    hard_state: HardStateStore
    snapshots: SnapshotStore
    log_report: RecoveryReport

    def close(self) -> None:
        self.log.close()
        self.hard_state.close()
        self.snapshots.close()


@dataclass(frozen=True, slots=True)
class Recovered:
    """What :func:`recover` found: the core's starting point and the notes worth logging."""

    restored: Restored
    snapshot_path: Path | None
    notes: tuple[str, ...] = field(default=())


def open_storage(
    data_dir: str | os.PathLike[str],
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    retain_snapshots: int = 2,
) -> Storage:
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    log, report = LogStore.open(root / "log", segment_bytes=segment_bytes)
    try:
        hard_state = HardStateStore(root)
        snapshots = SnapshotStore(root / "snapshots", retain=retain_snapshots)
    except BaseException:
        log.close()
        raise
    return Storage(log=log, hard_state=hard_state, snapshots=snapshots, log_report=report)


def recover(storage: Storage, applied: int | None = None) -> Recovered:
    """Reconcile the stores and build ``Restored``.

    ``applied`` is the state machine's own applied index (raftsql keeps it in the SQLite
    file, in the same transaction as the data); None means "just the snapshot".

    Loads the log after the snapshot into memory (that is what ``Restored.entries`` is):
    compaction keeps it short.
    """
    notes: list[str] = []
    report = storage.log_report
    if report.truncated_bytes:
        notes.append(
            f"log: cut a torn tail of {report.truncated_bytes} bytes from index "
            f"{report.first_lost_index} ({report.reason})"
        )
    if storage.hard_state.torn_slot is not None:
        notes.append(f"hard state: slot {storage.hard_state.torn_slot} was torn; used the other")
    notes.extend(f"snapshots: {p}" for p in storage.snapshots.problems)

    latest = storage.snapshots.latest()
    meta, snap_path = latest if latest is not None else (SnapshotMeta(), None)
    log = storage.log

    if log.first_index > meta.index + 1:
        raise StorageError(
            f"the log starts at {log.first_index} but the newest usable snapshot ends at "
            f"{meta.index}: entries in between are missing"
        )
    if meta.index > 0 and log.last_index >= meta.index:
        if log.term_at(meta.index) != meta.term and log.first_index <= meta.index:
            notes.append(
                f"log: entry {meta.index} does not match the snapshot's term {meta.term}; "
                "discarding the stale log (Raft §7)"
            )
            log.reset(meta.index + 1)
    elif meta.index > 0:
        # The log ends at or before the snapshot: all of it is covered by the snapshot.
        if log.last_index >= log.first_index:
            notes.append(f"log: ends at {log.last_index}, covered by snapshot {meta.index}")
        log.reset(meta.index + 1)

    entries = tuple(log.entries(meta.index + 1, log.last_index + 1))
    if applied is None:
        applied = meta.index
    applied = max(applied, meta.index)
    if applied > log.last_index:
        raise StorageError(
            f"state machine applied {applied} but the log ends at {log.last_index}: "
            "applied entries are missing from the log"
        )

    hs = storage.hard_state.load()
    term, vote = hs.term, hs.vote
    newest = max(log.last_term, meta.term)  # an empty log's last term is 0
    if newest > term:
        # A follower that learns a new term from an append persists the entries, then the
        # term (it must: a commit hint covering them may only follow them to disk). A crash
        # in between leaves entries of a term the hard state has not reached. The node
        # voted for no one in that term (a vote is on disk before it leaves), so the term
        # is raised with no vote: a term below its own log's would break currentTerm >=
        # lastLogTerm, which the election rules assume.
        term, vote = newest, None
        notes.append(
            f"hard state: term {hs.term} is behind the log's term {term} (a crash between "
            "the log's fsync and the hard state's); raised, with no vote"
        )
    commit = max(hs.commit, meta.index, applied)
    if commit > log.last_index:
        notes.append(f"hard state: commit hint {commit} lowered to last index {log.last_index}")
        commit = log.last_index
    return Recovered(
        restored=Restored(
            hard_state=HardState(term=term, vote=vote, commit=commit),
            snapshot=meta,
            entries=entries,
            applied=applied,
        ),
        snapshot_path=snap_path,
        notes=tuple(notes),
    )
