"""The on-disk Raft log: appends, suffix replacement, compaction, and crash recovery."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsql.raft.messages import Entry, EntryKind
from raftsql.storage import logstore
from raftsql.storage.logstore import (
    CorruptLogError,
    LogStore,
    StorageError,
    encode_records,
    segment_name,
)

SEG_HEADER = 16
REC_OVERHEAD = 8 + 17


def ents(lo: int, hi: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    """Entries lo..hi-1, data derived from index (and tag) so mix-ups are visible."""
    return [Entry(term, i, tag + b"e%d" % i) for i in range(lo, hi)]


def seg_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def record_size(e: Entry) -> int:
    return REC_OVERHEAD + len(e.data)


# ---------------------------------------------------------------------- basics


def test_new_log_is_empty(tmp_path: Path) -> None:
    log, report = LogStore.open(tmp_path / "log")
    assert (log.first_index, log.last_index, len(log)) == (1, 0, 0)
    assert log.term_at(1) is None
    assert log.entries(1, 1) == []
    assert report.clean and report.segments == 0
    log.close()


def test_append_read_reopen(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with LogStore(d, segment_bytes=512) as log:
        log.append(ents(1, 11, term=1))
        log.append(ents(11, 31, term=2))
        log.append([Entry(3, 31, b"", EntryKind.NOOP)])
        log.sync()
        assert log.segment_count > 1
        want = ents(1, 11, 1) + ents(11, 31, 2) + [Entry(3, 31, b"", EntryKind.NOOP)]
        assert log.entries(1, 32) == want
    with LogStore(d, segment_bytes=512) as log:
        assert log.report.clean
        assert (log.first_index, log.last_index, log.last_term) == (1, 31, 3)
        assert log.entries(1, 32) == want
        assert [log.term_at(i) for i in (0, 1, 10, 11, 30, 31, 32)] == [None, 1, 1, 2, 2, 3, None]
        assert log.entries(5, 15) == want[4:14]


def test_batch_goes_in_one_segment_and_segments_roll_between_batches(tmp_path: Path) -> None:
    with LogStore(tmp_path, segment_bytes=200) as log:
        log.append(ents(1, 21))  # ~600 bytes: one batch is never split
        assert log.segment_count == 1
        log.append(ents(21, 22))
        assert log.segment_count == 2
        assert [p.name for p in seg_files(tmp_path)] == [segment_name(1), segment_name(21)]


def test_entries_max_bytes(tmp_path: Path) -> None:
    fixed = [Entry(1, i, b"%04d" % i) for i in range(1, 41)]
    size = record_size(fixed[0])
    with LogStore(tmp_path, segment_bytes=300) as log:
        for i in range(0, 40, 4):
            log.append(fixed[i : i + 4])
        assert log.segment_count > 2
        assert len(log.entries(1, 41, max_bytes=0)) == 1
        assert log.entries(1, 41, max_bytes=size * 10) == fixed[0:10]
        assert log.entries(3, 41, max_bytes=size * 10 + 1) == fixed[2:13]
        assert log.entries(3, 8, max_bytes=size * 10) == fixed[2:7]
        assert log.entries(1, 41, max_bytes=1 << 30) == fixed


def test_out_of_range_reads(tmp_path: Path) -> None:
    with LogStore(tmp_path) as log:
        log.append(ents(1, 5))
        for lo, hi in [(0, 2), (1, 6), (4, 3)]:
            with pytest.raises(IndexError):
                log.entries(lo, hi)


def test_bad_appends_leave_the_log_unchanged(tmp_path: Path) -> None:
    with LogStore(tmp_path) as log:
        log.append(ents(1, 5))
        with pytest.raises(ValueError, match="gap"):
            log.append(ents(7, 8))
        with pytest.raises(ValueError, match="contiguous"):
            log.append([Entry(2, 3, b"a"), Entry(2, 5, b"b")])
        with pytest.raises(ValueError, match="out of range"):
            log.append([Entry(-1, 5, b"a")])
        assert log.entries(1, 5) == ents(1, 5)
        log.reset(10)
        with pytest.raises(ValueError, match="cannot rewrite"):
            log.append(ents(5, 12))


# ---------------------------------------------------------------------- suffix replacement


def test_conflicting_suffix_is_replaced_within_a_segment(tmp_path: Path) -> None:
    with LogStore(tmp_path) as log:
        log.append(ents(1, 11, term=1))
        log.append(ents(6, 8, term=2, tag=b"new"))
        log.sync()
        assert log.last_index == 7
        assert log.entries(1, 8) == ents(1, 6, 1) + ents(6, 8, 2, b"new")
        assert [log.term_at(i) for i in (5, 6, 7, 8)] == [1, 2, 2, None]
    with LogStore(tmp_path) as log:
        assert log.entries(1, 8) == ents(1, 6, 1) + ents(6, 8, 2, b"new")


def test_conflicting_suffix_spanning_segments(tmp_path: Path) -> None:
    with LogStore(tmp_path, segment_bytes=150) as log:
        for i in range(1, 31, 3):
            log.append(ents(i, i + 3, term=1))
        log.sync()
        before = log.segment_count
        assert before >= 5
        log.append(ents(5, 9, term=4, tag=b"x"))
        log.sync()
        assert log.segment_count < before
        assert log.last_index == 8
    with LogStore(tmp_path, segment_bytes=150) as log:
        assert log.entries(1, 9) == ents(1, 5, 1) + ents(5, 9, 4, b"x")
        log.append(ents(1, 3, term=5))  # replace from the very first entry
        assert log.entries(1, 3) == ents(1, 3, 5)
        assert log.last_index == 2


# ---------------------------------------------------------------------- compaction and reset


def test_truncate_prefix_drops_whole_segments(tmp_path: Path) -> None:
    written: list[Entry] = []
    with LogStore(tmp_path, segment_bytes=150) as log:
        for i in range(1, 61, 3):
            written += ents(i, i + 3, term=1 + i // 20)
            log.append(written[-3:])
        log.sync()
        n = len(seg_files(tmp_path))
        first = log.truncate_prefix(30)
        assert 1 < first <= 31
        assert len(seg_files(tmp_path)) < n
        assert log.first_index == first
        assert log.term_at(first - 1) is None
        assert log.entries(first, 61) == written[first - 1 :]
        assert [log.term_at(i) for i in range(first, 61)] == [e.term for e in written[first - 1 :]]
        log.truncate_prefix(10_000)  # never drops the last segment: the log keeps its place
        assert log.segment_count == 1
        assert log.last_index == 60
    with LogStore(tmp_path, segment_bytes=150) as log:
        assert log.last_index == 60
        assert log.segment_count == 1


def test_reset_after_snapshot(tmp_path: Path) -> None:
    with LogStore(tmp_path, segment_bytes=150) as log:
        log.append(ents(1, 30))
        log.reset(101)
        assert (log.first_index, log.last_index) == (101, 100)
        assert [p.name for p in seg_files(tmp_path)] == [segment_name(101)]
    with LogStore(tmp_path) as log:
        assert (log.first_index, log.last_index) == (101, 100)
        with pytest.raises(ValueError, match="gap"):
            log.append(ents(103, 104))
        log.append(ents(101, 104, term=7))
        log.sync()
    with LogStore(tmp_path) as log:
        assert log.entries(101, 104) == ents(101, 104, 7)


# ---------------------------------------------------------------------- crash recovery


def _build(d: Path, n: int = 12, segment_bytes: int = 200, preallocate: int = 0) -> list[Entry]:
    """A log of two or more segments; returns the entries. Without ``preallocate`` every
    file ends with its last record, so the tests below can cut and flip its bytes."""
    all_entries = []
    with LogStore(d, segment_bytes=segment_bytes, preallocate=preallocate) as log:
        for i in range(1, n + 1, 3):
            batch = ents(i, min(i + 3, n + 1), term=1 + i // 6)
            log.append(batch)
            all_entries += batch
        log.sync()
        assert log.segment_count >= 2
    return all_entries


def _fresh_copy(base: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    return work


def _built_tail(base: Path) -> tuple[list[Entry], str, bytes, int]:
    """A log from ``_build``: its entries, the last segment's name and bytes, and where
    that segment's last record starts."""
    entries = _build(base)
    last_seg = seg_files(base)[-1].name
    full = (base / last_seg).read_bytes()
    return entries, last_seg, full, len(full) - record_size(entries[-1])


