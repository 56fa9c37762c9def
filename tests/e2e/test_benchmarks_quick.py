"""The benchmarks' smoke run: every benchmark measures something, plots and summary drawn.

Runs ``python -m benchmarks.run_all --quick`` exactly as a person would and checks what it
leaves in benchmarks/results/. No speed is asserted (the machine is shared and noisy); what
is asserted is that every benchmark still runs against the current code, that no request
failed, and that the figures were written by this run rather than left over from an
earlier one. etcd, wrk and PySyncObj are required, not optional: a comparison skipped
because a peer is missing would look like one that passed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    common,
    paired_floor,
    plots,
    replication_floor,
    run_all,
    trio_floor,
    write_work,
)
from benchmarks.raftsql_load import PIPELINED, QUICK_PIPELINE_SHAPE, WORKLOADS

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 220
"""The run takes about a minute alone on 2 cores; this leaves room for a busy machine."""
FIGURES = [
    "writes_vs_clients",
    "reads_vs_clients",
    "latency_cdf",
    "failover",
    "peers_bars",
    "node_cost",
    "paired_etcd",
]

pytestmark = pytest.mark.timeout(RUN_TIMEOUT_S + 60)  # + the SIGINT grace period


def written_since(path: Path, started: float) -> bool:
    return path.exists() and path.stat().st_mtime >= started


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((common.RESULTS / plots.json_name(name, quick=True)).read_text()))


def run_quick() -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.run_all --quick`` from the repository root.

    On timeout it gets SIGINT first, not SIGKILL: the KeyboardInterrupt unwinds the
    benchmarks' context managers, which stop the clusters they started; a killed run would
    leave node processes behind.
    """
    argv = [sys.executable, "-m", "benchmarks.run_all", "--quick"]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(f"run_all took over {RUN_TIMEOUT_S} s:\n{err[-5000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def check_results_written(started: float) -> None:
    for name in run_all.STEPS:
        path = common.RESULTS / plots.json_name(name, quick=True)
        assert written_since(path, started), f"{path.name} was not written by this run"


def check_points(name: str) -> None:
    """Every throughput point measured something, and nothing failed."""
    for p in load(name).get("points", []):
        where = f"{name}: {p['system']} {p['workload']} at {p['clients']} clients"
        assert p["ops"] > 0, f"{where}: no ops"
        assert p["errors"] == 0, f"{where}: {p['errors']} errors"


def check_raftsql_workloads() -> None:
    # scripts/test installs a C compiler: the benchmarks must not quietly fall back
    assert load("raftsql_load")["driver"] == "c"
    measured = {(p["workload"], p["clients"]) for p in load("raftsql_load")["points"]}
    expected = {(w, c) for w in WORKLOADS for c in common.QUICK_CLIENTS}
    connections, depth = QUICK_PIPELINE_SHAPE
    expected.add((PIPELINED, connections * depth))  # callers sharing connections
    assert expected <= measured, f"raftsql_load is missing {sorted(expected - measured)}"
    for p in load("raftsql_load")["points"]:
        # every point says what each node spent on it: a leader always works, and a
        # follower too (it persists every write; it answers the follower reads)
        cost = p["node_cost_per_op"]
        assert set(cost) == {"leader", "follower"}, cost
        assert cost["leader"]["user_us"] + cost["leader"]["sys_us"] > 0, p["workload"]


def check_replication_floor() -> None:
    """Each variant of the floors ran, and the one without fsync really skipped it."""
    floor = {p["workload"]: p for p in load("limits")["points"] if p["system"] == "floor"}
    variants = [*replication_floor.VARIANTS, *trio_floor.VARIANTS]
    assert set(floor) == set(variants)
    assert [floor[v]["fsync"] for v in variants] == [True, True, False, True, True, True]


def check_paired_floor() -> None:
    """``paired_floor``: each round measured every floor and PySyncObj's synchronous
    caller, and the ratios and rooms are theirs."""
    saved = load("paired_floor")
    assert saved["pysyncobj_workload"] == "set_sync_single"
    (pair,) = saved["pairs"]
    assert set(pair) == {*paired_floor.FLOORS, "pysyncobj"}
    assert all(rate > 0 for rate in pair.values()), pair
    for name, f in saved["floors"].items():
        assert f["ratio_median"] == pytest.approx(pair[name] / pair["pysyncobj"], abs=1e-3)
        room = 1e6 / pair["pysyncobj"] - 1e6 / pair[name]
        assert f["room_us_median"] == pytest.approx(room, abs=0.1)


def check_write_work() -> None:
    """``write_work`` timed every stage, and the critical path is the sum of its own."""
    saved = load("write_work")
    stages = saved["stages"]
    assert set(stages) == {*write_work.CRITICAL, *write_work.OFF_PATH}
    assert all(s["median_us"] > 0 for s in stages.values()), stages
    critical = sum(stages[k]["median_us"] for k in write_work.CRITICAL)
    off_path = sum(stages[k]["mean_us"] for k in write_work.OFF_PATH)
    assert saved["off_path_us"] == pytest.approx(off_path, abs=0.3)
    assert saved["critical_path_us"] == pytest.approx(critical, abs=0.2)


def check_failover_and_catchup() -> None:
    """They measured what they claim: no lost write, a real log and snapshot catch-up."""
    failover = load("failover")
    assert failover["verification"]["ok"], failover["verification"]
    assert failover["latency_series"] and failover["first_write_s"]["median"] > 0
    catchup = load("catchup")
    assert catchup["log"]["entries_behind"] > 0
    assert catchup["snapshot"]["snapshots_installed"] >= 1


def check_paired_etcd() -> None:
    """Each pair of bursts measured both systems, and its ratio is theirs."""
    pairs = load("paired_etcd")["pairs"]
    assert {(p["raftsql_workload"], p["etcd_workload"]) for p in pairs} == {("insert_param", "put")}
    for p in pairs:
        assert len(p["bursts"]) == 2
        for b in p["bursts"]:
            assert b["raftsql"] > 0 and b["etcd"] > 0
            assert b["ratio"] == pytest.approx(b["raftsql"] / b["etcd"], rel=1e-3)
        assert p["ratio_q1"] <= p["ratio_median"] <= p["ratio_q3"]


def check_plots_and_summary(started: float) -> None:
    for name in FIGURES:
        path = common.RESULTS / plots.png_name(name, quick=True)
        assert written_since(path, started), f"{path.name} was not drawn by this run"
    summary = common.RESULTS / plots.summary_name(quick=True)
    assert written_since(summary, started), f"{summary.name} was not written by this run"
    text = summary.read_text()
    assert "| writes/s at 1 client: insert_param vs etcd put |" in text
    assert "| writes/s, 80 callers in flight: insert_pipelined vs PySyncObj" in text
    assert "failover: p99 first write" in text
    assert "## The etcd targets in paired bursts" in text
    assert "writes at 1 client: insert_param vs etcd put (2 pairs)" in text
    assert "- replication floor, one synchronous caller" in text
    assert "of the durable floor with a client hop" in text
    assert "of the trio floor with a worker thread" in text
    assert "- floors / PySyncObj's synchronous caller, in 1 alternating round:" in text
    assert "- raftsql's own work per write, all waits taken out" in text


def test_run_all_quick() -> None:
    """One run checked every way (a single test: under pytest-xdist, several tests sharing
    one run could each start their own, at the same time, on the same files)."""
    started = time.time()
    proc = run_quick()
    assert proc.returncode == 0, f"run_all failed:\n{proc.stderr[-5000:]}"
    assert "## Targets" in proc.stdout, "the summary was not printed"
    check_results_written(started)
    for name in run_all.STEPS:
        check_points(name)
    check_raftsql_workloads()
    check_replication_floor()
    check_paired_floor()
    check_write_work()
    check_failover_and_catchup()
    check_paired_etcd()
    check_plots_and_summary(started)


def test_ab_compares_trees() -> None:
    """The A/B tool runs each tree's own code (here the same tree twice), drives both with
    this checkout's C load generator, and saves every round's figures: throughput and
    the nodes' CPU per request."""
    argv = [sys.executable, "-m", "benchmarks.ab", "--tree", f"a={ROOT}", "--tree", f"b={ROOT}"]
    argv += ["--clients", "1,4", "--rounds", "1", "--seconds", "1", "--quick"]
    started = time.time()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio to the first tree" in proc.stdout and "CPU per request" in proc.stdout
    path = common.RESULTS / "ab.quick.json"
    assert written_since(path, started)
    saved = json.loads(path.read_text())
    assert set(saved["runs_ops_per_s"]) == {"a", "b"}
    assert saved["driver"] == "c", "the trees are driven by this checkout's C load generator"
    for figures in ("runs_ops_per_s", "runs_cpu_us_per_op"):
        assert all(
            len(v) == 1 and v[0] > 0 for per in saved[figures].values() for v in per.values()
        ), figures


def test_ab_compares_trees_in_paired_bursts() -> None:
    """``--bursts``: both trees' clusters run at once and take turns, and the ratios are
    taken burst by burst."""
    argv = [sys.executable, "-m", "benchmarks.ab", "--tree", f"a={ROOT}", "--tree", f"b={ROOT}"]
    argv += ["--clients", "1", "--bursts", "2", "--burst-seconds", "0.5", "--quick"]
    started = time.time()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "median of the paired ratios" in proc.stdout
    path = common.RESULTS / "ab.quick.json"
    assert written_since(path, started)
    saved = json.loads(path.read_text())
    assert saved["mode"] == "paired bursts"
    bursts = saved["bursts"]
    assert set(bursts) == {"a", "b"}
    for per in bursts.values():
        (points,) = per.values()
        assert len(points) == 2
        assert all(p["ops_per_s"] > 0 and p["cpu_us_per_op"] > 0 for p in points)
