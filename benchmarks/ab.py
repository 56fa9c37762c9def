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

Prints each round as it ends and a table of medians; saves ``results/ab.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import cloadgen, common, proc_stats, raftsql_load

# Runs inside a tree: only uses what every tree since the load generator has; the C
# driver's module comes from this checkout (AB_CLOADGEN), its workload from AB_CWORKLOAD.
_ONE_RUN = """
import importlib.util, json, os, sys, tempfile
from pathlib import Path
from benchmarks.loadgen import closed_loop
from benchmarks.raftsql_load import WORKLOADS, _prepare, _targets
from raftsql.cluster import LocalCluster
workload, seconds = sys.argv[1], float(sys.argv[3])
clients = [int(c) for c in sys.argv[2].split(",")]
def load(name, env):
    found = importlib.util.spec_from_file_location(name, os.environ[env])
    module = sys.modules[name] = importlib.util.module_from_spec(found)  # for dataclasses
    found.loader.exec_module(module)
    return module
cload = load("ab_cloadgen", "AB_CLOADGEN") if os.environ.get("AB_CLOADGEN") else None
c_workload = json.loads(os.environ.get("AB_CWORKLOAD", "{}"))
stats = load("ab_proc_stats", "AB_PROC_STATS")
out = {}
with tempfile.TemporaryDirectory(prefix="raftsql-ab-") as tmp:
  with LocalCluster(directory=Path(tmp)) as cl:
    _prepare(cl)
    where, maker = WORKLOADS[workload]
    pids = list(cl.pids.values())
    for n in clients:
        probe = lambda: [stats.sample(pid) for pid in pids]
        if cload is not None:
            r = cload.closed_loop_c(_targets(cl, where), n, c_workload, seconds, probe=probe)
        else:
            r = closed_loop(_targets(cl, where), n, maker(n), seconds, probe=probe)
        cpu = None
        if len(r.probes) == 2 and None not in r.probes[0] + r.probes[1] and r.ops:
            spent = sum(a.user_s + a.sys_s - b.user_s - b.sys_s for b, a in zip(*r.probes))
            cpu = spent / r.ops * 1e6
        out[n] = {"ops_per_s": r.ops / r.seconds, "errors": r.errors, "cpu_us_per_op": cpu}
print(json.dumps(out))
"""


def run_tree(
    tree: Path, workload: str, clients: list[int], seconds: float, driver: str = "python"
) -> dict[int, Any]:
    """One cluster from ``tree``'s code, every client count in turn."""
    env = dict(os.environ, PYTHONPATH=str(tree), AB_PROC_STATS=proc_stats.__file__)
    if driver == "c":
        env["AB_CLOADGEN"] = cloadgen.__file__
        env["AB_CWORKLOAD"] = json.dumps(raftsql_load.c_workload(workload))
    args = [workload, ",".join(map(str, clients)), str(seconds)]
    with subprocess.Popen(
        [sys.executable, "-c", _ONE_RUN, *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=120 + 30 * len(clients) * seconds)
        except subprocess.TimeoutExpired:
            # SIGINT unwinds the run's context managers, which stop its cluster's nodes
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: the run failed:\n{err[-3000:]}")
    return {int(k): v for k, v in json.loads(out.splitlines()[-1]).items()}


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
    args = parser.parse_args()
    driver = raftsql_load.choose_driver(args.driver)
    trees = {}
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            parser.error(f"--tree wants name=path to a checkout, got {spec!r}")
        trees[name] = Path(path).resolve()
    clients = [int(c) for c in args.clients.split(",")]
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
