"""The C load generator (benchmarks/cload/cload.c) against a real 3-node cluster.

It replaces the Python driver in the benchmarks, so it must send exactly the requests the
workloads describe and count exactly what the Python one counts: what it wrote is read
back row by row (every client's request numbers 1..N, each once: sessions and seqs were
well-formed, nothing was sent twice or skipped), and an error answer is counted as an
error with its text, never as an op.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from benchmarks.cloadgen import build, closed_loop_c
from benchmarks.raftsql_load import PAYLOAD, _prepare, _targets, c_workload

pytestmark = pytest.mark.timeout(120)


def by_client(rows: list[tuple[Any, ...]]) -> dict[int, list[int]]:
    numbers: dict[int, list[int]] = defaultdict(list)
    for client, n, payload in rows:
        assert payload == PAYLOAD
        numbers[client].append(n)
    return numbers


def test_the_c_driver_sends_the_workloads_requests_and_counts_like_the_python_one(
    make_cluster: Any,
) -> None:
    build()
    cluster = make_cluster()
    _prepare(cluster)
    probes: list[float] = []
    result = closed_loop_c(
        _targets(cluster, "leader"),
        3,
        c_workload("insert_param"),
        0.6,
        warmup=0.2,
        probe=lambda: probes.append(1.0) or len(probes),
    )
    assert result.errors == 0 and result.error_samples == []
    assert result.ops > 0 and len(result.latencies) == result.ops
    assert all(0 < t < 5 for t in result.latencies)
    assert 0.5 < result.seconds <= 0.6 + 1e-6
    assert result.probes == [1, 2], "the window's opening and closing probes"
    assert result.loadgen_cpu_s > 0
    with cluster.client(timeout=30) as c:
        rows = c.query("SELECT client, n, payload FROM t").rows
    numbers = by_client(rows)
    assert set(numbers) == {0, 1, 2}
    for client, ns in numbers.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), f"client {client}: {sorted(ns)[:20]}"
    # the rows written include the warmup's, which are not counted
    assert len(rows) >= result.ops

    for workload, first, step in [("insert_literal", 1, 1), ("txn10", 10, 10)]:
        with cluster.client(timeout=30) as c:
            c.execute("DELETE FROM t")
        more = closed_loop_c(_targets(cluster, "leader"), 2, c_workload(workload), 0.3, warmup=0.1)
        assert more.errors == 0 and more.ops > 0, (workload, more.error_samples)
        with cluster.client(timeout=30) as c:
            numbers = by_client(c.query("SELECT client, n, payload FROM t").rows)
        assert set(numbers) == {0, 1}
        for client, ns in numbers.items():
            # txn10 writes n*10+k (k < 10) for request n: requests 1..N give 10..10N+9
            assert len(ns) % step == 0, (workload, client)
            assert sorted(ns) == list(range(first, first + len(ns))), (workload, client)

    for where, workload in [("leader", "read_leader"), ("followers", "read_stale_followers")]:
        reads = closed_loop_c(_targets(cluster, where), 4, c_workload(workload), 0.3, warmup=0.1)
        assert reads.errors == 0 and reads.ops > 0, (workload, reads.error_samples)


def test_the_c_driver_counts_error_answers_as_errors_and_keeps_their_text(
    make_cluster: Any,
) -> None:
    cluster = make_cluster()
    bad = dict(c_workload("insert_param"), insert_sql="INSERT INTO missing VALUES (?, ?, ?)")
    result = closed_loop_c(_targets(cluster, "leader"), 2, bad, 0.3, warmup=0.1)
    assert result.ops == 0 and result.latencies == []
    assert result.errors > 0
    assert result.error_samples and "no such table" in result.error_samples[0]
    # the node answered every one of them and is still serving
    with cluster.client(timeout=30) as c:
        assert c.query("SELECT 1").rows == [(1,)]


def test_many_callers_share_a_connection_each_with_its_own_session(make_cluster: Any) -> None:
    """``depth``: 40 callers on each of 2 connections, each one request in flight. Every
    row is written once (a caller's request id names it, answers match in any order; each
    caller has its own session, so the leader's exactly-once table never sees two writes
    of one session in flight), and the rows of a connection are numbered 1..N."""
    cluster = make_cluster()
    _prepare(cluster)
    result = closed_loop_c(
        _targets(cluster, "leader"), 2, c_workload("insert_param"), 0.8, warmup=0.2, depth=40
    )
    # a request refused in the warmup (a busy machine: the suite runs two tests at once)
    # leaves its number unused; none was refused in the measured window
    assert result.errors == 0 and result.errors_outside is not None, result.error_samples
    assert result.ops > 80 and len(result.latencies) == result.ops
    with cluster.client(timeout=30) as c:
        rows = c.query("SELECT client, n, payload FROM t").rows
    numbers = by_client(rows)
    assert set(numbers) == {0, 1}
    unused = 0
    for client, ns in numbers.items():
        assert len(set(ns)) == len(ns), f"client {client}: a request written twice"
        unused += max(ns) - len(ns)  # numbers 1..max with no row
    assert unused <= result.errors_outside, (unused, result.errors_outside)
    assert len(rows) >= result.ops
