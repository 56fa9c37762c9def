"""A leader whose disk stalls keeps its leadership (LESSONS: etcd #7312, #7617).

The nodes run with a small LD_PRELOAD library that makes ``fsync``/``fdatasync`` sleep
first, for as many milliseconds as a control file named after the process id says: a real
node on a real (if slow) disk, nothing mocked inside the server. With every fsync of the
leader taking longer than an election timeout, writes slow down, but the leader's
heartbeats must keep flowing, so nobody starts an election and no write is lost.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raftsql.client import Client
from raftsql.cluster import LocalCluster

MakeCluster = Callable[..., LocalCluster]

pytestmark = pytest.mark.timeout(120)

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* milliseconds to stall, from $SLOW_SYNC_DIR/<pid> (0 if there is no such file) */
static int stall_ms(void) {
    const char *dir = getenv("SLOW_SYNC_DIR");
    char path[4096];
    int ms = 0;
    if (dir == NULL) return 0;
    snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    if (fscanf(f, "%d", &ms) != 1) ms = 0;
    fclose(f);
    return ms;
}

/* the stall, then libc's own `name` */
static int stalled(const char *name, int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    int ms = stall_ms();
    if (ms > 0) usleep((useconds_t)ms * 1000);
    return real(fd);
}

int fdatasync(int fd) { return stalled("fdatasync", fd); }

int fsync(int fd) { return stalled("fsync", fd); }
"""

STALL_MS = 900
"""Longer than the longest election timeout (700 ms with the default timing)."""


def build_shim(where: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the slow-disk library"
    source, lib = where / "slow_sync.c", where / "slow_sync.so"
    source.write_text(SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(source), "-ldl"], check=True)
    return lib


@pytest.mark.parametrize("stalled", ["leader", "followers"])
def test_a_leader_with_a_stalling_disk_keeps_leading(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stalled: str
) -> None:
    """The leader's disk stalls: its heartbeats must still go out. The followers' disks
    stall: their answers to heartbeats must still come back, or the leader, hearing from
    no quorum for an election timeout, steps down (CheckQuorum)."""
    control = tmp_path / "stalls"
    control.mkdir()
    monkeypatch.setenv("LD_PRELOAD", str(build_shim(tmp_path)))
    monkeypatch.setenv("SLOW_SYNC_DIR", str(control))
    cluster = make_cluster()
    monkeypatch.delenv("LD_PRELOAD")  # the nodes have it; this process and its tools not
    leader = cluster.wait_for_leader()
    with Client([cluster.address(leader)]) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        term = c.status()["term"]
    # every node has heard this leader before the disks stall (a node that came up last
    # may still be waiting for the leader's link to reconnect to it)
    deadline = time.monotonic() + 15
    while any(
        st is None or (st["term"], st["leader"]) != (term, leader)
        for st in cluster.statuses().values()
    ):
        assert time.monotonic() < deadline, cluster.statuses()
        time.sleep(0.05)

    # from now on every fsync of the stalled processes takes STALL_MS
    slow = [leader] if stalled == "leader" else [i for i in cluster.ports if i != leader]
    for node in slow:
        (control / str(cluster.pids[node])).write_text(str(STALL_MS))
    written: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with Client([cluster.address(leader)], timeout=30) as c:
            n = 0
            while not stop.is_set():
                n += 1
                c.execute("INSERT INTO t (id, v) VALUES (?, 'x')", (n,))
                written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4 * STALL_MS / 1000:
            for node in sorted(cluster.ports):
                with Client([cluster.address(node)], timeout=5) as c:
                    st = c.status()
                # the followers keep hearing the leader: no election, no new term
                assert (st["term"], st["leader"]) == (term, leader), (node, st)
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    for node in slow:
        (control / str(cluster.pids[node])).unlink()
    assert not thread.is_alive()
    assert written, "no write was acknowledged while the leader's disk stalled"

    # every acknowledged write is there, once, on every node
    for node in sorted(cluster.ports):
        with Client([cluster.address(node)]) as c:
            rows = c.execute("SELECT id FROM t ORDER BY id", consistency="linearizable").rows
        assert [r[0] for r in rows] == written, node
