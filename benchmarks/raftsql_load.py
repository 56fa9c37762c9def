"""raftsql under load: writes and reads against client concurrency on a local 3-node
cluster of real node processes (fsync on, acknowledged only once a majority has the entry
on disk and the leader has applied it).

Workloads (each at 1, 4, 16, 64 and 256 closed-loop clients):

- ``insert_param``: one single-row parameterized INSERT (100-byte payload) per request;
- ``insert_literal``: the same row as literal SQL, different text every time, so the
  statement cache misses on every request;
- ``txn10``: ten parameterized INSERTs in one atomic request;
- ``read_leader`` / ``read_followers``: point SELECT by primary key, linearizable
  (ReadIndex), sent to the leader / spread over the two followers;
- ``read_stale_followers``: the same SELECT served locally by the followers, for contrast;
- ``insert_pipelined`` (C driver only, one point): ``insert_param`` from 9,600 callers, 150
  on each of 64 connections, each caller its own session with one write in flight, the
  way PySyncObj's peak is measured (10,000 calls in flight from one process).

The requests are sent by the C load generator (``cloadgen.py``; etcd's driver, wrk, is C
too) unless ``--driver python`` or no C compiler: then by ``loadgen.py``. Each point
records which (``driver``).

    python -m benchmarks.raftsql_load [--quick] [--clients 1,16,64] [--duration 5]
        [--driver c|python]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common, proc_stats
from benchmarks.cloadgen import CloadUnavailable, build, closed_loop_c
from benchmarks.loadgen import LoadResult, RequestMaker, closed_loop, sessions
from raftsql.cluster import LocalCluster

PAYLOAD = "x" * 100
KEYS = 10_000
INSERT = "INSERT INTO t (client, n, payload) VALUES (?, ?, ?)"
POINT_READ = "SELECT v FROM kv WHERE id = ?"


def _writes(workload: str, clients: int) -> RequestMaker:
    session = sessions(clients)

    def insert_param(i: int, n: int) -> dict[str, Any]:
        return {
            "op": "write",
            "stmts": [[INSERT, [i, n, PAYLOAD]]],
            "session": session[i],
            "seq": n,
        }

    def insert_literal(i: int, n: int) -> dict[str, Any]:
        sql = f"INSERT INTO t (client, n, payload) VALUES ({i}, {n}, '{PAYLOAD}')"
        return {"op": "write", "stmts": [[sql, []]], "session": session[i], "seq": n}

    def txn10(i: int, n: int) -> dict[str, Any]:
        stmts = [[INSERT, [i, n * 10 + k, PAYLOAD]] for k in range(10)]
        return {"op": "write", "stmts": stmts, "atomic": True, "session": session[i], "seq": n}

    makers: dict[str, RequestMaker] = {
        "insert_param": insert_param,
        "insert_literal": insert_literal,
        "txn10": txn10,
    }
    return makers[workload]


def _reads(consistency: str) -> RequestMaker:
    rng = random.Random(1)

    def read(i: int, n: int) -> dict[str, Any]:
        return {
            "op": "read",
            "sql": POINT_READ,
            "params": [rng.randrange(KEYS)],
            "consistency": consistency,
        }

    return read


WORKLOADS: dict[str, tuple[str, Callable[[int], RequestMaker]]] = {
    "insert_param": ("leader", lambda c: _writes("insert_param", c)),
    "insert_literal": ("leader", lambda c: _writes("insert_literal", c)),
    "txn10": ("leader", lambda c: _writes("txn10", c)),
    "read_leader": ("leader", lambda c: _reads("linearizable")),
    "read_followers": ("followers", lambda c: _reads("linearizable")),
    "read_stale_followers": ("followers", lambda c: _reads("stale")),
}


PIPELINED = "insert_pipelined"
PIPELINE_SHAPE = (64, 150)
"""Connections and callers per connection of ``insert_pipelined`` (9,600 in flight, under
``NodeConfig.max_pending_writes``)."""
QUICK_PIPELINE_SHAPE = (4, 20)

C_WORKLOADS: dict[str, dict[str, str]] = {
    "insert_param": {"workload": "insert_param"},
    "insert_literal": {"workload": "insert_literal"},
    "txn10": {"workload": "txn10"},
    "read_leader": {"workload": "read", "consistency": "linearizable"},
    "read_followers": {"workload": "read", "consistency": "linearizable"},
    "read_stale_followers": {"workload": "read", "consistency": "stale"},
    PIPELINED: {"workload": "insert_param"},
}
"""The same workloads for the C driver: what to send is built in cload.c from these."""


def c_workload(name: str) -> dict[str, str]:
    return dict(
        C_WORKLOADS[name], insert_sql=INSERT, read_sql=POINT_READ, payload=PAYLOAD, keys=str(KEYS)
    )


def choose_driver(wanted: str) -> str:
    """``c`` if it can be built (and was not declined), else ``python``, saying why."""
    if wanted == "python":
        return "python"
    try:
        build()
    except CloadUnavailable as exc:
        if wanted == "c-only":
            raise
        common.progress(f"the C load generator is unavailable ({exc}); using the Python one")
        return "python"
    return "c"


def drive(
    driver: str,
    name: str,
    addresses: list[tuple[str, int]],
    clients: int,
    seconds: float,
    probe: Callable[[], Any] | None = None,
    depth: int = 1,
) -> LoadResult:
    """One closed-loop point of workload ``name`` with the chosen driver (``depth``
    callers on each of ``clients`` connections: the C driver only)."""
    if driver == "c":
        return closed_loop_c(
            addresses, clients, c_workload(name), seconds, probe=probe, depth=depth
        )
    if depth != 1:
        raise ValueError("only the C driver keeps several callers on one connection")
    return closed_loop(addresses, clients, WORKLOADS[name][1](clients), seconds, probe=probe)


def _prepare(cluster: LocalCluster) -> None:
    with cluster.client(timeout=30) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, client INT, n INT, payload TEXT)")
        c.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT)")
        for start in range(0, KEYS, 1000):
            c.write(
                [("INSERT INTO kv VALUES (?, ?)", (k, PAYLOAD)) for k in range(start, start + 1000)]
            )


def _targets(cluster: LocalCluster, where: str) -> list[tuple[str, int]]:
    leader = cluster.wait_for_leader()
    ids = [leader] if where == "leader" else [i for i in sorted(cluster.ports) if i != leader]
    return [(cluster.host, cluster.ports[i]) for i in ids]


def _node_cost(probes: list[Any], leader: int, ops: int) -> dict[str, dict[str, float]] | None:
    """Per acknowledged request: the leader's CPU time and context switches, and the
    followers' (their mean), over the measured window."""
    if len(probes) != 2:
        return None
    before, after = probes
    costs = {i: proc_stats.per_op(before.get(i), after.get(i), ops) for i in after}
    followers = [c for i, c in costs.items() if i != leader and c is not None]
    out: dict[str, dict[str, float]] = {}
    if costs.get(leader):
        out["leader"] = costs[leader]  # type: ignore[assignment]
    if followers:
        out["follower"] = {
            k: round(sum(c[k] for c in followers) / len(followers), 2) for k in followers[0]
        }
    return out or None


