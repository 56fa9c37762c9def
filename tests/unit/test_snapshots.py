"""Snapshot files (write, commit, stream, receive, crash debris) and startup recovery."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from raftsql.raft.messages import Entry, HardState, SnapshotMeta
from raftsql.storage import (
    HardStateStore,
    LogStore,
    SnapshotError,
    SnapshotStore,
    StorageError,
    open_storage,
    recover,
)


def meta(index: int, term: int = 1, size: int = 0) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, voters=frozenset({1, 2, 3}), size=size)


def write_local(store: SnapshotStore, m: SnapshotMeta, data: bytes) -> tuple[SnapshotMeta, Path]:
    path = store.begin_write(m)
    path.write_bytes(data)
    return store.commit(m)


def test_empty_store(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    assert store.latest() is None
    assert store.snapshots() == []


def test_commit_then_latest_survives_reopen(tmp_path: Path) -> None:
    d = tmp_path / "snapshots"
    store = SnapshotStore(d)
    data = os.urandom(10_000)
    committed, path = write_local(store, meta(10, 2), data)
    assert committed == meta(10, 2, size=len(data))
    assert path.read_bytes() == data
    assert store.latest() == (committed, path)
    assert store.sha256(committed) == hashlib.sha256(data).hexdigest()
    store.close()
    again = SnapshotStore(d)
    assert again.latest() == (committed, path)
    assert again.verify(committed)
    assert again.problems == [] and again.removed_debris == []


def test_commit_checks_declared_size(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.begin_write(meta(5, size=99))
    path.write_bytes(b"abc")
    with pytest.raises(SnapshotError, match="meta says 99"):
        store.commit(meta(5, size=99))
    with pytest.raises(SnapshotError, match="begin_write"):
        store.commit(meta(6))


def test_retention_keeps_the_new_and_the_previous(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for i in range(1, 6):
        write_local(store, meta(i * 10), b"s%d" % i)
    assert [m.index for m in store.snapshots()] == [40, 50]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "snap-00000000000000000040-00000000000000000001.db",
        "snap-00000000000000000040-00000000000000000001.meta",
        "snap-00000000000000000050-00000000000000000001.db",
        "snap-00000000000000000050-00000000000000000001.meta",
    ]


def test_older_snapshot_is_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write_local(store, meta(20), b"new")
    with pytest.raises(SnapshotError, match="older"):
        write_local(store, meta(10), b"old")


def test_read_chunk_streams_from_disk(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    data = os.urandom(100_000)
    m, _ = write_local(store, meta(7), data)
    chunks = [store.read_chunk(m, off, 4096) for off in range(0, len(data), 4096)]
    assert b"".join(chunks) == data
    assert store.read_chunk(m, len(data), 10) == b""
    assert store.read_chunk(m, len(data) - 3, 10) == data[-3:]
    with pytest.raises(SnapshotError):
        store.read_chunk(m, len(data) + 1, 10)
    with pytest.raises(SnapshotError, match="no snapshot"):
        store.read_chunk(meta(8, size=1), 0, 1)


def test_receive_in_chunks_then_install(tmp_path: Path) -> None:
    leader = SnapshotStore(tmp_path / "leader")
    data = os.urandom(50_000)
    m, _ = write_local(leader, meta(30, 4), data)
    follower = SnapshotStore(tmp_path / "follower")
    offset = 0
    while offset < m.size:
        chunk = leader.read_chunk(m, offset, 7000)
        offset = follower.stage_chunk(m, offset, chunk)
    assert follower.latest() is None  # nothing visible until finished
    path = follower.finish_staged(m)
    assert path.read_bytes() == data
    assert follower.latest() == (m, path)
    assert follower.sha256(m) == leader.sha256(m)
    assert list((tmp_path / "follower").glob("*.recv")) == []


def test_receive_restart_rewind_and_errors(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    data = bytes(range(256)) * 40
    m = meta(12, 3, size=len(data))
    assert store.stage_chunk(m, 0, data[:1000]) == 1000
    assert store.stage_chunk(m, 1000, data[1000:2000]) == 2000
    with pytest.raises(SnapshotError, match="gap"):
        store.stage_chunk(m, 3000, data[3000:4000])
    with pytest.raises(SnapshotError, match="no transfer"):
        store.stage_chunk(meta(13, 3, size=len(data)), 500, b"x")
    with pytest.raises(SnapshotError, match="past the snapshot size"):
        store.stage_chunk(m, 2000, data[2000:] + b"extra")
    # The leader rewinds to 1500: the file is cut there and continued.
    assert store.stage_chunk(m, 1500, data[1500:2500]) == 2500
    with pytest.raises(SnapshotError, match="incomplete"):
        store.finish_staged(m)
    store.stage_chunk(m, 2500, data[2500:])
    path = store.finish_staged(m)
    assert path.read_bytes() == data
    assert store.verify(m)  # checksum recomputed after the rewind


def test_offset_zero_starts_over_and_discards_the_stale_staging(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    old = meta(5, size=100)
    store.stage_chunk(old, 0, b"a" * 50)
    new = meta(9, 2, size=3)
    store.stage_chunk(new, 0, b"xyz")
    assert [p.name for p in tmp_path.glob("*.recv")] == [
        "snap-00000000000000000009-00000000000000000002.db.recv"
    ]
    with pytest.raises(SnapshotError):
        store.stage_chunk(old, 50, b"a" * 50)
    store.finish_staged(new)
    assert store.latest() is not None


def test_crash_debris_is_never_latest_and_is_cleaned(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    good, good_path = write_local(store, meta(10), b"good")
    store.close()
    # A crash during a local write, during a receive, between data rename and sidecar rename,
    # and in the middle of writing a sidecar (plus SQLite's own journal beside a staging file).
    debris = [
        "snap-00000000000000000020-00000000000000000001.db.tmp",
        "snap-00000000000000000020-00000000000000000001.db.tmp-journal",
        "snap-00000000000000000021-00000000000000000001.db.recv",
        "snap-00000000000000000022-00000000000000000001.db",
        "snap-00000000000000000023-00000000000000000001.meta.tmp",
    ]
    for name in debris:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "unrelated.txt").write_bytes(b"keep me")
    again = SnapshotStore(tmp_path)
    assert again.latest() == (good, good_path)
    assert sorted(again.removed_debris) == sorted(debris)
    assert (tmp_path / "unrelated.txt").exists()


def test_bad_sidecars_are_ignored_and_reported(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, retain=3)
    m1, _ = write_local(store, meta(10), b"one")
    m2, _ = write_local(store, meta(20), b"two")
    m3, p3 = write_local(store, meta(30), b"three")
    store.close()
    store.meta_path(m3).write_bytes(b"{not json")
    store.data_path(m2).write_bytes(b"tw")  # size no longer matches its sidecar
    again = SnapshotStore(tmp_path, retain=3)
    assert again.latest() == (m1, store.data_path(m1))
    assert len(again.problems) == 2
    assert p3.exists()  # left for forensics, not deleted


def test_verify_detects_bit_rot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    m, path = write_local(store, meta(3), b"x" * 1000)
    raw = bytearray(path.read_bytes())
    raw[500] ^= 1
    path.write_bytes(bytes(raw))
    assert not store.verify(m)


# ---------------------------------------------------------------------- recovery


def test_recover_new_node(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    rec = recover(storage)
    assert rec.restored.hard_state == HardState()
    assert rec.restored.entries == ()
    assert rec.snapshot_path is None
    storage.close()


def test_recover_log_after_snapshot_and_clamped_commit(tmp_path: Path) -> None:
    storage = open_storage(tmp_path, segment_bytes=200)
    storage.log.append([Entry(1, i, b"%d" % i) for i in range(1, 21)])
    storage.log.sync()
    storage.hard_state.save(HardState(term=1, vote=1, commit=25))  # hint past the log
    path = storage.snapshots.begin_write(meta(8))
    path.write_bytes(b"db")
    storage.snapshots.commit(meta(8))
    storage.log.truncate_prefix(8)
    storage.close()

    storage = open_storage(tmp_path, segment_bytes=200)
    rec = recover(storage, applied=12)
    assert rec.restored.snapshot.index == 8
    assert [e.index for e in rec.restored.entries] == list(range(9, 21))
    assert rec.restored.hard_state == HardState(term=1, vote=1, commit=20)
    assert rec.restored.applied == 12
    assert any("commit hint" in n for n in rec.notes)
    storage.close()


def test_recover_raises_a_term_behind_the_log_and_forgets_no_vote_it_had(
    tmp_path: Path,
) -> None:
    """A crash after a follower synced entries of a new term but before it saved that
    term (or before its very first hard state): the term comes from the log, with no vote
    (none was given in that term), and recovery says so. PySyncObj #201 reset the term."""
    storage = open_storage(tmp_path)
    storage.log.append([Entry(2, 1, b"a"), Entry(5, 2, b"b")])
    storage.log.sync()
    storage.close()  # crash before the first hard state file was written
    storage = open_storage(tmp_path)
    rec = recover(storage, applied=0)
    assert (rec.restored.hard_state.term, rec.restored.hard_state.vote) == (5, None)
    assert any("behind the log" in n for n in rec.notes)
    storage.hard_state.save(HardState(term=3, vote=2))  # an older term, with a vote
    storage.close()
    storage = open_storage(tmp_path)
    rec = recover(storage, applied=0)
    assert (rec.restored.hard_state.term, rec.restored.hard_state.vote) == (5, None)
    storage.hard_state.save(HardState(term=5, vote=2))
    storage.close()
    storage = open_storage(tmp_path)
    rec = recover(storage, applied=0)
    assert (rec.restored.hard_state.term, rec.restored.hard_state.vote) == (5, 2)  # kept
    assert not any("behind the log" in n for n in rec.notes)
    storage.close()


