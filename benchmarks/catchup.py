"""Catch-up: how fast a follower that was down gets current again, from the log and from a
snapshot.

Both parts stop a follower of a local 3-node cluster (kill -9, fsync on), write while it is
down, restart it and time it until its applied index reaches the leader's commit index (no
writes run meanwhile, so that index stands still):

- **log**: the log is never compacted (``snapshot_every`` 10**9), so the leader resends the
  missed entries (default 20,000 single-row INSERTs, 100 per request: 200 entries);
- **snapshot**: snapshots every 500 entries keeping 50 behind, ~50 MB of 100 B..1 KB rows
  written while the follower is down, and a last snapshot taken on the leader at the end
  so that it holds the whole database: the leader has compacted its log past the follower
  and must stream the snapshot. The follower's snapshot directory is watched to time the
  transfer itself, and its ``snapshots_installed`` counter must have moved, or the figure
  would measure something else.

Times start at the restart, so they include the node process starting (Python, imports,
recovery); ``serving_s`` says how much of it that was.

    python -m benchmarks.catchup [--quick] [--writes 20000] [--megabytes 50]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql import errors
from raftsql.client.client import Client
from raftsql.cluster import LocalCluster

NAME = "catchup"
CREATE = "CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"
INSERT_TEXT = "INSERT INTO rows (payload) VALUES (?)"
INSERT_BLOB = "INSERT INTO rows (payload) VALUES (randomblob(?))"
"""randomblob() runs on the nodes (deterministically: raftsql seeds it per entry), so tens of
megabytes of incompressible rows cost the client nothing to send."""
POLL_S = 0.01
MB = 1_000_000
LOADERS = 4
SNAP_EVERY = 500
SNAP_RETAIN = 50

Statements = list[tuple[str, Any]]


def status(cluster: LocalCluster, node: int, timeout: float = 0.2) -> dict[str, Any] | None:
    """One node's status, or None if it does not answer promptly (not started yet, say)."""
    try:
        with Client([cluster.address(node)], timeout=timeout) as c:
            return c.status()
    except errors.RaftsqlError:
        return None


def all_current(cluster: LocalCluster) -> dict[int, dict[str, Any]]:
    """Wait until every node has applied the leader's commit index; their statuses."""

    def check() -> dict[int, dict[str, Any]] | None:
        found = {}
        for i in cluster.ports:
            st = status(cluster, i, 1.0)
            if st is None:
                return None
            found[i] = st
        leaders = [s for s in found.values() if s["role"] == "leader"]
        if len(leaders) != 1 or any(s["applied"] < leaders[0]["commit"] for s in found.values()):
            return None
        return found

    return common.wait_for("all nodes current", check, 60)


def load(cluster: LocalCluster, requests: Sequence[Statements]) -> float:
    """Send the write requests from a few threads (each its own session); seconds taken.

    Several at once so that the leader's group commit fills its fsyncs, as real clients
    would: the load is not what is measured, but it should not take all day.
    """
    todo = list(reversed(requests))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        with cluster.client(timeout=60) as c:
            while not failures:
                with lock:
                    if not todo:
                        return
                    stmts = todo.pop()
                try:
                    c.write(stmts)
                except errors.RaftsqlError as exc:
                    failures.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(LOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"loading failed: {failures[0]!r}")
    return time.monotonic() - started


def stop_a_follower(cluster: LocalCluster) -> tuple[int, int, dict[str, Any]]:
    """Kill -9 a follower once all are current: (leader, follower, follower's last status)."""
    statuses = all_current(cluster)
    leader = next(i for i, s in statuses.items() if s["role"] == "leader")
    follower = next(i for i in sorted(statuses) if i != leader)
    cluster.kill(follower)
    common.progress(f"killed follower {follower} at applied index {statuses[follower]['applied']}")
    return leader, follower, statuses[follower]


