"""PySyncObj, the best-known pure-Python Raft library, as the same-language peer of raftsql.

Three nodes, each in its own process, on loopback TCP, replicate a ``ReplDict``; the load
runs inside the leader's process (PySyncObj has no client protocol: callers live in a
node), so every figure includes the caller sharing that process and its GIL with the
node, as any PySyncObj application would. Writes are ``d.set(key, value)`` with 100-byte
values over 10,000 keys; an op counts once its commit callback reports success.

- ``set_sync_single``: one caller, ``sync=True``, one write at a time, with
  ``appendEntriesUseBatch=False`` (the library's setting for single-request latency);
- ``set_async_10k_inflight``: 10,000 writes kept in flight with callbacks (each callback
  issues the next write), default batching; latency is call to callback;
- the same two with ``journalFile`` set (``..._journal``): the log is also kept in a file,
  which PySyncObj never syncs to disk (see ``NOTES``), unlike raftsql and etcd.

    python -m benchmarks.peers_pysyncobj [--quick] [--duration 5]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql.cluster import free_ports

HOST = "127.0.0.1"
KEYS = 10_000
VALUE = "x" * 100
INFLIGHT = 10_000
SYNC_TIMEOUT_S = 10.0

NOTES = (
    "PySyncObj 'journalFile' (pysyncobj/journal.py FileJournal): every log entry is copied "
    "into an mmap of the journal file (ResizableFile) as soon as it is appended, on the "
    "leader and on each follower before it acknowledges; nothing ever makes it durable: "
    "there is no os.fsync/fdatasync anywhere in the package, and the only msync "
    "(mmap.flush) runs in FileJournal._destroy at clean shutdown (FileJournal.flush() "
    "exists but SyncObj never calls it). Term and vote (synchronously, on change) and the "
    "commit index (at most once a second) go to '<journal>.meta' by write + Python "
    "file.flush() (to the kernel, not to disk) + rename, also without fsync. So the "
    "journal survives a process crash (the dirty pages are in the kernel's page cache) but "
    "not a power loss or kernel crash; acknowledged writes are not on disk. Without "
    "journalFile the log is in memory only."
)


@dataclass(frozen=True)
class Workload:
    name: str
    inflight: int  # 0: one synchronous caller
    batch: bool  # appendEntriesUseBatch
    journal: bool


WORKLOADS = [
    Workload("set_sync_single", 0, batch=False, journal=False),
    Workload("set_async_10k_inflight", INFLIGHT, batch=True, journal=False),
    Workload("set_sync_single_journal", 0, batch=False, journal=True),
    Workload("set_async_10k_inflight_journal", INFLIGHT, batch=True, journal=True),
]


# --- inside a node process -------------------------------------------------------------


def _bench_sync(d: Any, seconds: float) -> dict[str, Any]:
    """One caller, one blocking ``set`` at a time, for ``seconds``."""
    from pysyncobj import SyncObjException

    latencies: list[float] = []
    errors = 0
    first = time.perf_counter()
    end = first + seconds
    n = 0
    while (start := time.perf_counter()) < end:
        try:
            d.set(f"k{n % KEYS}", VALUE, sync=True, timeout=SYNC_TIMEOUT_S)
            latencies.append(time.perf_counter() - start)
        except SyncObjException:
            errors += 1
        n += 1
    return {
        "ops": len(latencies),
        "seconds": time.perf_counter() - first,
        "latencies": latencies,
        "errors": errors,
    }


class _Window:
    """Keeps ``inflight`` asynchronous ``set`` calls outstanding until the deadline.

    Callbacks run on PySyncObj's tick thread; each success issues the next call, so the
    window stays full. A failed call is not replaced (a retry storm would measure the
    failure path), it only shrinks the window and counts as an error.
    """

    def __init__(self, d: Any, inflight: int, seconds: float) -> None:
        self.d = d
        self.lock = threading.Lock()
        self.outstanding = inflight
        self.counter = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.drained = threading.Event()
        self.start = time.perf_counter()
        self.last = self.start
        self.deadline = self.start + seconds

    def issue(self) -> None:
        with self.lock:
            key = f"k{self.counter % KEYS}"
            self.counter += 1
        sent = time.perf_counter()

        def done(result: Any, error: int) -> None:
            now = time.perf_counter()
            with self.lock:
                self.last = now
                if error == 0:  # FAIL_REASON.SUCCESS
                    self.latencies.append(now - sent)
                else:
                    self.errors += 1
                again = error == 0 and now < self.deadline
                if not again:
                    self.outstanding -= 1
                    if self.outstanding == 0:
                        self.drained.set()
            if again:
                self.issue()

        self.d.set(key, VALUE, callback=done)


def _bench_async(d: Any, inflight: int, seconds: float) -> dict[str, Any]:
    """``inflight`` writes outstanding for ``seconds``, then wait for the stragglers."""
    window = _Window(d, inflight, seconds)
    for _ in range(inflight):
        window.issue()
    drained = window.drained.wait(seconds + 120)
    with window.lock:
        lost = 0 if drained else window.outstanding
        return {
            "ops": len(window.latencies),
            "seconds": window.last - window.start,
            "latencies": list(window.latencies),
            "errors": window.errors + lost,
        }


class _TruncationCounter(logging.Filter):
    """Counts (and keeps off stderr) PySyncObj's CRITICAL "truncating already-applied log
    entries" records.

    A PySyncObj follower deletes every entry after ``prevLogIdx`` whenever an
    AppendEntries starts behind its last entry, even when the entries match (Raft only
    truncates on a term conflict), and then re-adds them; unbatched sends make that happen
    constantly. The count is reported with each point instead of flooding the output.
    """

    PREFIX = "truncating already-applied log entries"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(self.PREFIX):
            self.count += 1
            return False
        return True


def _status(obj: Any, truncations: _TruncationCounter) -> dict[str, Any]:
    leader = obj._getLeader()
    return {
        "is_leader": obj._isLeader(),
        "leader": str(leader) if leader else None,
        "ready": obj.isReady(),
        "self": str(obj.selfNode),
        "applied_truncations": truncations.count,
    }


def node_main(port: int, peers: list[int], conf: dict[str, Any], conn: Connection) -> None:
    """A PySyncObj node serving commands from the parent over ``conn`` until told to stop
    (or until the parent goes away: EOF on the pipe)."""
    from pysyncobj import SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict

    truncations = _TruncationCounter()
    logging.getLogger("pysyncobj.syncobj").addFilter(truncations)
    d = ReplDict()
    obj = SyncObj(
        f"{HOST}:{port}", [f"{HOST}:{p}" for p in peers], SyncObjConf(**conf), consumers=[d]
    )
    try:
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):
                break
            if command == "stop":
                break
            if command == "status":
                conn.send(_status(obj, truncations))
            elif command == "sync":
                conn.send(_bench_sync(d, *args))
            elif command == "async":
                conn.send(_bench_async(d, *args))
    except KeyboardInterrupt:
        pass
    finally:
        obj.destroy_synchronous()


# --- in the benchmark process ----------------------------------------------------------


@dataclass
class Node:
    port: int
    process: multiprocessing.process.BaseProcess
    conn: Connection

    def ask(self, command: str, *args: Any, timeout: float = 10) -> Any:
        self.conn.send((command, args))
        if not self.conn.poll(timeout):
            raise RuntimeError(
                f"pysyncobj node :{self.port} did not answer {command!r} within {timeout:g} s"
            )
        return self.conn.recv()


class Cluster:
    """Three node processes (spawned, so nothing is inherited); always stopped on exit."""

    def __init__(self, directory: Path, batch: bool, journal: bool, size: int = 3) -> None:
        self.directory, self.batch, self.journal, self.size = directory, batch, journal, size
        self.nodes: list[Node] = []

    def _conf(self, port: int) -> dict[str, Any]:
        conf: dict[str, Any] = {"appendEntriesUseBatch": self.batch}
        if self.journal:
            conf["journalFile"] = str(self.directory / f"node-{port}.journal")
        return conf

    def __enter__(self) -> Cluster:
        ctx = multiprocessing.get_context("spawn")
        ports = free_ports(self.size)
        try:
            for port in ports:
                ours, theirs = ctx.Pipe()
                peers = [p for p in ports if p != port]
                process = ctx.Process(
                    target=node_main,
                    name=f"pysyncobj-{port}",
                    args=(port, peers, self._conf(port), theirs),
                )
                process.start()
                theirs.close()
                self.nodes.append(Node(port, process, ours))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_leader(self, timeout: float = 30) -> Node:
        """The leader, once every node names the same one and it is ready."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if not node.process.is_alive():
                    raise RuntimeError(
                        f"pysyncobj node :{node.port} exited (code {node.process.exitcode})"
                    )
            statuses = [node.ask("status") for node in self.nodes]
            leaders = [n for n, s in zip(self.nodes, statuses, strict=True) if s["is_leader"]]
            agreed = len({s["leader"] for s in statuses}) == 1
            ready = all(s["ready"] for s in statuses)
            if len(leaders) == 1 and agreed and ready:
                return leaders[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no pysyncobj leader after {timeout:g} s: {statuses}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask each node to stop; terminate, then kill, any that does not exit."""
        for node in self.nodes:
            with contextlib.suppress(OSError, ValueError):
                node.conn.send(("stop", ()))
        for node in self.nodes:
            node.process.join(2)
            if node.process.is_alive():
                node.process.terminate()
                node.process.join(2)
            if node.process.is_alive():
                node.process.kill()
                node.process.join(2)
            node.conn.close()


def measure(directory: Path, w: Workload, seconds: float) -> dict[str, Any]:
    """A fresh cluster for ``w`` (its conf differs), loaded from inside the leader."""
    began = time.monotonic()
    with Cluster(directory, w.batch, w.journal) as cluster:
        leader = cluster.wait_leader()
        startup_s = time.monotonic() - began
        common.progress(f"{w.name}: leader :{leader.port} after {startup_s:.1f} s")
        if w.inflight:
            r = leader.ask("async", w.inflight, seconds, timeout=seconds + 180)
        else:
            r = leader.ask("sync", seconds, timeout=seconds + 60)
        truncations = sum(node.ask("status")["applied_truncations"] for node in cluster.nodes)
    p = common.point(
        "pysyncobj",
        w.name,
        w.inflight or 1,
        r["ops"],
        r["seconds"],
        r["latencies"],
        errors=r["errors"],
        appendEntriesUseBatch=w.batch,
        journal=w.journal,
        journal_fsync=False,
        startup_s=round(startup_s, 2),
        followers_truncated_applied_entries=truncations,
    )
    common.progress(common.describe(p))
    if truncations:
        common.progress(
            f"  followers logged {truncations} 'truncating already-applied log "
            "entries' (CRITICAL) records"
        )
    return p


def run(quick: bool = False, duration: float | None = None) -> dict[str, Any]:
    """Measure every workload, each on its own 3-process cluster; save and return them."""
    from pysyncobj.version import VERSION

    seconds = duration or (0.5 if quick else 5.0)
    points = []
    with common.sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="raftsql-pso-") as tmp:
        for w in WORKLOADS:
            points.append(measure(Path(tmp), w, seconds))
    data = {
        "points": points,
        "duration_s": seconds,
        "pysyncobj_version": VERSION,
        "nodes": 3,
        "keys": KEYS,
        "value_bytes": len(VALUE),
        "inflight": INFLIGHT,
        "client": "caller threads inside the leader's process (PySyncObj has no client API)",
        "notes": NOTES,
    }
    common.save("peers_pysyncobj", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 0.5 s per point")
    p.add_argument("--duration", type=float, help="seconds per point (default 5)")
    args = p.parse_args()
    try:
        run(args.quick, args.duration)
    except KeyboardInterrupt:
        common.progress("interrupted; every node process started was stopped")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
