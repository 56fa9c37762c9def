"""Memory stays flat with history: each node's RSS after 100k and after 1M applied writes.

Starts a local 3-node cluster (fsync on, default snapshot interval), drives single-row
INSERT requests from several client threads, and samples every node's resident set size
once a second as the applied index grows. A node whose memory grew with its history (an
unbounded log, a cache that never evicts) would show it as a rising line; compaction should
keep it flat. Saves ``results/memory_flat.json`` and draws ``results/memory_flat.png``.

    python -m benchmarks.memory_flat                 # 100k and 1M writes (~20 minutes)
    python -m benchmarks.memory_flat --quick         # smoke run: 2k and 20k writes
    python -m benchmarks.memory_flat --plot results/memory_flat.json   # only redraw
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql.cluster import LocalCluster

NAME = "memory_flat"
PAYLOAD = "x" * 100
INSERT = "INSERT INTO t (client, payload) VALUES (?, ?)"
SAMPLE_EVERY_S = 1.0
REPORT_EVERY_S = 10.0
"""Progress lines are this far apart: one a second would be over a thousand lines."""


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Writers:
    """Client threads sending ``batch`` single-row INSERTs per request until ``target``.

    A writer that fails records its error instead of dying silently: the sampling loop
    would otherwise wait forever for a count that no longer grows.
    """

    def __init__(self, cluster: LocalCluster, clients: int, batch: int, target: int) -> None:
        self.cluster, self.batch, self.target = cluster, batch, target
        self.done = 0
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(k,), name=f"writer-{k}", daemon=True)
            for k in range(clients)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(60)

    def check(self) -> None:
        """Raise the first writer failure, if any."""
        if self.failures:
            self.stop.set()
            raise RuntimeError(f"a writer failed: {self.failures[0]!r}") from self.failures[0]

    def _loop(self, k: int) -> None:
        stmts = [(INSERT, (k, PAYLOAD))] * self.batch
        try:
            with self.cluster.client(timeout=30) as c:
                while not self.stop.is_set():
                    c.write(stmts)
                    with self._lock:
                        self.done += self.batch
                        if self.done >= self.target:
                            self.stop.set()
        except Exception as exc:
            self.failures.append(exc)


def sample(cluster: LocalCluster, writes: int, elapsed: float) -> dict[str, float]:
    """One sample: time, writes acknowledged so far, and every node's RSS (KiB)."""
    s: dict[str, float] = {"t": elapsed, "writes": writes}
    for i, pid in cluster.pids.items():
        s[f"rss_kib_node{i}"] = rss_kib(pid)
    return s


def describe(s: dict[str, float]) -> str:
    nodes = "  ".join(
        f"{k.removeprefix('rss_kib_')} {v / 1024:.1f} MiB" for k, v in s.items() if k[:3] == "rss"
    )
    return f"{s['writes']:>9,.0f} writes  {s['writes'] / s['t']:6.0f}/s  {nodes}"


def measure(cluster: LocalCluster, marks: list[int], clients: int, batch: int) -> list[dict]:
    """Write until the last mark, sampling RSS every second; the samples.

    Sampling goes on until a sample has been taken at or past every mark, so that each mark
    has a reading taken after it was reached.
    """
    load = Writers(cluster, clients, batch, marks[-1])
    samples: list[dict[str, float]] = []
    started = last_report = time.monotonic()
    load.start()
    try:
        while not samples or samples[-1]["writes"] < marks[-1]:
            time.sleep(SAMPLE_EVERY_S)
            load.check()
            now = time.monotonic()
            samples.append(sample(cluster, load.done, now - started))
            if now - last_report >= REPORT_EVERY_S:
                common.progress(describe(samples[-1]))
                last_report = now
    finally:
        load.join()
    load.check()
    common.progress(describe(samples[-1]))
    return samples


def at_marks(samples: list[dict[str, float]], marks: list[int]) -> dict[int, dict[str, float]]:
    """Each node's RSS in the first sample taken at or after each mark."""
    at = {}
    for mark in marks:
        first = next(s for s in samples if s["writes"] >= mark)
        at[mark] = {k: v for k, v in first.items() if k.startswith("rss")}
    return at


def run(quick: bool = False, clients: int = 16, batch: int = 1) -> dict[str, Any]:
    """Write up to the last mark on a fresh cluster and record RSS; save and return it."""
    marks = [2_000, 20_000] if quick else [100_000, 1_000_000]
    snapshot_every = 2_000 if quick else 10_000
    common.progress(f"memory: {marks[-1]:,} writes, {clients} clients, {batch} per request")
    with (
        tempfile.TemporaryDirectory(prefix="raftsql-memory-") as tmp,
        LocalCluster(directory=Path(tmp), snapshot_every=snapshot_every) as cluster,
    ):
        with cluster.client() as c:
            c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, client INT, payload TEXT)")
        samples = measure(cluster, marks, clients, batch)
        statuses = cluster.statuses()
    at = at_marks(samples, marks)
    first, last = at[marks[0]], at[marks[-1]]
    ratio = {k: last[k] / first[k] for k in first}
    for k, r in ratio.items():
        common.progress(
            f"{k}: {first[k] / 1024:.1f} MiB at {marks[0]:,} -> "
            f"{last[k] / 1024:.1f} MiB at {marks[-1]:,} writes ({r:.2f}x)"
        )
    data = {
        "marks": marks,
        "rss_kib_at_mark": {str(m): v for m, v in at.items()},
        "ratio_last_to_first": ratio,
        "writes_per_second": samples[-1]["writes"] / samples[-1]["t"],
        "clients": clients,
        "batch": batch,
        "snapshot_every": snapshot_every,
        "final_status": {str(k): v for k, v in statuses.items()},
        "samples": samples,
    }
    common.save(NAME, data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2k and 20k writes")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--batch", type=int, default=1, help="statements per request")
    p.add_argument("--plot", metavar="JSON", help="only redraw the plot of a saved result")
    args = p.parse_args()
    from benchmarks import plots  # matplotlib only when drawing

    if args.plot:
        source = Path(args.plot)
        plots.draw_memory(json.loads(source.read_text()), source.with_suffix(".png"))
        return
    data = run(args.quick, args.clients, args.batch)
    plots.draw_memory(data, common.RESULTS / plots.png_name(NAME, args.quick))


if __name__ == "__main__":
    main()