class SnapshotWatch:
    """Times a snapshot arriving in a node's snapshot directory, from outside the node.

    The staging file (``*.db.recv``) appears with the first chunk and is renamed to ``.db``
    after the last one is written and fsynced: between the two is the transfer.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.before = set(self._names())
        self.first_seen: float | None = None
        self.first_bytes = 0
        self.done: float | None = None
        self.bytes = 0

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except FileNotFoundError:
            return []

    def poll(self) -> None:
        now = time.monotonic()
        for name in self._names():
            if self.first_seen is None and ".db.recv" in name:
                self.first_seen = now
                self.first_bytes = _size(self.directory / name)
            elif self.done is None and name.endswith(".db") and name not in self.before:
                self.done = now
                self.bytes = _size(self.directory / name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def time_catch_up(
    cluster: LocalCluster, node: int, target: int, watch: SnapshotWatch | None = None
) -> dict[str, Any]:
    """Restart ``node`` and poll it until it has applied ``target``; seconds from restart."""
    t0 = time.monotonic()
    cluster.start_node(node)
    serving: float | None = None
    applied_at_serving = 0
    while True:
        if watch is not None:
            watch.poll()
        st = status(cluster, node)
        now = time.monotonic()
        if st is not None and serving is None:
            serving, applied_at_serving = now - t0, st["applied"]
        if st is not None and st["applied"] >= target:
            if watch is not None:
                watch.poll()  # the snapshot may have landed since the last look
            break
        if now - t0 > 300:
            raise TimeoutError(f"node {node} did not catch up to {target} in 300 s (last: {st})")
        time.sleep(POLL_S)
    assert serving is not None
    return {
        "seconds": round(now - t0, 3),
        "serving_s": round(serving, 3),
        "applied_at_serving": applied_at_serving,
        "t0": t0,
        "status": st,
    }


def text_requests(writes: int, batch: int) -> list[Statements]:
    """``writes`` single-row INSERTs of a 100-byte text, ``batch`` per request."""
    payload = "x" * 100
    sizes = [min(batch, writes - i) for i in range(0, writes, batch)]
    return [[(INSERT_TEXT, (payload,))] * n for n in sizes]


def blob_requests(megabytes: float, batch: int, rng: random.Random) -> list[Statements]:
    """Rows of 100 B..1 KB random blobs adding up to ``megabytes``, ``batch`` per request."""
    requests, stmts, total = [], [], 0
    while total < megabytes * MB:
        size = rng.randint(100, 1000)
        stmts.append((INSERT_BLOB, (size,)))
        total += size
        if len(stmts) == batch:
            requests.append(stmts)
            stmts = []
    return [*requests, stmts] if stmts else requests


def log_catchup(writes: int, batch: int) -> dict[str, Any]:
    """Part (a): the follower gets the entries it missed from the leader's log."""
    with tempfile.TemporaryDirectory(prefix="raftsql-catchup-log-") as tmp:
        cluster = LocalCluster(directory=Path(tmp), snapshot_every=10**9)
        with cluster:
            with cluster.client() as c:
                c.execute(CREATE)
            leader, follower, before = stop_a_follower(cluster)
            load_s = load(cluster, text_requests(writes, batch))
            target = all_current_leader(cluster, leader)["commit"]
            behind = target - before["applied"]
            common.progress(f"wrote {writes:,} rows in {load_s:.2f} s: {behind:,} entries behind")
            timing = time_catch_up(cluster, follower, target)
    installed = timing["status"]["counters"]["snapshots_installed"]
    if installed:
        raise RuntimeError(f"log catch-up installed {installed} snapshot(s): not a log catch-up")
    replay_s = timing["seconds"] - timing["serving_s"]
    result = {
        "writes": writes,
        "statements_per_entry": batch,
        "entries_behind": behind,
        "seconds": timing["seconds"],
        "serving_s": timing["serving_s"],
        "applied_at_serving": timing["applied_at_serving"],
        "entries_per_s": round(behind / timing["seconds"], 1),
        "rows_per_s": round(writes / timing["seconds"], 1),
        "entries_per_s_once_serving": round(behind / replay_s, 1) if replay_s > 0 else None,
        "load_s": round(load_s, 2),
    }
    common.progress(
        f"log catch-up: {behind:,} entries ({writes:,} rows) in {timing['seconds']:.2f} s from "
        f"restart ({timing['serving_s']:.2f} s to serve): {result['entries_per_s']:,.0f} "
        f"entries/s, {result['rows_per_s']:,.0f} rows/s"
    )
    return result


def all_current_leader(cluster: LocalCluster, leader: int) -> dict[str, Any]:
    """The leader's status once its commit covers its whole log (the last writes applied)."""

    def check() -> dict[str, Any] | None:
        st = status(cluster, leader, 1.0)
        ok = st and st["role"] == "leader" and st["commit"] == st["last_index"] == st["applied"]
        return st if ok else None

    return common.wait_for(f"leader {leader} to apply its log", check, 60)


