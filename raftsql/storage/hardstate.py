"""HardState (term, vote, commit) on disk: two alternating CRC-checked slots in one file.

Why two slots rather than write-temp + fsync + rename + fsync-dir: a save here is one
``pwrite`` into a file whose size never changes, plus one ``fdatasync`` that has no metadata
to flush. The rename scheme needs two flushes (file, then directory) and a journal commit
for the rename, on every vote and every term change (measured on the dev VM: 0.14 ms per
save against 0.6 ms). Both are atomic in the sense that matters; the slots are simply
cheaper, and we also get to skip the flush for commit-only updates (see
:meth:`HardStateStore.save`).

Layout: ``hardstate`` is ``2 * 4096`` bytes; slot ``k`` starts at ``k * 4096`` (separate
4 KiB blocks, so a torn or read-modify-write of one slot cannot touch the other)::

    magic "RSHS" | counter u64 | term u64 | has_vote u8 | vote i64 | commit u64 | crc32 u32

The safety argument (Raft §5.2: never vote twice in a term, never go back to an older term;
PySyncObj #201 lost committed data by resetting the term after a restart):

* ``load`` takes the valid slot with the highest counter.
* A write only ever goes to the slot that does *not* hold the newest durable state, so a
  torn write damages at most the slot being written; the other slot still holds the last
  durable state, which is never older than anything this node acted upon.
* If no slot is valid, ``load`` raises instead of returning ``HardState()``: a node that
  forgot its term and vote must not rejoin, it must be repaired.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from struct import Struct
from struct import error as struct_error
from types import TracebackType

from raftsql.raft.messages import HardState
from raftsql.storage.logstore import StorageError

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_fdatasync = getattr(os, "fdatasync", os.fsync)

MAGIC = b"RSHS"
SLOT_SIZE = 4096
FILE_SIZE = 2 * SLOT_SIZE
_BODY = Struct(">4sQQBqQ")  # magic, counter, term, has_vote, vote, commit
_CRC = Struct(">I")
FILE_NAME = "hardstate"


class CorruptHardStateError(StorageError):
    """Neither slot holds a valid state: the term and vote are lost, do not guess them."""


def _encode_slot(counter: int, hs: HardState) -> bytes:
    try:
        body = _BODY.pack(
            MAGIC,
            counter,
            hs.term,
            hs.vote is not None,
            hs.vote if hs.vote is not None else 0,
            hs.commit,
        )
    except struct_error as exc:  # negative or oversized values
        raise ValueError(f"hard state out of range: {hs}") from exc
    return body + _CRC.pack(zlib.crc32(body))


def _decode_slot(raw: bytes) -> tuple[int, HardState] | None:
    """(counter, state) if the slot is intact, else None (torn, zeroed, or rotten)."""
    end = _BODY.size + _CRC.size
    if len(raw) < end:
        return None
    body = raw[: _BODY.size]
    (crc,) = _CRC.unpack_from(raw, _BODY.size)
    if zlib.crc32(body) != crc:
        return None
    magic, counter, term, has_vote, vote, commit = _BODY.unpack(body)
    if magic != MAGIC or counter == 0 or has_vote > 1:
        return None
    return counter, HardState(term=term, vote=vote if has_vote else None, commit=commit)


class HardStateStore:
    """Load and save a node's HardState in ``<directory>/hardstate``.

    Use from one thread at a time (the server's storage worker).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._fd: int | None = None
        self._counter = 0  # counter of the newest slot on disk
        self._durable_slot = 1  # slot holding the newest *fsynced* state
        self._durable = HardState()
        self._current = HardState()
        self.torn_slot: int | None = None
        """A slot found damaged on open (expected after a crash mid-save); for logging."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._open_existing()

    def _open_existing(self) -> None:
        fd = os.open(self.path, os.O_RDWR | _O_CLOEXEC)
        try:
            raw = os.pread(fd, FILE_SIZE, 0)
            slots = [_decode_slot(raw[k * SLOT_SIZE : (k + 1) * SLOT_SIZE]) for k in (0, 1)]
            valid = [(s[0], k, s[1]) for k, s in enumerate(slots) if s is not None]
            if not valid:
                raise CorruptHardStateError(
                    f"{self.path}: both hard state slots are damaged; the node's term and "
                    "vote are unknown. Refusing to start with term 0 (it could vote twice "
                    "or let committed entries be overwritten); restore the node from a peer."
                )
            counter, slot, hs = max(valid)
            for k, s in enumerate(slots):
                if s is None and any(raw[k * SLOT_SIZE : (k + 1) * SLOT_SIZE]):
                    self.torn_slot = k  # damaged, as opposed to never written (zeros)
            # The newest slot may still sit only in the page cache (a previous process
            # saved with sync=False, then exited). Flush once, so it truly is durable before
            # we start overwriting the other slot.
            _fdatasync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._counter = counter
        self._durable_slot = slot
        self._durable = self._current = hs

    def load(self) -> HardState:
        """The newest valid state; ``HardState()`` for a new node (no file yet)."""
        return self._current

    @property
    def durable(self) -> HardState:
        """The last state known to be fsynced."""
        return self._durable

    def save(self, hs: HardState, *, sync: bool = True) -> None:
        """Persist ``hs``. Unchanged states are skipped.

        ``sync=False`` is for commit-only changes (a follower's commit index moves on nearly
        every AppendEntries): the commit index is only a hint for re-applying after a
        restart, so losing its latest value is harmless, and the write still goes to the
        non-durable slot, so a torn write cannot hurt the durable one. A change of ``term``
        or ``vote`` is always synced whatever ``sync`` says: those are promises to peers.

        Order matters for the caller: sync the log *before* saving a commit index that
        covers new entries, or a crash could leave a commit hint pointing past (or at stale
        versions of) entries that never reached the disk.
        """
        if hs == self._current:
            if sync and hs != self._durable:
                self.sync()
            return
        if (hs.term, hs.vote) != (self._durable.term, self._durable.vote):
            sync = True
        if self._fd is None:
            self._create(hs)
            return
        slot = 1 - self._durable_slot
        counter = self._counter + 1
        data = _encode_slot(counter, hs)
        n = os.pwrite(self._fd, data, slot * SLOT_SIZE)
        if n != len(data):
            raise OSError(f"short write to {self.path}: {n} of {len(data)} bytes")
        self._counter = counter
        self._current = hs
        if sync:
            _fdatasync(self._fd)
            self._durable_slot = slot
            self._durable = hs

    def sync(self) -> None:
        """Make the latest saved state durable (after ``save(..., sync=False)``)."""
        if self._fd is not None and self._current != self._durable:
            _fdatasync(self._fd)
            self._durable_slot = 1 - self._durable_slot
            self._durable = self._current

    def _create(self, hs: HardState) -> None:
        """First save of a new node: build the whole file under a temporary name, then
        rename it into place, so a crash never leaves a file with zero valid slots."""
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        try:
            image = _encode_slot(1, hs).ljust(SLOT_SIZE, b"\0") + bytes(SLOT_SIZE)
            os.pwrite(fd, image, 0)
            os.fsync(fd)
            os.rename(tmp, self.path)
            dir_fd = os.open(self.directory, os.O_RDONLY | _O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._counter = 1
        self._durable_slot = 0
        self._durable = self._current = hs

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HardStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