def test_torn_last_record_is_cut_at_every_byte_offset(tmp_path: Path) -> None:
    base = tmp_path / "base"
    entries, last_seg, full, rec_start = _built_tail(base)
    for cut in range(rec_start, len(full)):
        work = _fresh_copy(base, tmp_path / "work")
        (work / last_seg).write_bytes(full[:cut])
        log, report = LogStore.open(work, segment_bytes=200)
        assert log.last_index == len(entries) - 1, cut
        assert log.entries(1, len(entries)) == entries[:-1]
        if any(full[rec_start:cut]):
            assert report.truncated_bytes == cut - rec_start
            assert report.first_lost_index == len(entries)
            assert report.truncated_path is not None
            assert report.truncated_path.endswith(last_seg)
        else:
            # cut at a record boundary, or inside the length's leading zero bytes, which
            # read as preallocated space: nothing torn that could be told from zeros
            assert report.clean
        # The log is usable at once, and the repair itself was durable.
        log.append([Entry(9, len(entries), b"again")])
        log.sync()
        log.close()
        with LogStore(work) as log2:
            assert log2.report.clean
            assert log2.entries(len(entries), len(entries) + 1) == [
                Entry(9, len(entries), b"again")
            ]


def test_every_cut_of_the_last_segment_keeps_the_complete_records(tmp_path: Path) -> None:
    base = tmp_path / "base"
    entries = _build(base)
    last = seg_files(base)[-1]
    first = int(last.name[:20])
    full = last.read_bytes()
    # Record boundaries in the last segment.
    ends = []
    pos = SEG_HEADER
    for e in entries[first - 1 :]:
        pos += record_size(e)
        ends.append(pos)
    for cut in range(SEG_HEADER, len(full) + 1):
        work = _fresh_copy(base, tmp_path / "work")
        (work / last.name).write_bytes(full[:cut])
        with LogStore(work) as log:
            complete = sum(1 for end in ends if end <= cut)
            assert log.last_index == first - 1 + complete, cut
            assert log.entries(1, log.last_index + 1) == entries[: log.last_index]


