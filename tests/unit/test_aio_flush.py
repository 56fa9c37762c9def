"""Flushing the log's tail through Linux AIO: ``storage/aio.py`` and
``LogStore.append_at_tail`` / ``tail_flushed``.

The event loop appends at the tail and starts the fdatasync; it must never wait for the
store's lock (a compaction in a thread holds it through directory fsyncs), and must decline
every append that needs an fsync of its own on the way. A failed flush poisons the store
exactly as a failed ``sync`` does.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path

import pytest

from raftsql.raft.messages import Entry, EntryKind
from raftsql.storage.aio import AioSync, open_aio
from raftsql.storage.logstore import LogStore, StorageError


def ents(lo: int, hi: int, term: int = 1, size: int = 0) -> list[Entry]:
    """Entries lo..hi (inclusive), data told apart by index (padded to ``size``)."""
    return [
        Entry(term, i, (b"e%d" % i).ljust(size, b"."), EntryKind.NORMAL) for i in range(lo, hi + 1)
    ]


def wait_flushes(aio: AioSync, expected: int) -> list[int]:
    results: list[int] = []
    while len(results) < expected:
        assert select.select([aio.eventfd], [], [], 10)[0], "no completion within 10 s"
        results += aio.collect()
    return results


@pytest.fixture
def aio() -> AioSync:
    a = open_aio()
    assert a is not None, "Linux AIO is available on the machines CI runs on"
    yield a
    a.close()


def test_a_flush_completes_on_the_eventfd(aio: AioSync, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"data", 0)
        assert aio.collect() == []  # nothing completed yet: no waiting, no result
        aio.submit([fd])
        assert aio.pending == 1
        assert wait_flushes(aio, 1) == [0]
        assert aio.pending == 0
    finally:
        os.close(fd)


def test_a_refused_flush_raises_and_starts_nothing(aio: AioSync, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)  # a descriptor that is no longer open
    with pytest.raises(OSError):
        aio.submit([fd])
    assert aio.pending == 0


def test_append_at_tail_writes_what_append_would(aio: AioSync, tmp_path: Path) -> None:
    with LogStore(tmp_path / "log") as store:
        assert store.append_at_tail(ents(1, 3)) is None, "no segment yet: append() creates it"
        store.append(ents(1, 3))
        store.sync()
        fd = store.append_at_tail(ents(4, 9))
        assert fd is not None
        aio.submit([fd])
        [result] = wait_flushes(aio, 1)
        store.tail_flushed(result)
        assert store.last_index == 9
        assert store.entries(1, 10) == ents(1, 9)
    with LogStore(tmp_path / "log") as reopened:
        assert reopened.entries(1, 10) == ents(1, 9)


def test_append_at_tail_declines_what_needs_an_fsync_of_its_own(tmp_path: Path) -> None:
    kib = 1000  # a record is this plus 25 bytes; a segment holds 16 + 4 such records
    with LogStore(tmp_path / "log", segment_bytes=4200) as store:
        store.append(ents(1, 2, size=kib))
        store.sync()
        # a suffix replaced (truncation first), a gap: declined, nothing written
        assert store.append_at_tail(ents(2, 3, term=2)) is None
        assert store.append_at_tail(ents(4, 4)) is None
        assert store.last_index == 2
        # a batch that does not fit in the segment (a new one: the old is sealed first)
        assert store.append_at_tail(ents(3, 5, size=kib)) is None
        assert store.last_index == 2
        store.append(ents(3, 5, size=kib))  # rolls: the new file's name is not yet durable
        assert store.segment_count == 2
        assert store.append_at_tail(ents(6, 6)) is None
        store.sync()
        assert store.append_at_tail(ents(6, 6)) is not None
        store.tail_flushed(0)
        assert store.entries(1, 7) == ents(1, 2, size=kib) + ents(3, 5, size=kib) + ents(6, 6)


def test_append_at_tail_never_waits_for_the_lock(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log") as store:
        store.append(ents(1, 1))
        store.sync()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._lock:  # what a compaction in a worker thread does
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        try:
            assert held.wait(10)
            assert store.append_at_tail(ents(2, 2)) is None
        finally:
            release.set()
            t.join()
        assert store.last_index == 1

        # nor does reporting a flush: with the lock held, the segment stays dirty and the
        # next sync flushes it again
        assert store.append_at_tail(ents(2, 2)) is not None
        held.clear()
        release.clear()
        t = threading.Thread(target=hold)
        t.start()
        try:
            assert held.wait(10)
            store.tail_flushed(0)
        finally:
            release.set()
            t.join()
        store.sync()
        assert store.entries(1, 3) == ents(1, 2)


def test_a_failed_tail_flush_poisons_the_store(tmp_path: Path) -> None:
    with LogStore(tmp_path / "log") as store:
        store.append(ents(1, 1))
        store.sync()
        assert store.append_at_tail(ents(2, 2)) is not None
        with pytest.raises(StorageError, match="restart the node"):
            store.tail_flushed(-5)  # EIO
        # fsyncgate: no later success may acknowledge what the failed flush lost
        with pytest.raises(StorageError):
            store.append(ents(3, 3))
        with pytest.raises(StorageError):
            store.sync()
        assert store.append_at_tail(ents(3, 3)) is None
