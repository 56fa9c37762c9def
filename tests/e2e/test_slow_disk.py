"""A leader whose disk stalls keeps its leadership (LESSONS: etcd #7312, #7617).

The nodes run with a small LD_PRELOAD library that makes ``fsync``/``fdatasync`` sleep
first, for as many milliseconds as a control file named after the process id says: a real
node on a real (if slow) disk, nothing mocked inside the server. With every fsync of the
leader taking longer than an election timeout, writes slow down, but the leader's
heartbeats must keep flowing, so nobody starts an election and no write is lost.

The log's tail is flushed through Linux AIO (``storage/aio.py``), which no libc wrapper
sees: for a stalled process the library also takes over ``io_submit``/``io_getevents``
(called through libc's ``syscall``), completing each flush from a thread of its own after
the stall, as a slow disk completes it late. A negative stall makes ``io_submit`` fail
instead (EINVAL, as on a file system without AIO fsync): the node must go on with its
disk worker. Each test runs with AIO and with the worker alone (``RAFTSQL_AIO_FLUSH=0``).
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
#include <errno.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int ms = stall_ms();
    if (ms > 0) usleep((useconds_t)ms * 1000);
    return real(fd);
}

/* AIO flushes of a stalled process: done by a thread after the stall, their completion
   queued here for io_getevents and signalled on the request's eventfd */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_event done[256];
static int ndone;

struct flush { struct iocb *cb; int ms; };

static void *flush_later(void *arg) {
    struct flush *f = arg;
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    usleep((useconds_t)f->ms * 1000);
    int rc = real((int)f->cb->aio_fildes);
    pthread_mutex_lock(&done_lock);
    if (ndone < 256) {
        done[ndone].data = f->cb->aio_data;
        done[ndone].obj = (uint64_t)(uintptr_t)f->cb;
        done[ndone].res = rc == 0 ? 0 : -errno;
        done[ndone].res2 = 0;
        ndone++;
    }
    pthread_mutex_unlock(&done_lock);
    uint64_t one = 1;
    if (write((int)f->cb->aio_resfd, &one, sizeof one) != sizeof one) abort();
    free(f);
    return NULL;
}

long syscall(long n, ...) {
    static long (*real)(long, ...);
    if (real == NULL) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    va_list ap;
    long a[6];
    va_start(ap, n);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_io_submit) {
        int ms = stall_ms();
        if (ms < 0) { errno = EINVAL; return -1; }
        if (ms > 0) {
            struct iocb **cbs = (struct iocb **)a[2];
            for (long i = 0; i < a[1]; i++) {
                struct flush *f = malloc(sizeof *f);
                pthread_t t;
                f->cb = cbs[i];
                f->ms = ms;
                if (pthread_create(&t, NULL, flush_later, f) != 0) abort();
                pthread_detach(t);
            }
            return a[1];
        }
    }
    if (n == SYS_io_getevents) {
        pthread_mutex_lock(&done_lock);
        if (ndone > 0) {
            long k = ndone < a[2] ? ndone : a[2];
            memcpy((void *)a[3], done, (size_t)k * sizeof done[0]);
            memmove(done, done + k, (size_t)(ndone - k) * sizeof done[0]);
            ndone -= (int)k;
            pthread_mutex_unlock(&done_lock);
            return k;
        }
        pthread_mutex_unlock(&done_lock);
    }
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int ms = stall_ms();
    if (ms > 0) usleep((useconds_t)ms * 1000);
    return real(fd);
}
"""

STALL_MS = 900
"""Longer than the longest election timeout (700 ms with the default timing)."""


def build_shim(where: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the slow-disk library"
    source, lib = where / "slow_sync.c", where / "slow_sync.so"
    source.write_text(SHIM)
    argv = [cc, "-shared", "-fPIC", "-o", str(lib), str(source), "-ldl", "-lpthread"]
    subprocess.run(argv, check=True)
    return lib


def start_cluster(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aio: bool
) -> tuple[LocalCluster, Path]:
    """A cluster whose nodes run with the library; returns it and the control directory."""
    control = tmp_path / "stalls"
    control.mkdir()
    monkeypatch.setenv("LD_PRELOAD", str(build_shim(tmp_path)))
    monkeypatch.setenv("SLOW_SYNC_DIR", str(control))
    monkeypatch.setenv("RAFTSQL_AIO_FLUSH", "1" if aio else "0")
    cluster = make_cluster()
    monkeypatch.delenv("LD_PRELOAD")  # the nodes have it; this process and its tools not
    return cluster, control


def aio_flushes(cluster: LocalCluster, node: int) -> int:
    with Client([cluster.address(node)], timeout=5) as c:
        return int(c.status()["counters"]["log_flushes_aio"])


class Writer(threading.Thread):
    """Writes rows 1, 2, 3... to the leader, one at a time, until stopped."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.written: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with Client([self.address], timeout=30) as c:
            n = 0
            while not self.stopping.is_set():
                n += 1
                c.execute("INSERT INTO t (id, v) VALUES (?, 'x')", (n,))
                self.written.append(n)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive()


def check_every_node_has(cluster: LocalCluster, written: list[int]) -> None:
    """Every acknowledged write is there, once, on every node."""
    for node in sorted(cluster.ports):
        with Client([cluster.address(node)]) as c:
            rows = c.execute("SELECT id FROM t ORDER BY id", consistency="linearizable").rows
        assert [r[0] for r in rows] == written, node


@pytest.mark.parametrize("aio", [True, False], ids=["aio", "worker"])
def test_a_leader_with_a_stalling_disk_keeps_leading(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aio: bool
) -> None:
    cluster, control = start_cluster(make_cluster, tmp_path, monkeypatch, aio)
    leader = cluster.wait_for_leader()
    with Client([cluster.address(leader)]) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        term = c.status()["term"]
    flushes_before = aio_flushes(cluster, leader)

    # from now on every fsync of the leader's process stalls for STALL_MS
    (control / str(cluster.pids[leader])).write_text(str(STALL_MS))
    writer = Writer(cluster.address(leader))
    writer.start()
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
        writer.stop()
    (control / str(cluster.pids[leader])).unlink()
    assert writer.written, "no write was acknowledged while the leader's disk stalled"
    stalled_flushes = aio_flushes(cluster, leader) - flushes_before
    if aio:
        # the stalled flushes were AIO ones (each took STALL_MS: a handful, not hundreds)
        assert 1 <= stalled_flushes <= 4 * STALL_MS // STALL_MS + 2, stalled_flushes
    else:
        assert stalled_flushes == 0
    check_every_node_has(cluster, writer.written)


def test_a_node_whose_aio_is_refused_flushes_with_its_disk_worker(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """io_submit failing (a file system without AIO fsync) costs no write: the entries
    already written are flushed by the disk worker, and so is everything after."""
    cluster, control = start_cluster(make_cluster, tmp_path, monkeypatch, aio=True)
    leader = cluster.wait_for_leader()
    with Client([cluster.address(leader)]) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    assert all(aio_flushes(cluster, node) > 0 for node in cluster.ports)
    for pid in cluster.pids.values():
        (control / str(pid)).write_text("-1")
    writer = Writer(cluster.address(leader))
    writer.start()
    time.sleep(1.0)
    before = {node: aio_flushes(cluster, node) for node in cluster.ports}
    time.sleep(0.5)
    writer.stop()
    assert len(writer.written) > 20, writer.written
    # no AIO flush since the refusal: the worker flushed the rest
    assert {node: aio_flushes(cluster, node) for node in cluster.ports} == before
    check_every_node_has(cluster, writer.written)