def test_recover_raises_a_term_behind_the_snapshot(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    m = meta(50, 7, size=4)
    storage.snapshots.stage_chunk(m, 0, b"snap")
    storage.snapshots.finish_staged(m)
    storage.log.reset(51)
    storage.close()  # crash before the hard state of term 7 was saved
    storage = open_storage(tmp_path)
    rec = recover(storage, applied=50)
    assert (rec.restored.hard_state.term, rec.restored.hard_state.vote) == (7, None)
    storage.close()


def test_recover_after_crash_between_snapshot_install_and_log_reset(tmp_path: Path) -> None:
    """Raft §7: the old log does not contain the snapshot's last entry, so it is stale."""
    storage = open_storage(tmp_path)
    storage.log.append([Entry(1, i, b"old") for i in range(1, 6)])
    storage.log.sync()
    m = meta(50, 3, size=4)
    storage.snapshots.stage_chunk(m, 0, b"snap")
    storage.snapshots.finish_staged(m)
    storage.close()  # crash before storage.log.reset(51)

    storage = open_storage(tmp_path)
    rec = recover(storage, applied=50)
    assert rec.restored.snapshot == m
    assert rec.restored.entries == ()
    assert storage.log.first_index == 51
    assert rec.restored.hard_state.commit == 50
    storage.log.append([Entry(3, 51, b"next")])
    storage.close()


def test_recover_keeps_log_that_matches_the_snapshot(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    storage.log.append([Entry(2, i, b"e") for i in range(1, 11)])
    storage.log.sync()
    m = meta(6, 2, size=1)
    storage.snapshots.stage_chunk(m, 0, b"s")
    storage.snapshots.finish_staged(m)
    storage.close()

    storage = open_storage(tmp_path)
    rec = recover(storage)
    assert [e.index for e in rec.restored.entries] == [7, 8, 9, 10]
    storage.close()


def test_recover_refuses_a_gap_between_snapshot_and_log(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log") as log:
        log.reset(100)
    HardStateStore(tmp_path).close()
    storage = open_storage(tmp_path)
    with pytest.raises(StorageError, match="missing"):
        recover(storage)
    storage.close()