def test_flipped_byte_in_last_record_is_cut(tmp_path: Path) -> None:
    base = tmp_path / "base"
    entries, last_seg, full, rec_start = _built_tail(base)
    for pos in range(rec_start, len(full)):
        work = _fresh_copy(base, tmp_path / "work")
        damaged = bytearray(full)
        damaged[pos] ^= 0x41
        (work / last_seg).write_bytes(bytes(damaged))
        with LogStore(work) as log:
            assert log.last_index == len(entries) - 1, pos
            assert log.report.truncated_offset == rec_start
            assert log.report.reason


def test_flipped_byte_in_a_sealed_segment_raises(tmp_path: Path) -> None:
    """Synced, maybe committed entries: recovery must not silently drop them."""
    base = tmp_path / "base"
    _build(base)
    first_seg = seg_files(base)[0].name
    full = (base / first_seg).read_bytes()
    for pos in range(0, len(full)):
        work = _fresh_copy(base, tmp_path / "work")
        damaged = bytearray(full)
        damaged[pos] ^= 0x10
        (work / first_seg).write_bytes(bytes(damaged))
        with pytest.raises(CorruptLogError):
            LogStore(work)


def test_truncated_sealed_segment_raises(tmp_path: Path) -> None:
    _build(tmp_path)
    first = seg_files(tmp_path)[0]
    first.write_bytes(first.read_bytes()[:-3])
    with pytest.raises(CorruptLogError, match="sealed"):
        LogStore(tmp_path)


def test_missing_middle_segment_raises(tmp_path: Path) -> None:
    _build(tmp_path, n=30, segment_bytes=150)
    files = seg_files(tmp_path)
    assert len(files) >= 3
    files[1].unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        LogStore(tmp_path)


def test_foreign_file_with_segment_name_raises(tmp_path: Path) -> None:
    _build(tmp_path)
    seg_files(tmp_path)[-1].write_bytes(b"not a segment at all")
    with pytest.raises(CorruptLogError, match="magic"):
        LogStore(tmp_path)


