"""The machine's own limits, so every replicated figure can be read as a fraction of them.

A replicated write that waits for the disk can never be faster than the disk's sync rate
(unless syncs are shared by a batch), and raftsql applies through SQLite, so two ceilings
matter:

- ``fsync``: how many small appends + ``os.fdatasync`` (and + ``os.fsync``) per second the
  filesystem the benchmarks write to can make, with the latency of each;
- ``apsw``: SQLite alone (through apsw, WAL mode, ``synchronous=FULL``), single-row
  parameterized INSERTs of 100-byte payloads committed in batches of 1, 10, 100 and 1000
  rows; batch 1 is one commit, hence at least one sync, per row;
- ``floor``: one synchronous caller's writes replicated to a majority of three processes
  with nothing but blocking sockets and ``fdatasync`` (``replication_floor``): the
  least any Python design must pay per write here; and the same with a trio event loop
  in each node, the fsync on the loop or in a worker thread (``trio_floor``): the least a
  design shaped like raftsql's must pay.

Files go in a fresh directory under the system temp dir, which is where the cluster
benchmarks put their data, so these are the ceilings that apply to them; the result records
which filesystem that is (and whether the repository lives on the same one).

    python -m benchmarks.limits [--quick] [--duration 2]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from benchmarks import common, replication_floor, trio_floor

PAYLOAD = b"x" * 100
QUICK_SECONDS = 0.3
"""Seconds per measurement in ``--quick`` mode (2 otherwise, or ``--duration``)."""
BATCH_SIZES = [1, 10, 100, 1000]
INSERT = "INSERT INTO t (payload) VALUES (?)"


def filesystem(path: str | Path) -> dict[str, Any]:
    """The mount holding ``path`` (longest matching mount point in /proc/mounts).

    Recorded because an fsync rate means nothing without knowing which device and
    filesystem it was measured on (tmpfs would make every sync free).
    """
    real = os.path.realpath(path)
    best = {"mount_point": "/", "fstype": "unknown", "device": "unknown"}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        device, mount_point, fstype, *_ = line.split()
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best["mount_point"]):
            best = {"mount_point": mount_point, "fstype": fstype, "device": device}
    return {"path": real, "st_dev": os.stat(real).st_dev, **best}


def _sync_loop(path: Path, sync: Callable[[int], None], seconds: float) -> list[float]:
    """Append 100 bytes and sync, again and again for ``seconds``; the time of each pair.

    Appending (not overwriting) is what a log does, and makes each sync also persist the
    file's new size, as a WAL or Raft log append must.
    """
    latencies: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        end = time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            if start >= end:
                break
            os.write(fd, PAYLOAD)
            sync(fd)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return latencies


def measure_sync(directory: Path, seconds: float) -> list[dict[str, Any]]:
    """Points for ``fdatasync`` and ``fsync`` (one append + one sync per op)."""
    points = []
    for name, sync in (("fdatasync", os.fdatasync), ("fsync", os.fsync)):
        latencies = _sync_loop(directory / f"{name}.bin", sync, seconds)
        p = common.point("fsync", name, 1, len(latencies), sum(latencies), latencies)
        common.progress(common.describe(p))
        points.append(p)
    return points


def _open_db(path: Path) -> apsw.Connection:
    """A connection configured the way a durable SQLite store is: WAL, synchronous=FULL."""
    con = apsw.Connection(str(path))
    mode = con.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"could not switch {path} to WAL mode (got {mode!r})")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB)")
    return con


def _insert_batches(con: apsw.Connection, batch: int, seconds: float) -> tuple[int, list[float]]:
    """Commit ``batch`` single-row INSERTs per transaction until ``seconds`` are up.

    Returns the rows inserted and the latency of each commit (the whole batch), which is
    what a caller waiting for its batch to be durable would see.
    """
    cursor = con.cursor()
    rows = 0
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        if start >= end:
            break
        cursor.execute("BEGIN")
        for _ in range(batch):
            cursor.execute(INSERT, (PAYLOAD,))
        cursor.execute("COMMIT")
        latencies.append(time.perf_counter() - start)
        rows += batch
    return rows, latencies


def measure_apsw(directory: Path, seconds: float) -> list[dict[str, Any]]:
    """Points ``insert_batch_<n>``: rows/s of durable single-row INSERTs, n rows a commit."""
    points = []
    for batch in BATCH_SIZES:
        db = directory / f"batch{batch}.db"
        con = _open_db(db)
        try:
            rows, latencies = _insert_batches(con, batch, seconds)
        finally:
            con.close()
        p = common.point(
            "apsw",
            f"insert_batch_{batch}",
            1,
            rows,
            sum(latencies),
            latencies,
            batch_rows=batch,
            commits=len(latencies),
            latency_is="per commit (whole batch)",
        )
        common.progress(common.describe(p))
        points.append(p)
    return points


def run(quick: bool = False, duration: float | None = None) -> dict[str, Any]:
    """Measure the disk's sync rate, SQLite's durable insert rate and the replication
    floor; save and return them."""
    seconds = duration or (QUICK_SECONDS if quick else 2.0)
    directory = Path(tempfile.mkdtemp(prefix="raftsql-limits-", dir=tempfile.gettempdir()))
    try:
        where = {"data": filesystem(directory), "repository": filesystem(Path.cwd())}
        common.progress(
            f"measuring in {directory} ({where['data']['fstype']} on "
            f"{where['data']['device']}), {seconds:g} s per point"
        )
        points = measure_sync(directory, seconds) + measure_apsw(directory, seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    points += replication_floor.run(quick, duration) + trio_floor.run(quick, duration)
    data = {
        "points": points,
        "duration_s": seconds,
        "filesystem": where,
        "same_filesystem_as_repository": where["data"]["st_dev"] == where["repository"]["st_dev"],
        "sqlite_version": apsw.sqlite_lib_version(),
        "apsw_version": apsw.apsw_version(),
    }
    common.save("limits", data, quick)
    return data


def main() -> None:
    common.run_timed_main(__doc__, run, "point", QUICK_SECONDS)


if __name__ == "__main__":
    main()
