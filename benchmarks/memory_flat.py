"""Memory stays flat with history: each node's RSS after 100k and after 1M applied writes.

Starts a local 3-node cluster (fsync on, default snapshot interval), drives single-row
INSERT requests from several client threads, and samples every node's resident set size
as the applied index grows. Prints progress, saves JSON (and a PNG if matplotlib is
installed) under benchmarks/results/.

    python benchmarks/memory_flat.py                 # 100k and 1M writes (minutes)
    python benchmarks/memory_flat.py --quick         # smoke run: 2k and 20k writes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from raftsql.cluster import LocalCluster

RESULTS = Path(__file__).parent / "results"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--batch", type=int, default=1, help="statements per request")
    p.add_argument("--plot", metavar="JSON", help="only redraw the plot of a saved result")
    args = p.parse_args()
    if args.plot:
        plot(json.loads(Path(args.plot).read_text()), Path(args.plot).with_suffix(".png"))
        return
    marks = [2_000, 20_000] if args.quick else [100_000, 1_000_000]
    snapshot_every = 2_000 if args.quick else 10_000
    target = marks[-1]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(directory=Path(tmp), snapshot_every=snapshot_every)
        with cluster:
            with cluster.client() as c:
                c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, client INT, payload TEXT)")
            done = 0
            lock = threading.Lock()
            stop = threading.Event()

            def writer(k: int) -> None:
                nonlocal done
                payload = "x" * 100
                with cluster.client(timeout=30) as c:
                    while not stop.is_set():
                        stmts = [("INSERT INTO t (client, payload) VALUES (?, ?)", (k, payload))]
                        c.write(stmts * args.batch)
                        with lock:
                            done += args.batch
                            if done >= target:
                                stop.set()

            threads = [threading.Thread(target=writer, args=(k,)) for k in range(args.clients)]
            started = time.monotonic()
            for t in threads:
                t.start()
            samples: list[dict[str, float]] = []
            pending = list(marks)
            while not stop.is_set() or pending:
                time.sleep(1.0)
                now = time.monotonic() - started
                sample = {"t": now, "writes": done}
                for i, pid in cluster.pids.items():
                    sample[f"rss_kib_node{i}"] = rss_kib(pid)
                samples.append(sample)
                print(
                    f"\r{done:>9,} writes  {done / now:8.0f}/s  "
                    + "  ".join(
                        f"n{i} {sample[f'rss_kib_node{i}'] / 1024:6.1f} MiB" for i in cluster.pids
                    ),
                    end="",
                    flush=True,
                )
                while pending and done >= pending[0]:
                    pending.pop(0)
                if stop.is_set() and not pending:
                    break
            for t in threads:
                t.join()
            print()
            statuses = cluster.statuses()
    at = {}
    for mark in marks:
        first = next(s for s in samples if s["writes"] >= mark)
        at[mark] = {k: v for k, v in first.items() if k.startswith("rss")}
    ratio = {k: at[marks[-1]][k] / at[marks[0]][k] for k in at[marks[0]]}
    result = {
        "marks": marks,
        "rss_kib_at_mark": {str(m): v for m, v in at.items()},
        "ratio_last_to_first": ratio,
        "writes_per_second": done / samples[-1]["t"],
        "clients": args.clients,
        "snapshot_every": snapshot_every,
        "final_status": {str(k): v for k, v in statuses.items()},
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "memory_flat_quick" if args.quick else "memory_flat"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    for k, r in ratio.items():
        print(
            f"{k}: {at[marks[0]][k] / 1024:.1f} MiB at {marks[0]:,} -> "
            f"{at[marks[-1]][k] / 1024:.1f} MiB at {marks[-1]:,} writes ({r:.2f}x)"
        )
    plot(result, RESULTS / f"{name}.png")


def plot(result: dict, path: Path) -> None:
    """RSS of every node against the number of applied writes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install matplotlib)")
        return
    samples = result["samples"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for key in result["ratio_last_to_first"]:
        ax.plot(
            [s["writes"] for s in samples],
            [s[key] / 1024 for s in samples],
            label=key.replace("rss_kib_", ""),
        )
    ax.set_xlabel("applied writes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("raftsql: node memory vs history (3 nodes, fsync on, compaction on)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