def _describe_cost(cost: dict[str, dict[str, float]] | None) -> str:
    if not cost:
        return ""
    parts = [
        f"{role} {c['user_us'] + c['sys_us']:.0f} us ({c['switches']:.1f} sw)"
        for role, c in cost.items()
    ]
    return "  cpu/op: " + ", ".join(parts)


def run(
    quick: bool = False,
    clients: list[int] | None = None,
    duration: float | None = None,
    workloads: list[str] | None = None,
    driver: str = "c",
) -> dict[str, Any]:
    driver = choose_driver(driver)
    levels = clients or (common.QUICK_CLIENTS if quick else common.CLIENTS)
    seconds = duration or (1.0 if quick else 5.0)
    chosen = workloads or [*WORKLOADS, *([PIPELINED] if driver == "c" else [])]
    if PIPELINED in chosen and driver != "c":
        common.progress(f"{PIPELINED} needs the C driver: skipped")
        chosen = [w for w in chosen if w != PIPELINED]
    points = []
    with (
        tempfile.TemporaryDirectory(prefix="raftsql-bench-") as tmp,
        LocalCluster(directory=Path(tmp)) as cluster,
    ):
        _prepare(cluster)
        for name in chosen:
            where = "leader" if name == PIPELINED else WORKLOADS[name][0]
            shapes = (
                [QUICK_PIPELINE_SHAPE if quick else PIPELINE_SHAPE]
                if name == PIPELINED
                else [(n, 1) for n in levels]
            )
            for connections, depth in shapes:
                n = connections * depth
                leader = cluster.wait_for_leader()
                pids = dict(cluster.pids)
                result = drive(
                    driver,
                    name,
                    _targets(cluster, where),
                    connections,
                    seconds,
                    probe=lambda pids=pids: {i: proc_stats.sample(pid) for i, pid in pids.items()},
                    depth=depth,
                )
                cost = _node_cost(result.probes, leader, result.ops)
                p = common.point(
                    "raftsql",
                    name,
                    n,
                    result.ops,
                    result.seconds,
                    result.latencies,
                    errors=result.errors,
                    loadgen_cpu_s=round(result.loadgen_cpu_s, 3),
                    driver=driver,
                    **({"connections": connections, "depth": depth} if depth > 1 else {}),
                    **({"node_cost_per_op": cost} if cost else {}),
                )
                common.progress(common.describe(p) + _describe_cost(cost))
                for sample in result.error_samples:
                    common.progress(f"  error: {sample}")
                points.append(p)
    data = {"points": points, "duration_s": seconds, "pid": os.getpid(), "driver": driver}
    common.save("raftsql_load", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--clients", help="comma-separated, e.g. 1,16,64")
    p.add_argument("--duration", type=float, help="seconds per point")
    p.add_argument(
        "--workloads", help=f"comma-separated subset of {','.join([*WORKLOADS, PIPELINED])}"
    )
    p.add_argument(
        "--driver",
        choices=["c", "python", "c-only"],
        default="c",
        help="load generator: c (falls back to python without a compiler), python, c-only",
    )
    args = p.parse_args()
    run(
        args.quick,
        [int(c) for c in args.clients.split(",")] if args.clients else None,
        args.duration,
        args.workloads.split(",") if args.workloads else None,
        args.driver,
    )


if __name__ == "__main__":
    main()
