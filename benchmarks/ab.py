"""A/B: the same raftsql workload against two (or more) source trees, interleaved.

For speed work. Each tree is a checkout (a ``git worktree`` of the commit to compare);
every round runs each tree once, in turn, so drift on the shared machine hits all trees
alike, and the median round per tree and client count is what to compare (as a ratio).
A tree's nodes import that tree's code (the cluster is started with the tree as working
directory and ``PYTHONPATH``).

    git worktree add /tmp/base main
    python -m benchmarks.ab --tree base=/tmp/base --tree new=. --clients 1,16,64 --rounds 3

The requests are sent by this checkout's C load generator (``cloadgen.py``, the same for
every tree: the driver is not what is compared), or with ``--driver python`` by each
tree's own ``loadgen.py``.

``--bursts K`` compares in paired bursts instead: every tree's cluster is started once and
kept running, idle but for the tree whose turn it is, and each tree in turn (in a rotating
order) takes a short burst of load (``--burst-seconds``, 1 s by default), K times per
client count. Bursts of different trees seconds apart meet nearly the same machine, so
the ratio of each burst to the first tree's burst next to it varies far less than whole
rounds minutes apart (a round's throughput swings by ±15% here): the median of those
paired ratios, with its quartiles, is what to compare.

    python -m benchmarks.ab --tree base=/tmp/base --tree new=. --clients 1,16 --bursts 30

Prints each round (or set of bursts) as it ends and a table of medians (with bursts:
of the paired ratios of throughput, CPU per request and p99 latency); saves
``results/ab.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import cloadgen, common, proc_stats, raftsql_load

# Runs inside a tree: only uses what every tree since the load generator has; the C
# driver's module comes from this checkout (AB_CLOADGEN), its workload from AB_CWORKLOAD.
# Starts the tree's cluster, says "ready", then runs one closed-loop point per line read
# ("clients seconds warmup") and answers each with one JSON line, until stdin closes.
_TREE_SERVER = """
import importlib.util, json, os, sys, tempfile
from pathlib import Path
from benchmarks.common import quantile
from benchmarks.loadgen import closed_loop
from benchmarks.raftsql_load import WORKLOADS, _prepare, _targets
from raftsql.cluster import LocalCluster
workload = sys.argv[1]
def load(name, env):
    found = importlib.util.spec_from_file_location(name, os.environ[env])
    module = sys.modules[name] = importlib.util.module_from_spec(found)  # for dataclasses
    found.loader.exec_module(module)
    return module
cload = load("ab_cloadgen", "AB_CLOADGEN") if os.environ.get("AB_CLOADGEN") else None
c_workload = json.loads(os.environ.get("AB_CWORKLOAD", "{}"))
stats = load("ab_proc_stats", "AB_PROC_STATS")
with tempfile.TemporaryDirectory(prefix="raftsql-ab-") as tmp:
  with LocalCluster(directory=Path(tmp)) as cl:
    _prepare(cl)
    where, maker = WORKLOADS[workload]
    pids = list(cl.pids.values())
    print("ready", flush=True)
    for line in sys.stdin:
        n, seconds, warmup = (f(v) for f, v in zip((int, float, float), line.split()))
        probe = lambda: [stats.sample(pid) for pid in pids]
        targets = _targets(cl, where)
        if cload is not None:
            r = cload.closed_loop_c(targets, n, c_workload, seconds, warmup=warmup, probe=probe)
        else:
            r = closed_loop(targets, n, maker(n), seconds, warmup=warmup, probe=probe)
        cpu = None
        if len(r.probes) == 2 and None not in r.probes[0] + r.probes[1] and r.ops:
            spent = sum(a.user_s + a.sys_s - b.user_s - b.sys_s for b, a in zip(*r.probes))
            cpu = spent / r.ops * 1e6
        p99 = quantile(sorted(r.latencies), 0.99) * 1e3 if r.latencies else None
        out = {"ops_per_s": r.ops / r.seconds, "errors": r.errors, "cpu_us_per_op": cpu,
               "p99_ms": p99}
        print(json.dumps(out), flush=True)