def test_zero_filled_tail_is_kept_as_preallocated_space(tmp_path: Path) -> None:
    """After power loss a file can be longer than its data, the rest reading as zeros: no
    record was torn (none starts with a zero length), and the space serves the appends."""
    entries = _build(tmp_path)
    last = seg_files(tmp_path)[-1]
    with open(last, "ab") as f:
        f.write(bytes(4096))
    size = last.stat().st_size
    with LogStore(tmp_path) as log:  # large segments: the next append does not roll
        assert log.last_index == len(entries)
        assert log.report.clean
        log.append([Entry(7, len(entries) + 1, b"into the zeros")])
        log.sync()
    assert last.stat().st_size == size  # written in place: the file did not grow
    with LogStore(tmp_path) as log:
        assert log.report.clean
        assert log.entries(1, len(entries) + 2) == [
            *entries,
            Entry(7, len(entries) + 1, b"into the zeros"),
        ]


def test_a_few_zero_bytes_at_the_end_are_not_a_torn_header(tmp_path: Path) -> None:
    entries = _build(tmp_path)
    with open(seg_files(tmp_path)[-1], "ab") as f:
        f.write(bytes(3))
    with LogStore(tmp_path) as log:
        assert log.report.clean and log.last_index == len(entries)


def test_zeros_in_a_sealed_segment_are_corruption(tmp_path: Path) -> None:
    """Sealed segments are trimmed to their records before the next one starts, so zeros
    there are not preallocated space: refuse, as for any damage to synced entries."""
    _build(tmp_path)
    with open(seg_files(tmp_path)[0], "ab") as f:
        f.write(bytes(64))
    with pytest.raises(CorruptLogError, match="sealed"):
        LogStore(tmp_path)


# ---------------------------------------------------------------------- preallocation


def _data_end(path: Path) -> int:
    """Offset just past the last record of a segment file (records parsed by length)."""
    raw = path.read_bytes()
    pos = SEG_HEADER
    while pos + 8 <= len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "big")
        if n == 0:
            break
        pos += 8 + n
    return pos


def test_the_active_segment_is_written_with_zeros_ahead(tmp_path: Path) -> None:
    with LogStore(tmp_path, preallocate=8192) as log:
        log.append(ents(1, 4))
        log.sync()
        (seg,) = seg_files(tmp_path)
        data_end = SEG_HEADER + sum(record_size(e) for e in ents(1, 4))
        assert _data_end(seg) == data_end
        assert seg.stat().st_size == data_end + 8192
        assert seg.read_bytes()[data_end:] == bytes(8192)
        log.append(ents(4, 6))  # into the zeros: the file does not grow
        assert seg.stat().st_size == data_end + 8192
        log.append([Entry(1, 6, b"x" * 9000)])  # past them: zeros written ahead again
        end = _data_end(seg)
        assert seg.stat().st_size == end + 8192
    with LogStore(tmp_path, preallocate=8192) as log:
        assert log.report.clean
        assert log.entries(1, 7) == [*ents(1, 6), Entry(1, 6, b"x" * 9000)]


def test_preallocation_stops_at_the_segment_size(tmp_path: Path) -> None:
    with LogStore(tmp_path, segment_bytes=300, preallocate=1 << 20) as log:
        log.append(ents(1, 3))
        assert seg_files(tmp_path)[0].stat().st_size == 300
        log.append([Entry(1, 3, b"y" * 400)])  # one batch may exceed a segment: no zeros then
        assert seg_files(tmp_path)[-1].stat().st_size == _data_end(seg_files(tmp_path)[-1])


def test_sealed_segments_are_trimmed_to_their_records(tmp_path: Path) -> None:
    with LogStore(tmp_path, segment_bytes=300, preallocate=4096) as log:
        for i in range(1, 40, 3):
            log.append(ents(i, i + 3))
        log.sync()
        files = seg_files(tmp_path)
        assert len(files) >= 3
        for sealed in files[:-1]:
            assert sealed.stat().st_size == _data_end(sealed), sealed.name
        assert files[-1].stat().st_size > _data_end(files[-1])
    with LogStore(tmp_path, segment_bytes=300) as log:
        assert log.report.clean
        assert log.entries(1, 40) == ents(1, 40)


