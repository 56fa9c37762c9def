"""A 3-node cluster of real processes: writes, reads, failover, catch-up, exactly-once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from raftsql import errors
from raftsql.client import Client
from raftsql.cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)

MakeCluster = Callable[..., LocalCluster]


def wait_converged(cluster: LocalCluster, timeout: float = 20.0) -> dict[int, dict]:
    """Wait until every running node applied the same index; return their digests.

    A node still applying a long statement answers its digest only when done (the digest
    waits for the apply): a digest that times out means "not yet", not a failure. Digests
    are asked for only once every node's status shows the same applied index: each one
    serializes the whole database, and asking every 0.1 s while a follower finished a
    6M-row insert piled them up on the nodes (work the test is not about)."""
    deadline = time.monotonic() + timeout
    digests: dict[int, dict] = {}
    while time.monotonic() < deadline:
        applied: set[int | None] = set()
        for i in sorted(cluster.ports):
            if cluster.is_running(i):
                with Client([cluster.address(i)], timeout=2) as c:
                    try:
                        applied.add(c.status()["applied"])
                    except errors.RequestTimeout:
                        applied.add(None)
        if len(applied) != 1 or None in applied:
            time.sleep(0.1)
            continue
        digests, busy = {}, False
        for i in sorted(cluster.ports):
            if cluster.is_running(i):
                with Client([cluster.address(i)], timeout=2) as c:
                    try:
                        digests[i] = c.digest()
                    except errors.RequestTimeout:
                        busy = True
        if not busy and len({d["applied"] for d in digests.values()}) == 1:
            return digests
        time.sleep(0.1)
    raise AssertionError(f"nodes did not converge: {digests}")


def test_write_then_read_on_every_node(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)")
        r = c.execute("INSERT INTO kv VALUES (?, ?)", ("a", 1))
        assert r.rowcount == 1 and r.lastrowid == 1
        r = c.execute("INSERT INTO kv VALUES (:k, :v) RETURNING v * 10", {"k": "b", "v": 2})
        assert r.rows == [(20,)]
    # a linearizable read on each node (followers included) sees the acknowledged writes
    for i in sorted(cluster.ports):
        with Client([cluster.address(i)]) as c:
            assert c.query("SELECT k, v FROM kv ORDER BY k").rows == [("a", 1), ("b", 2)]
    # the status API says how fresh each follower is and how fast requests were served
    with Client([cluster.address(cluster.wait_for_leader())]) as c:
        st = c.status()
    assert st["latency_ms"]["write"]["n"] >= 3 and st["latency_ms"]["write"]["p99"] > 0
    assert all(0 <= pr["last_ack"] < 2.0 for pr in st["progress"].values())
    follower = next(i for i in sorted(cluster.ports) if i != st["id"])
    with Client([cluster.address(follower)]) as c:
        assert 0 <= c.status()["last_contact"] < 2.0


def test_bad_input_gets_an_error_and_the_node_keeps_serving(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE t (x INTEGER UNIQUE)")
        c.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(errors.SQLError):
            c.execute("SELEC nonsense")
        with pytest.raises(errors.ConstraintError):
            c.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(errors.ForbiddenSQL):
            c.execute("ATTACH DATABASE 'x.db' AS x")
        with pytest.raises(errors.ParameterError):
            c.execute("INSERT INTO t VALUES (?)", (1, 2))
        with pytest.raises(errors.RaftsqlError):
            c.execute("INSERT INTO t VALUES (changes())")
        c.execute("INSERT INTO t VALUES (2)")
        assert c.query("SELECT x FROM t ORDER BY x").rows == [(1,), (2,)]


def test_a_retried_write_is_applied_once(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE log (x INTEGER)")
        request = {
            "op": "write",
            "stmts": [["INSERT INTO log VALUES (42)", []]],
            "atomic": True,
            "session": b"retry-session-01",
            "seq": 1,
        }
        first = c._call(dict(request), to_leader=True)
        second = c._call(dict(request), to_leader=True)  # the client's retry after a timeout
        assert first["results"] == second["results"]
        assert c.query("SELECT count(*) FROM log").rows == [(1,)]


def test_a_client_that_only_knows_a_follower_can_write(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    follower = next(i for i in sorted(cluster.ports) if i != leader)
    with Client([cluster.address(follower)]) as c:
        c.execute("CREATE TABLE f (x)")
        request = {
            "op": "write",
            "stmts": [["INSERT INTO f VALUES (1)", []]],
            "session": b"via-follower",
            "seq": 7,
        }
        first = c._call(dict(request), to_leader=True)
        again = c._call(dict(request), to_leader=True)  # retried through the follower
        assert first["results"] == again["results"]
        assert c.query("SELECT count(*) FROM f").rows == [(1,)]
        assert c.status()["id"] == follower, "the client never had to leave the follower"


def test_nondeterministic_sql_gives_identical_replicas(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE t (a, b, c, d TEXT DEFAULT CURRENT_TIMESTAMP, e)")
        c.execute("CREATE TABLE audit (r, at)")
        c.execute(
            "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN "
            "INSERT INTO audit VALUES (random(), datetime('now')); END"
        )
        for _ in range(5):
            c.execute(
                "INSERT INTO t (a, b, c, e) VALUES (random(), randomblob(4), "
                "datetime('now'), abs(random()) % 1000)"
            )
            time.sleep(0.01)
    digests = wait_converged(cluster)
    assert len({d["sha256"] for d in digests.values()}) == 1, digests
    rows = {}
    for i in sorted(cluster.ports):
        with Client([cluster.address(i)]) as c:
            rows[i] = (
                c.query("SELECT * FROM t ORDER BY rowid", consistency="stale").rows,
                c.query("SELECT * FROM audit ORDER BY rowid", consistency="stale").rows,
            )
    assert rows[1] == rows[2] == rows[3]
    assert len({r[0] for r in rows[1][0]}) == 5, "random() should still be random"


def test_follower_linearizable_read_sees_a_just_acknowledged_write(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    follower = next(i for i in sorted(cluster.ports) if i != leader)
    with cluster.client() as w, Client([cluster.address(follower)]) as r:
        w.execute("CREATE TABLE c (n INTEGER)")
        w.execute("INSERT INTO c VALUES (0)")
        for n in range(1, 30):
            w.execute("UPDATE c SET n = ?", (n,))
            assert r.query("SELECT n FROM c").rows == [(n,)]
        assert r.status()["role"] == "follower"


def test_kill_leader_under_load_loses_no_acknowledged_write(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(snapshot_every=300, snapshot_retain=50)
    with cluster.client() as c:
        c.execute("CREATE TABLE w (client INTEGER, n INTEGER)")
    acked: dict[int, list[int]] = {k: [] for k in range(4)}
    stop = threading.Event()

    def writer(k: int) -> None:
        with cluster.client(timeout=20) as c:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    c.execute("INSERT INTO w VALUES (?, ?)", (k, n))
                    acked[k].append(n)
                except errors.RequestTimeout:
                    pass  # unknown outcome: may or may not be there, but never twice

    threads = [threading.Thread(target=writer, args=(k,)) for k in acked]
    for t in threads:
        t.start()
    time.sleep(1.5)
    old_leader = cluster.wait_for_leader()
    cluster.kill(old_leader)  # kill -9 mid-load
    killed_at = time.monotonic()
    new_leader = cluster.wait_for_leader()
    assert new_leader != old_leader
    time.sleep(2.0)  # keep writing; the log grows past the snapshot interval
    with cluster.client() as c:
        c.snapshot()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert sum(len(v) for v in acked.values()) > 50
    cluster.start_node(old_leader)  # catches up (from a snapshot: its log was compacted)
    digests = wait_converged(cluster, timeout=60)
    assert len({d["sha256"] for d in digests.values()}) == 1, digests
    for i in sorted(cluster.ports):
        with Client([cluster.address(i)]) as c:
            rows = c.query("SELECT client, n FROM w", consistency="stale").rows
        assert len(rows) == len(set(rows)), f"node {i} applied some write twice"
        have = set(rows)
        for k, ns in acked.items():
            missing = [n for n in ns if (k, n) not in have]
            assert not missing, f"node {i} lost acknowledged writes of client {k}: {missing}"
    with Client([cluster.address(old_leader)]) as c:
        st = c.status()
    assert st["counters"]["snapshots_installed"] >= 1, "it should have caught up from a snapshot"
    assert time.monotonic() - killed_at < 120


def test_a_long_write_runs_off_the_event_loop(make_cluster: MakeCluster) -> None:
    """Nodes apply on their event loop under a time budget: a statement that runs for
    seconds is cut off and finished by the disk worker, so heartbeats go on (the leader
    stays leader of the same term) and requests are answered while it runs."""
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    with Client([cluster.address(leader)]) as c:
        c.execute("CREATE TABLE big (x)")
        term = c.status()["term"]
    heavy = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000000) "
        "INSERT INTO big SELECT x FROM c"
    )
    done = threading.Event()

    def long_write() -> None:
        try:
            with Client([cluster.address(leader)], timeout=120) as c:
                assert c.execute(heavy).rowcount == 6_000_000
        finally:
            done.set()

    writer = threading.Thread(target=long_write)
    writer.start()
    polls, slowest, oldest_ack = 0, 0.0, 0.0
    with Client([cluster.address(leader)], timeout=10) as c:
        while not done.is_set():
            started = time.monotonic()
            st = c.status()
            slowest = max(slowest, time.monotonic() - started)
            polls += 1
            assert (st["role"], st["term"]) == ("leader", term)
            # heartbeats and their answers go on on every node while they apply
            oldest_ack = max([oldest_ack] + [p["last_ack"] for p in st["progress"].values()])
            time.sleep(0.05)
    writer.join()
    assert polls >= 5, "the write was too quick to show anything"
    assert slowest < 1.0
    assert oldest_ack < 1.0
    wait_converged(cluster)
    for i in sorted(cluster.ports):
        with Client([cluster.address(i)]) as c:
            st = c.status()
            assert st["term"] == term
            assert st["counters"]["applies_moved"] >= 1
            assert c.query("SELECT count(*) FROM big", consistency="stale").rows == [(6_000_000,)]


def test_one_writer_is_answered_as_soon_as_a_majority_has_it_on_disk(
    make_cluster: MakeCluster,
) -> None:
    """The leader counts its own fsync the moment its disk worker finishes, so a
    follower's ack that arrives before the loop heard of it commits (and answers) the
    write at once (``commits_while_persisting``). One writer, one write at a time: every
    answer is right, in order, and every replica ends with the same database."""
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    with Client([cluster.address(leader)], timeout=10) as c:
        c.execute("CREATE TABLE seq (n INTEGER PRIMARY KEY, v TEXT)")
        before = c.status()["counters"]["commits_while_persisting"]
        for n in range(1, 301):
            r = c.execute("INSERT INTO seq (v) VALUES (?) RETURNING n", (f"v{n}",))
            assert (r.rows, r.lastrowid) == ([(n,)], n)
        st = c.status()
    assert st["id"] == leader
    assert st["counters"]["commits_while_persisting"] > before
    digests = wait_converged(cluster)
    assert len({d["sha256"] for d in digests.values()}) == 1
    for i in sorted(cluster.ports):
        with Client([cluster.address(i)]) as c:
            assert c.query("SELECT count(*), max(n) FROM seq").rows == [(300, 300)]


def test_a_slow_read_is_moved_off_the_loop_and_answered(make_cluster: MakeCluster) -> None:
    """Reads are tried on the event loop under a small budget; one that runs longer is
    interrupted there and answered by the read worker, with the full result."""
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
        "SELECT count(*), sum(x) FROM c"
    )
    with Client([cluster.address(leader)], timeout=60) as c:
        assert c.query("SELECT 1 + 1").rows == [(2,)]
        before = c.status()["counters"]["reads_moved"]
        assert c.query(slow).rows == [(2_000_000, 2_000_000 * 2_000_001 // 2)]
        assert c.status()["counters"]["reads_moved"] == before + 1


def test_the_whole_cluster_killed_at_once_restarts_with_its_terms_and_data(
    make_cluster: MakeCluster,
) -> None:
    """PySyncObj #201: after a full-cluster restart its term went back to 0 and committed
    data was overwritten. Every node is killed -9 at once; on restart no node's term is
    below the one it had, every acknowledged row is there once, and writes go on."""
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        for k in range(50):
            c.execute("INSERT INTO t VALUES (?)", (k,))
    terms = {i: s["term"] for i, s in cluster.statuses().items() if s is not None}
    assert len(terms) == 3
    for i in sorted(cluster.ports):
        cluster.kill(i)
    for i in sorted(cluster.ports):
        cluster.start_node(i)
    cluster.wait_for_leader()
    with cluster.client() as c:
        c.execute("INSERT INTO t VALUES (50)")
        assert c.query("SELECT count(*), sum(k) FROM t").rows == [(51, 1275)]
    wait_converged(cluster)
    for i, st in cluster.statuses().items():
        assert st is not None and st["term"] >= terms[i], (i, st["term"], terms[i])


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def test_a_snapshot_of_a_big_database_neither_stops_writes_nor_loads_it_in_memory(
    make_cluster: MakeCluster,
) -> None:
    """rqlite #543/#1664 (writes blocked while a snapshot is taken) and dqlite #281 (memory
    spikes while taking one): a ~64 MB database is snapshotted on the leader while a client
    keeps writing; writes are acknowledged during it, and the leader's peak RSS grows by
    far less than the database."""
    cluster = make_cluster(snapshot_every=10**9)  # only the snapshot this test asks for
    leader = cluster.wait_for_leader()
    fill = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000) "
        "INSERT INTO big (pad) SELECT randomblob(1000) FROM n"
    )
    with Client([cluster.address(leader)], timeout=60) as c:
        c.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, pad BLOB)")
        c.execute("CREATE TABLE w (k INTEGER)")
        for _ in range(4):
            c.execute(fill)
    pid = cluster.pids[leader]
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak RSS starts again from the current RSS
    before = _peak_rss_kib(pid)
    acked: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        with Client([cluster.address(leader)]) as w:
            k = 0
            while not stop.is_set():
                w.execute("INSERT INTO w VALUES (?)", (k,))
                acked.append(time.monotonic())
                k += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(acked) < 20:
            time.sleep(0.01)
        with Client([cluster.address(leader)], timeout=60) as c:
            started = time.monotonic()
            taken = c.snapshot()
            ended = time.monotonic()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert taken["size"] > 60_000_000
    during = [t for t in acked if started < t < ended]
    assert len(during) >= 10, f"{len(during)} writes during a {ended - started:.2f} s snapshot"
    grown_mib = (_peak_rss_kib(pid) - before) / 1024
    assert grown_mib < 16, f"peak RSS grew {grown_mib:.1f} MiB for a 64 MB snapshot"