"""


class TreeCluster:
    """One tree's cluster in a child process (its code on ``PYTHONPATH``), taking
    closed-loop points on demand: :meth:`point`. Use as a context manager; closing it
    stops the cluster (and SIGINTs a child that does not end)."""

    def __init__(self, tree: Path, workload: str, driver: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree), AB_PROC_STATS=proc_stats.__file__)
        if driver == "c":
            env["AB_CLOADGEN"] = cloadgen.__file__
            env["AB_CWORKLOAD"] = json.dumps(raftsql_load.c_workload(workload))
        self.tree = tree
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in close)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _TREE_SERVER, workload],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._read_line(120)  # "ready"

    def point(self, clients: int, seconds: float, warmup: float = 0.5) -> dict[str, Any]:
        """Throughput, errors and the nodes' CPU per request of one closed-loop point."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{clients} {seconds} {warmup}\n")
        self._proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._read_line(60 + 3 * (seconds + warmup)))
        return result

    def _read_line(self, timeout: float) -> str:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            self._stderr.seek(0)
            raise RuntimeError(f"{self.tree}: the run failed:\n{self._stderr.read()[-3000:]}")
        return line

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # SIGINT unwinds the run's context managers, which stop its cluster's nodes
                self._proc.send_signal(signal.SIGINT)
                self._proc.wait(timeout=30)
        self._stderr.close()

    def __enter__(self) -> TreeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_tree(
    tree: Path, workload: str, clients: list[int], seconds: float, driver: str = "python"
) -> dict[int, Any]:
    """One cluster from ``tree``'s code, every client count in turn."""
    with TreeCluster(tree, workload, driver) as cluster:
        return {c: cluster.point(c, seconds) for c in clients}