def test_torn_record_in_preallocated_space_is_cut_at_every_byte_offset(tmp_path: Path) -> None:
    """A crash mid-append into the zeros leaves a prefix of the record, then zeros."""
    base = tmp_path / "base"
    entries, last_seg, full, rec_start = _built_tail(base)
    first_nonzero = next(i for i in range(rec_start, len(full)) if full[i])
    for cut in range(first_nonzero + 1, len(full)):
        work = _fresh_copy(base, tmp_path / "work")
        (work / last_seg).write_bytes(full[:cut] + bytes(512))
        with LogStore(work, segment_bytes=200) as log:
            assert log.last_index == len(entries) - 1, cut
            assert log.entries(1, len(entries)) == entries[:-1]
            assert log.report.truncated_offset == rec_start
            assert log.report.truncated_bytes == cut - rec_start + 512
            log.append([Entry(9, len(entries), b"again")])
            log.sync()
        with LogStore(work) as log:
            assert log.report.clean
            assert log.entries(len(entries), len(entries) + 1) == [Entry(9, len(entries), b"again")]


def test_replaced_suffix_does_not_come_back_from_the_zeros(tmp_path: Path) -> None:
    """Suffix replacement trims the file (zeros and old records alike) before writing."""
    with LogStore(tmp_path, preallocate=4096) as log:
        log.append([Entry(1, i, b"old-%d" % i) for i in range(1, 21)])
        log.sync()
        log.append([Entry(2, 5, b"new")])
        log.sync()
    with LogStore(tmp_path) as log:
        assert log.report.clean
        assert log.last_index == 5
        assert log.entries(5, 6) == [Entry(2, 5, b"new")]


def goes_on_after_a_failed_append(log: LogStore, d: Path) -> None:
    """After a failed append of entries 3.. to a log of 1..2: nothing of it is left, the
    log takes 3..4, and reopens clean."""
    assert log.last_index == 2
    log.append(ents(3, 5))
    log.sync()
    log.close()
    with LogStore(d) as again:
        assert again.report.clean
        assert again.entries(1, 5) == ents(1, 5)


def test_failed_preallocation_leaves_the_log_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogStore(tmp_path, preallocate=4096)
    log.append(ents(1, 3))
    log.sync()
    real = logstore._write_zeros

    def enospc(fd: int, start: int, end: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logstore, "_write_zeros", enospc)
    with pytest.raises(OSError, match="No space"):
        log.append([Entry(1, 3, b"z" * 5000)])
    monkeypatch.setattr(logstore, "_write_zeros", real)
    goes_on_after_a_failed_append(log, tmp_path)


def test_garbage_length_does_not_allocate_it(tmp_path: Path) -> None:
    entries = _build(tmp_path)
    with open(seg_files(tmp_path)[-1], "ab") as f:
        f.write(b"\xff\xff\xff\xf0" + b"\0" * 100)
    tracemalloc.start()
    try:
        with LogStore(tmp_path) as log:
            assert log.last_index == len(entries)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_stale_record_with_older_term_after_new_head_is_cut(tmp_path: Path) -> None:
    """A new head (index 4, term 3) followed by a stale index 5 from term 2 (a log that
    never existed) is what an unsynced suffix replacement could leave: cut it."""
    with LogStore(tmp_path, preallocate=0) as log:
        log.append([*ents(1, 4, term=2), Entry(3, 4, b"new")])
        log.sync()
    stale, _ = encode_records([Entry(2, 5, b"stale")], 5)
    with open(seg_files(tmp_path)[-1], "ab") as f:
        f.write(stale)
    with LogStore(tmp_path) as log:
        assert log.last_index == 4
        assert "term goes backwards" in (log.report.reason or "")


def test_leftover_temp_segment_is_removed(tmp_path: Path) -> None:
    entries = _build(tmp_path)
    (tmp_path / (segment_name(len(entries) + 1) + ".tmp")).write_bytes(b"half")
    with LogStore(tmp_path) as log:
        assert log.report.removed_temp_files == (segment_name(len(entries) + 1) + ".tmp",)
        assert log.last_index == len(entries)
    assert not list(tmp_path.glob("*.tmp"))


