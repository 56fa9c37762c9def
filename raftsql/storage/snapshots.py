"""Snapshot files: written or received in a staging file, made visible by one rename.

Layout of ``<directory>`` (``snapshots/`` in a node's data directory)::

    snap-<index:020>-<term:020>.db     the snapshot data (for raftsql: a SQLite file)
    snap-<index:020>-<term:020>.meta   JSON sidecar: index, term, voters, size, sha256
    snap-...db.tmp / snap-...db.recv   staging files (local write / received from leader)

The sidecar is the commit point. A snapshot exists only once its ``.meta`` has been renamed
into place after the ``.db`` was fsynced and renamed, so a crash at any point leaves either
the old set of snapshots or the old set plus the new one, never a half file that
``latest()`` would return. Anything else found on open (staging files, a ``.db`` without
its sidecar) is debris from a crash and is removed.

Data never passes through memory whole (dqlite #281, rqlite #1798): the leader reads
chunks with ``pread`` (:meth:`SnapshotStore.read_chunk`), the follower writes them at their
offset (:meth:`SnapshotStore.stage_chunk`), hashing as it goes, and checksums of locally
written snapshots are computed by streaming the file.

Retention keeps the ``retain`` newest snapshots (default 2: the new one and the previous
one) because a leader may still be streaming the previous snapshot to a slow follower when
it takes a new one; deleting it would make that follower start over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from raftsql.raft.messages import SnapshotMeta
from raftsql.storage.logstore import StorageError

log = logging.getLogger(__name__)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_fdatasync = getattr(os, "fdatasync", os.fsync)
_HASH_CHUNK = 1 << 20
_FORMAT = 1
_NAME = re.compile(r"^snap-(\d{20})-(\d{20})\.(db|meta)$")
_DEBRIS = re.compile(r"^snap-\d{20}-\d{20}\.(db\.tmp|db\.recv|meta\.tmp)(-.*)?$")

Key = tuple[int, int]  # (index, term)


class SnapshotError(StorageError):
    """A snapshot operation that cannot proceed (missing file, size mismatch, bad offset)."""


@dataclass(slots=True)
class _Stored:
    meta: SnapshotMeta
    sha256: str


@dataclass(slots=True)
class _Receiving:
    meta: SnapshotMeta
    path: Path
    fd: int
    size: int
    hasher: hashlib._Hash | None  # None once a chunk was rewritten out of order


def _stem(meta: SnapshotMeta) -> str:
    return f"snap-{meta.index:020d}-{meta.term:020d}"


def _key(meta: SnapshotMeta) -> Key:
    return (meta.index, meta.term)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_and_sync(path: Path) -> str:
    """sha256 of a file, streamed in 1 MiB chunks, and fsync it on the way out."""
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "r+b", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
        os.fsync(f.fileno())
    return h.hexdigest()


def _meta_to_json(meta: SnapshotMeta, sha256: str) -> bytes:
    doc = {
        "format": _FORMAT,
        "index": meta.index,
        "term": meta.term,
        "voters": sorted(meta.voters),
        "size": meta.size,
        "sha256": sha256,
    }
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def _meta_from_json(raw: bytes) -> tuple[SnapshotMeta, str]:
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError("unknown sidecar format")
    ints = [doc.get(k) for k in ("index", "term", "size")]
    if not all(type(v) is int and v >= 0 for v in ints):
        raise ValueError("index, term and size must be non-negative integers")
    voters = doc.get("voters")
    if not isinstance(voters, list) or not all(type(v) is int for v in voters):
        raise ValueError("voters must be a list of integers")
    sha = doc.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise ValueError("sha256 missing")
    index, term, size = ints
    return SnapshotMeta(index=index, term=term, voters=frozenset(voters), size=size), sha


class SnapshotStore:
    """The snapshots of one node. Methods take a lock, so the sender (``read_chunk``) and the
    storage worker (``commit``, ``stage_chunk``) may live in different threads."""

    def __init__(self, directory: str | os.PathLike[str], *, retain: int = 2) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self.directory = Path(directory)
        self.retain = retain
        self._lock = threading.Lock()
        self._snaps: dict[Key, _Stored] = {}
        self._read_fds: dict[Key, int] = {}
        self._recv: _Receiving | None = None
        self.problems: list[str] = []
        """Sidecars found unreadable or inconsistent on open (ignored, left for forensics)."""
        self.removed_debris: list[str] = []
        """Crash leftovers deleted on open (staging files, data without a sidecar)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._scan()

    # ------------------------------------------------------------------ queries

    def latest(self) -> tuple[SnapshotMeta, Path] | None:
        """The newest committed snapshot and its data file, or None."""
        with self._lock:
            if not self._snaps:
                return None
            stored = self._snaps[max(self._snaps)]
            return stored.meta, self.data_path(stored.meta)

    def snapshots(self) -> list[SnapshotMeta]:
        """All committed snapshots, oldest first."""
        with self._lock:
            return [self._snaps[k].meta for k in sorted(self._snaps)]

    def data_path(self, meta: SnapshotMeta) -> Path:
        return self.directory / f"{_stem(meta)}.db"

    def meta_path(self, meta: SnapshotMeta) -> Path:
        return self.directory / f"{_stem(meta)}.meta"

    def sha256(self, meta: SnapshotMeta) -> str:
        """The checksum recorded when the snapshot was committed."""
        with self._lock:
            return self._get(meta).sha256

    def verify(self, meta: SnapshotMeta) -> bool:
        """Re-hash the data file (streaming) and compare with the sidecar: detects bit rot
        before a snapshot is restored or shipped. Costs a full read, so it is opt-in."""
        with self._lock:
            stored = self._get(meta)
        path = self.data_path(meta)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        return h.hexdigest() == stored.sha256 and path.stat().st_size == stored.meta.size

    # ------------------------------------------------------------------ local snapshots

    def begin_write(self, meta: SnapshotMeta) -> Path:
        """Where to write a new local snapshot (e.g. SQLite's backup or ``VACUUM INTO``).

        ``meta.size`` may be 0 here: :meth:`commit` measures the file.
        """
        path = self.directory / f"{_stem(meta)}.db.tmp"
        path.unlink(missing_ok=True)
        return path

    def commit(self, meta: SnapshotMeta) -> tuple[SnapshotMeta, Path]:
        """Make the file written at :meth:`begin_write`'s path the newest snapshot.

        fsync the data, rename it into place, write the sidecar (temp + fsync + rename),
        fsync the directory, then prune older snapshots. Returns the meta with ``size``
        filled in, and the data path.
        """
        staged = self.directory / f"{_stem(meta)}.db.tmp"
        with self._lock:
            if not staged.exists():
                raise SnapshotError(f"nothing staged at {staged} (call begin_write first)")
            return self._install(meta, staged, None)

    # ------------------------------------------------------------------ sending

    def read_chunk(self, meta: SnapshotMeta, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of a committed snapshot (fewer at the end of the
        file). Reads from disk with ``pread``; the whole file is never in memory."""
        with self._lock:
            stored = self._get(meta)
            size = stored.meta.size
            if offset < 0 or length < 0 or offset > size:
                raise SnapshotError(f"bad chunk [{offset}, +{length}) of a {size}-byte snapshot")
            length = min(length, size - offset)
            key = _key(meta)
            fd = self._read_fds.get(key)
            if fd is None:
                fd = os.open(self.data_path(meta), os.O_RDONLY | _O_CLOEXEC)
                self._read_fds[key] = fd
            parts: list[bytes] = []
            got = 0
            while got < length:
                part = os.pread(fd, length - got, offset + got)
                if not part:
                    raise SnapshotError(f"{self.data_path(meta)} is shorter than its sidecar")
                parts.append(part)
                got += len(part)
            return parts[0] if len(parts) == 1 else b"".join(parts)

    # ------------------------------------------------------------------ receiving

    def stage_chunk(self, meta: SnapshotMeta, offset: int, data: bytes) -> int:
        """Write a received chunk at ``offset`` of the staging file for ``meta``.

        ``offset == 0`` starts over (a new snapshot, or the leader restarted the transfer):
        any staging file in progress is discarded. Otherwise the chunk must continue (or
        rewrite part of) the staged prefix: a gap means a lost chunk and raises. A rewrite
        truncates after the chunk, so the file always equals what the core acknowledged.
        Returns the staged size, i.e. the next offset expected.
        """
        with self._lock:
            recv = self._recv
            if offset == 0:
                self._discard_recv()
                path = self.directory / f"{_stem(meta)}.db.recv"
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
                recv = self._recv = _Receiving(meta, path, fd, 0, hashlib.sha256())
            elif recv is None or recv.meta != meta:
                raise SnapshotError(
                    f"chunk at offset {offset} for snapshot {_key(meta)}, but no transfer of "
                    "it is in progress (it must start at offset 0)"
                )
            if offset > recv.size:
                raise SnapshotError(f"gap: staged {recv.size} bytes, chunk starts at {offset}")
            end = offset + len(data)
            if end > meta.size:
                raise SnapshotError(f"chunk ends at {end}, past the snapshot size {meta.size}")
            view = memoryview(data)
            pos = offset
            while view:
                n = os.pwrite(recv.fd, view, pos)
                view = view[n:]
                pos += n
            if offset == recv.size:
                if recv.hasher is not None:
                    recv.hasher.update(data)
            else:
                os.ftruncate(recv.fd, end)
                recv.hasher = None
            recv.size = end
            return end

    def finish_staged(self, meta: SnapshotMeta) -> Path:
        """The last chunk arrived: check the size, fsync, and commit like a local snapshot."""
        with self._lock:
            recv = self._recv
            if recv is None or recv.meta != meta:
                raise SnapshotError(f"no transfer of snapshot {_key(meta)} in progress")
            if recv.size != meta.size:
                raise SnapshotError(f"incomplete snapshot: have {recv.size} of {meta.size} bytes")
            _fdatasync(recv.fd)
            os.close(recv.fd)
            self._recv = None
            sha = recv.hasher.hexdigest() if recv.hasher is not None else None
            try:
                _, path = self._install(meta, recv.path, sha)
            except BaseException:
                recv.path.unlink(missing_ok=True)
                raise
            return path

    def abort_staged(self) -> None:
        """Drop a transfer in progress (the leader gave up, or we became leader)."""
        with self._lock:
            self._discard_recv()

    @property
    def staged_size(self) -> int:
        """Bytes staged for the transfer in progress (0 if none): the resume point."""
        return self._recv.size if self._recv is not None else 0

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            self._discard_recv()
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # ------------------------------------------------------------------ internals

    def _get(self, meta: SnapshotMeta) -> _Stored:
        stored = self._snaps.get(_key(meta))
        if stored is None:
            raise SnapshotError(f"no snapshot at index {meta.index} term {meta.term}")
        return stored

    def _discard_recv(self) -> None:
        if self._recv is not None:
            os.close(self._recv.fd)
            self._recv.path.unlink(missing_ok=True)
            self._recv = None

    def _install(
        self, meta: SnapshotMeta, staged: Path, sha: str | None
    ) -> tuple[SnapshotMeta, Path]:
        key = _key(meta)
        if self._snaps and key < max(self._snaps):
            raise SnapshotError(
                f"snapshot {key} is older than the latest {max(self._snaps)}; refusing to "
                "commit it (it would be pruned at once, or worse, shadow newer data)"
            )
        size = staged.stat().st_size
        if meta.size and meta.size != size:
            raise SnapshotError(f"{staged}: {size} bytes, but meta says {meta.size}")
        meta = replace(meta, size=size)
        if sha is None:
            sha = _hash_and_sync(staged)  # also fsyncs
        else:
            fd = os.open(staged, os.O_RDONLY | _O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        old_fd = self._read_fds.pop(key, None)
        if old_fd is not None:
            os.close(old_fd)
        data_path = self.data_path(meta)
        meta_path = self.meta_path(meta)
        os.rename(staged, data_path)
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(_meta_to_json(meta, sha))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, meta_path)  # the commit point
        _fsync_dir(self.directory)
        self._snaps[key] = _Stored(meta, sha)
        self._prune()
        return meta, data_path

    def _prune(self) -> None:
        """Delete all but the ``retain`` newest: sidecar first (uncommit), then data."""
        doomed = sorted(self._snaps)[: -self.retain]
        for key in doomed:
            stored = self._snaps.pop(key)
            fd = self._read_fds.pop(key, None)
            if fd is not None:
                os.close(fd)
            self.meta_path(stored.meta).unlink(missing_ok=True)
            self.data_path(stored.meta).unlink(missing_ok=True)
        if doomed:
            _fsync_dir(self.directory)

    def _scan(self) -> None:
        datas: set[Key] = set()
        metas: list[tuple[Key, Path]] = []
        for p in self.directory.iterdir():
            if _DEBRIS.match(p.name):
                p.unlink()
                self.removed_debris.append(p.name)
                continue
            m = _NAME.match(p.name)
            if not m:
                continue
            key = (int(m.group(1)), int(m.group(2)))
            if m.group(3) == "db":
                datas.add(key)
            else:
                metas.append((key, p))
        for key, p in metas:
            try:
                meta, sha = _meta_from_json(p.read_bytes())
            except (ValueError, OSError) as exc:
                self.problems.append(f"{p.name}: unreadable sidecar ({exc})")
                continue
            if _key(meta) != key:
                self.problems.append(f"{p.name}: sidecar describes snapshot {_key(meta)}")
                continue
            if key not in datas:
                self.problems.append(f"{p.name}: data file missing")
                continue
            actual = self.data_path(meta).stat().st_size
            if actual != meta.size:
                self.problems.append(f"{p.name}: data file has {actual} bytes, not {meta.size}")
                continue
            self._snaps[key] = _Stored(meta, sha)
        meta_keys = {key for key, _ in metas}
        for key in datas - meta_keys:
            # Crash between renaming the data and renaming its sidecar (or while pruning):
            # never committed (or already uncommitted), so not a snapshot.
            p = self.directory / f"snap-{key[0]:020d}-{key[1]:020d}.db"
            p.unlink()
            self.removed_debris.append(p.name)
        if self.removed_debris:
            _fsync_dir(self.directory)
        for problem in self.problems:
            log.warning("snapshot store: %s", problem)