def run_bursts(
    trees: dict[str, Path],
    workload: str,
    clients: list[int],
    bursts: int,
    seconds: float,
    driver: str,
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Every tree's cluster at once; per client count, ``bursts`` sets of one burst per
    tree, each set in a rotated order (no tree always goes first)."""
    names = list(trees)
    out: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in clients} for n in names}
    with contextlib.ExitStack() as stack:
        clusters = {n: stack.enter_context(TreeCluster(trees[n], workload, driver)) for n in names}
        for c in clients:
            for k in range(bursts):
                order = names[k % len(names) :] + names[: k % len(names)]
                for name in order:
                    point = clusters[name].point(c, seconds, warmup=0.25)
                    if point["errors"]:
                        raise RuntimeError(f"{name}: {point['errors']} errors at {c} clients")
                    out[name][c].append(point)
                first = out[names[0]][c][-1]["ops_per_s"]
                figures = ", ".join(
                    f"{n} {out[n][c][-1]['ops_per_s']:,.0f} "
                    f"({out[n][c][-1]['ops_per_s'] / first:.2f}x)"
                    for n in names
                )
                common.progress(f"{c} clients, burst {k + 1}/{bursts}: {figures}")
    return out


def paired_ratios(points: dict[str, list[dict[str, Any]]], key: str) -> dict[str, list[float]]:
    """Per tree, each burst's ``key`` divided by the first tree's burst of the same set."""
    names = list(points)
    firsts = [p[key] for p in points[names[0]]]
    return {
        n: [p[key] / f for p, f in zip(points[n], firsts, strict=True) if p[key] and f]
        for n in names
    }


def _print_paired(points: dict[str, dict[int, list[dict[str, Any]]]], clients: list[int]) -> None:
    for key, what in (
        ("ops_per_s", "ops/s"),
        ("cpu_us_per_op", "CPU us per request"),
        ("p99_ms", "p99 latency"),
    ):
        print(f"\n{what}: median of the paired ratios to the first tree [quartiles]")
        for c in clients:
            ratios = paired_ratios({n: per[c] for n, per in points.items()}, key)
            cells = []
            for name, r in ratios.items():
                if not r:
                    continue
                q1, q3 = common.quantile(sorted(r), 0.25), common.quantile(sorted(r), 0.75)
                cells.append(f"{name} {statistics.median(r):.3f}x [{q1:.2f}-{q3:.2f}]")
            print(f"{c:4} clients  " + "  ".join(cells))


def _print_medians(figures: dict[str, dict[int, list[float]]], clients: list[int]) -> None:
    """One line per client count: each tree's median and its ratio to the first tree's."""
    first = next(iter(figures))
    for c in clients:
        base = statistics.median(figures[first][c])
        cells = [
            f"{name} {statistics.median(v[c]):8,.0f} ({statistics.median(v[c]) / base:.2f}x)"
            for name, v in figures.items()
        ]
        print(f"{c:4} clients  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="name=path, repeatable")
    parser.add_argument("--workload", default="insert_param")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="save as ab.quick.json (smoke)")
    parser.add_argument("--driver", choices=["c", "python"], default="c")
    parser.add_argument("--bursts", type=int, help="paired bursts per client count (see above)")
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    args = parser.parse_args()
    driver = raftsql_load.choose_driver(args.driver)
    trees = {}
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            parser.error(f"--tree wants name=path to a checkout, got {spec!r}")
        trees[name] = Path(path).resolve()
    clients = [int(c) for c in args.clients.split(",")]
    if args.bursts:
        points = run_bursts(trees, args.workload, clients, args.bursts, args.burst_seconds, driver)
        _print_paired(points, clients)
        data = {
            "workload": args.workload,
            "mode": "paired bursts",
            "burst_seconds": args.burst_seconds,
            "driver": driver,
            "trees": {name: str(path) for name, path in trees.items()},
            "bursts": {name: {str(c): v for c, v in per.items()} for name, per in points.items()},
        }
        common.save("ab", data, quick=args.quick)
        return
    runs: dict[str, dict[int, list[float]]] = {name: {c: [] for c in clients} for name in trees}
    cpu: dict[str, dict[int, list[float]]] = {name: {c: [] for c in clients} for name in trees}
    for round_ in range(1, args.rounds + 1):
        for name, tree in trees.items():
            result = run_tree(tree, args.workload, clients, args.seconds, driver)
            for c in clients:
                if result[c]["errors"]:
                    raise RuntimeError(f"{name}: {result[c]['errors']} errors at {c} clients")
                runs[name][c].append(result[c]["ops_per_s"])
                if result[c].get("cpu_us_per_op") is not None:
                    cpu[name][c].append(result[c]["cpu_us_per_op"])
            figures = ", ".join(
                f"{c}: {result[c]['ops_per_s']:,.0f}"
                + (f" ({result[c]['cpu_us_per_op']:,.0f} us cpu/op)" if cpu[name][c] else "")
                for c in clients
            )
            common.progress(f"round {round_}/{args.rounds} {name}: {figures} ops/s")
    print(f"\n{args.workload}, median ops/s of {args.rounds} rounds (ratio to the first tree)")
    _print_medians(runs, clients)
    if all(cpu[name][c] for name in trees for c in clients):
        print("\nthe three nodes' CPU per request, median us (ratio to the first tree)")
        _print_medians(cpu, clients)
    data = {
        "workload": args.workload,
        "seconds": args.seconds,
        "driver": driver,
        "trees": {name: str(path) for name, path in trees.items()},
        "runs_ops_per_s": {name: {str(c): v for c, v in per.items()} for name, per in runs.items()},
        "runs_cpu_us_per_op": {
            name: {str(c): v for c, v in per.items()} for name, per in cpu.items()
        },
    }
    common.save("ab", data, quick=args.quick)


if __name__ == "__main__":
    main()