def test_corruption_after_open_is_caught_on_read(tmp_path: Path) -> None:
    _build(tmp_path)
    with LogStore(tmp_path) as log:
        first = seg_files(tmp_path)[0]
        data = bytearray(first.read_bytes())
        data[SEG_HEADER + REC_OVERHEAD] ^= 1  # first byte of entry 1's data
        first.write_bytes(bytes(data))
        with pytest.raises(CorruptLogError, match="CRC"):
            log.entries(1, 2)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from raftsql.raft.messages import Entry
    from raftsql.storage.logstore import LogStore
    log = LogStore(sys.argv[1], segment_bytes=4096)
    i = log.last_index + 1
    while True:
        log.append([Entry(1, j, b"%d" % j * 10) for j in range(i, i + 7)])
        log.sync()
        i += 7
        print(i - 1, flush=True)
    """
)


def test_kill_9_during_appends_keeps_every_synced_entry(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        synced = 0
        for _ in range(40 + 30 * round_):
            line = proc.stdout.readline()
            assert line, "writer died"
            synced = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with LogStore(tmp_path, segment_bytes=4096) as log:
            assert log.last_index >= synced
            got = log.entries(1, log.last_index + 1)
            assert got == [Entry(1, j, b"%d" % j * 10) for j in range(1, log.last_index + 1)]


# ---------------------------------------------------------------------- model check

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 6), st.integers(1, 6), st.booleans()),
        st.tuples(st.just("compact"), st.integers(0, 20)),
        st.tuples(st.just("reset"), st.integers(0, 3)),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("sync")),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_operations_match_a_model(ops: list[tuple]) -> None:
    """Appends with suffix replacement, compaction, resets and restarts against a dict."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "log"
        log = LogStore(d, segment_bytes=120)
        model: dict[int, Entry] = {}
        first, term = 1, 1
        try:
            for op in ops:
                last = first + len(model) - 1
                if op[0] == "append":
                    _, back, n, bump = op
                    term += bump
                    start = max(first, last + 1 - back)
                    batch = [Entry(term, i, b"%d-%d" % (term, i)) for i in range(start, start + n)]
                    log.append(batch)
                    model = {i: e for i, e in model.items() if i < start}
                    model.update({e.index: e for e in batch})
                elif op[0] == "compact":
                    first = log.truncate_prefix(first + op[1])
                    model = {i: e for i, e in model.items() if i >= first}
                elif op[0] == "reset":
                    first = last + 1 + op[1]
                    log.reset(first)
                    model = {}
                elif op[0] == "reopen":
                    log.sync()
                    log.close()
                    log = LogStore(d, segment_bytes=120)
                    assert log.report.clean
                else:
                    log.sync()
                last = first + len(model) - 1
                assert (log.first_index, log.last_index) == (first, last)
                assert log.entries(first, last + 1) == [model[i] for i in range(first, last + 1)]
                for i in (first - 1, first, last, last + 1):
                    want = model[i].term if i in model else None
                    assert log.term_at(i) == want
        finally:
            log.close()


# ---------------------------------------------------------------------- I/O failures


def test_failed_fsync_poisons_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed fsync the kernel may have dropped the pages and report success on a
    retry; acknowledging anything after that would be a lie, so every call fails."""
    log = LogStore(tmp_path)
    log.append(ents(1, 3))

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(logstore, "_fdatasync", broken)
    with pytest.raises(StorageError, match="restart"):
        log.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError, match="failed earlier"):
        log.append(ents(3, 4))
    with pytest.raises(StorageError, match="failed earlier"):
        log.sync()
    log.close()


def test_failed_write_leaves_no_partial_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogStore(tmp_path, preallocate=0)
    log.append(ents(1, 3))
    size = seg_files(tmp_path)[0].stat().st_size
    real = logstore._pwrite_all

    def half_then_enospc(fd: int, buf: bytes, offset: int) -> None:
        real(fd, buf[: len(buf) // 2], offset)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logstore, "_pwrite_all", half_then_enospc)
    with pytest.raises(OSError, match="No space"):
        log.append(ents(3, 10))
    monkeypatch.undo()
    assert seg_files(tmp_path)[0].stat().st_size == size
    goes_on_after_a_failed_append(log, tmp_path)