def snapshot_catchup(megabytes: float, batch: int) -> dict[str, Any]:
    """Part (b): the leader compacted past the follower, so it must send a snapshot."""
    with tempfile.TemporaryDirectory(prefix="raftsql-catchup-snap-") as tmp:
        cluster = LocalCluster(
            directory=Path(tmp), snapshot_every=SNAP_EVERY, snapshot_retain=SNAP_RETAIN
        )
        with cluster:
            with cluster.client() as c:
                c.execute(CREATE)
            leader, follower, before = stop_a_follower(cluster)
            requests = blob_requests(megabytes, batch, random.Random(1))
            load_s = load(cluster, requests)
            with Client([cluster.address(leader)], timeout=120) as c:
                c.snapshot()  # the snapshot holds the whole database: its size is the data's
            lead = all_current_leader(cluster, leader)
            if lead["first_index"] <= before["applied"] + 1:
                raise RuntimeError(
                    f"the leader's log still starts at {lead['first_index']}: the follower "
                    f"(applied {before['applied']}) can catch up from it, no snapshot needed"
                )
            db_bytes = _size(Path(tmp) / f"node{leader}" / "db.sqlite")
            common.progress(
                f"wrote {sum(map(len, requests)):,} rows ({db_bytes / MB:.1f} MB database) in "
                f"{load_s:.2f} s; leader's log starts at {lead['first_index']}, snapshot at "
                f"{lead['snapshot_index']}; follower applied {before['applied']}"
            )
            watch = SnapshotWatch(Path(tmp) / f"node{follower}" / "raft" / "snapshots")
            timing = time_catch_up(cluster, follower, lead["commit"], watch)
    return snapshot_result(timing, watch, lead, db_bytes, load_s)


def snapshot_result(
    timing: dict[str, Any],
    watch: SnapshotWatch,
    lead: dict[str, Any],
    db_bytes: int,
    load_s: float,
) -> dict[str, Any]:
    """Check that a snapshot was installed and turn the timings into figures."""
    st = timing["status"]
    if st["counters"]["snapshots_installed"] < 1:
        raise RuntimeError(f"the follower caught up without installing a snapshot: {st}")
    if watch.done is None or not watch.bytes:
        raise RuntimeError("no snapshot file arrived in the follower's snapshot directory")
    size = watch.bytes
    transfer_s = watch.done - watch.first_seen if watch.first_seen is not None else None
    result = {
        "snapshot_bytes": size,
        "snapshot_index": st["snapshot_index"],
        "leader_snapshot_index": lead["snapshot_index"],
        "database_bytes": db_bytes,
        "seconds": timing["seconds"],
        "serving_s": timing["serving_s"],
        "transfer_s": round(transfer_s, 3) if transfer_s is not None else None,
        "transfer_mb_s": (
            round((size - watch.first_bytes) / MB / transfer_s, 1) if transfer_s else None
        ),
        "end_to_end_mb_s": round(size / MB / timing["seconds"], 1),
        "snapshots_installed": st["counters"]["snapshots_installed"],
        "snapshot_every": SNAP_EVERY,
        "snapshot_retain": SNAP_RETAIN,
        "load_s": round(load_s, 2),
    }
    transfer = (
        f"transfer {result['transfer_s']:.2f} s = {result['transfer_mb_s']} MB/s"
        if transfer_s
        else "transfer too quick to time"
    )
    common.progress(
        f"snapshot catch-up: {size / MB:.1f} MB snapshot at index {st['snapshot_index']}, "
        f"current {timing['seconds']:.2f} s after restart ({timing['serving_s']:.2f} s to "
        f"serve); {transfer}; end to end {result['end_to_end_mb_s']} MB/s"
    )
    return result


def run(
    quick: bool = False,
    writes: int | None = None,
    megabytes: float | None = None,
    log_batch: int = 100,
) -> dict[str, Any]:
    """Both parts, each on a fresh cluster; saves ``results/catchup.json``."""
    writes = writes or (500 if quick else 20_000)
    megabytes = megabytes or (1.0 if quick else 50.0)
    # quick: smaller requests so that there are more entries than the leader keeps behind
    # its snapshot, or the follower would catch up from the log
    blob_batch = 10 if quick else 50
    data = {
        "log": log_catchup(writes, log_batch),
        "snapshot": snapshot_catchup(megabytes, blob_batch),
    }
    common.save(NAME, data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 500 rows, a 1 MB snapshot")
    p.add_argument("--writes", type=int, help="rows written for the log part (default 20000)")
    p.add_argument("--megabytes", type=float, help="data for the snapshot part (default 50)")
    p.add_argument(
        "--log-batch", type=int, default=100, help="rows per request, log part (default 100)"
    )
    args = p.parse_args()
    run(args.quick, args.writes, args.megabytes, args.log_batch)


if __name__ == "__main__":
    main()
