"""A ~64 MB database: a follower catches up from a streamed snapshot without either side
holding it in memory, and a restart does not restore it again (LESSONS: dqlite #281,
memory spikes with large snapshots; rqlite #1798, hour-long restores on restart; "fast
restarts and joins with big snapshots").

Real node processes, fsync on. Memory is the kernel's peak RSS (``VmHWM``, reset through
``clear_refs``); what a restart reads is the kernel's count of bytes the process read
(``rchar``: every ``read``/``pread``, page cache or not), so a restart that copied the
database would show it whatever the cache holds.
"""

from __future__ import annotations

import io
import sqlite3
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from raftsql.client import Client
from raftsql.cluster import LocalCluster
from raftsql.shell.loading import read_restore_file, restore

MakeCluster = Callable[..., LocalCluster]

pytestmark = pytest.mark.timeout(240)

FILL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000) "
    "INSERT INTO big (pad) SELECT randomblob(1000) FROM n"
)
"""~16 MB per write."""
DB_BYTES = 64_000_000


def proc_field(pid: int, name: str, file: str = "status") -> int:
    with open(f"/proc/{pid}/{file}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(name))


def reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from the current RSS


def wait_current(cluster: LocalCluster, node: int, leader: int, timeout: float = 120) -> dict:
    """Until ``node`` answers and has applied everything the leader has committed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = cluster.statuses()
        mine, theirs = st.get(node), st.get(leader)
        if mine and theirs and mine["applied"] >= theirs["commit"] > 0:
            return mine
        time.sleep(0.05)
    raise AssertionError(f"node {node} did not catch up within {timeout}s: {st}")


def test_a_follower_catches_up_from_a_big_snapshot_and_restarts_without_restoring_it(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(snapshot_every=10**9, snapshot_retain=0)  # only our snapshot
    leader = cluster.wait_for_leader()
    behind = next(i for i in sorted(cluster.ports) if i != leader)
    other = next(i for i in sorted(cluster.ports) if i not in (leader, behind))
    cluster.kill(behind)
    with Client([cluster.address(leader)], timeout=120) as c:
        c.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, pad BLOB)")
        for _ in range(4):
            c.execute(FILL)
        taken = c.snapshot()  # the leader compacts its log: `behind` needs the snapshot
        rows = c.query("SELECT count(*), sum(length(pad)) FROM big").rows
    assert taken["size"] > DB_BYTES

    # --- a join from a streamed snapshot --------------------------------------------
    leader_pid = cluster.pids[leader]
    reset_peak_rss(leader_pid)
    leader_before = proc_field(leader_pid, "VmHWM")
    cluster.start_node(behind)
    status = wait_current(cluster, behind, leader)
    assert status["counters"]["snapshots_installed"] >= 1, status["counters"]
    leader_grew = (proc_field(leader_pid, "VmHWM") - leader_before) / 1024
    follower_peak = proc_field(cluster.pids[behind], "VmHWM") / 1024
    reference = proc_field(cluster.pids[other], "VmRSS") / 1024  # applied it all itself
    print(
        f"snapshot {taken['size'] / 1e6:.0f} MB: leader peak RSS +{leader_grew:.1f} MiB "
        f"while sending; the joining follower peaked at {follower_peak:.0f} MiB "
        f"(a follower that applied it all: {reference:.0f} MiB)"
    )
    assert leader_grew < 10, f"the leader's peak RSS grew {leader_grew:.1f} MiB sending it"
    assert follower_peak < reference + 32, "the follower held the snapshot in memory"
    with Client([cluster.address(behind)], timeout=60) as c:
        assert c.query("SELECT count(*), sum(length(pad)) FROM big").rows == rows

    # --- a restart of the node that has the big database ----------------------------
    cluster.kill(behind)
    with Client([cluster.address(leader)], timeout=60) as c:
        c.execute("CREATE TABLE after_restart (k INTEGER)")
        c.execute("INSERT INTO after_restart VALUES (1)")
    started = time.monotonic()
    cluster.start_node(behind)
    status = wait_current(cluster, behind, leader)
    took = time.monotonic() - started
    read_mb = proc_field(cluster.pids[behind], "rchar", "io") / 1e6
    print(f"restart to current: {took:.2f} s, {read_mb:.1f} MB read")
    assert status["counters"]["snapshots_installed"] == 0, "the restart restored the snapshot"
    assert read_mb < DB_BYTES / 4 / 1e6, f"the restart read {read_mb:.0f} MB"
    with Client([cluster.address(behind)], timeout=60) as c:
        assert c.query("SELECT count(*), sum(length(pad)) FROM big").rows == rows
        assert c.query("SELECT k FROM after_restart").rows == [(1,)]


def test_restoring_a_big_sqlite_file_streams_it(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """``.restore big.db`` of a ~40 MB SQLite file: every row arrives, and the shell's
    Python memory peaks at a few batches, not at the file (it held the whole dump as a
    list of statements, ~2x the file as hex literals)."""
    path = tmp_path / "big.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, pad BLOB)")
    con.execute("CREATE INDEX big_name ON big (name)")
    con.executemany(
        "INSERT INTO big VALUES (?, ?, randomblob(1000))", ((k, f"row {k}") for k in range(40_000))
    )
    con.commit()
    want = con.execute("SELECT count(*), sum(length(pad)), max(name) FROM big").fetchall()
    con.close()
    assert path.stat().st_size > 40_000_000

    cluster = make_cluster()
    err = io.StringIO()
    with Client(cluster.addresses(), timeout=60) as client:
        tracemalloc.start()
        try:
            source = read_restore_file(path)
            done = restore(client, source.statements(), err, total=source.total)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        got = client.query("SELECT count(*), sum(length(pad)), max(name) FROM big").rows
        index = client.query("SELECT name FROM sqlite_schema WHERE type = 'index'").rows
    print(f"restored {done} statements; peak Python memory {peak / 2**20:.1f} MiB")
    assert [tuple(r) for r in got] == want
    assert ("big_name",) in [tuple(r) for r in index]
    assert done == source.total == 40_002  # CREATE TABLE, 40,000 rows, CREATE INDEX
    assert f"{done}/{done} statements (100%" in err.getvalue()
    assert peak < 16 * 2**20, f"restoring a 40 MB file peaked at {peak / 2**20:.0f} MiB"
