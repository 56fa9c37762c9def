"""The floor under one synchronous replicated write on this machine, in Python.

How fast could *any* Python system get one caller's writes onto a majority of three disks
here? This measures the least such a system must do, and nothing else: three processes on
loopback TCP, blocking sockets, no event loop, no threads, no serialization, no SQL. The
leader sends each 240-byte record to both followers, appends it to its own preallocated
log file and ``fdatasync``s it, and counts the write done when one follower has answered
that it did the same (itself plus one follower: a majority of three on disk). The next
write starts at once.

- ``durable_in_leader``: the caller is a loop inside the leader's process, the way
  PySyncObj's caller lives inside its node (``peers_pysyncobj``'s ``set_sync_single``);
- ``durable_client``: the caller is a process of its own, one loopback round trip away,
  the way raftsql's clients (and etcd's) are;
- ``memory_in_leader``: as ``durable_in_leader`` without any ``fdatasync``, the floor of a
  design that never syncs, which is how PySyncObj ships;
- ``followers_client``: as ``durable_client``, but the majority is the two followers: the
  leader writes its own copy without syncing it and waits for both acks (Raft allows it:
  a leader counts itself only once its copy is durable, and a commit needs a majority,
  not the leader). Two fsyncs a write on the shared disk instead of three, for waiting on
  the slower follower.

Why it is here: the targets compare raftsql's single caller with PySyncObj's, which
never syncs. This says how much of that gap the machine imposes (fsync, hops, processes
sharing two cores) and how much is raftsql's own cost per write (an event loop, worker
threads, SQLite): a target below the durable floor could not be met by any design.

    python -m benchmarks.replication_floor [--quick] [--duration 2]

(``benchmarks.limits`` runs it too and saves its points with the other limits.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import common

HOST = "127.0.0.1"
QUICK_SECONDS = 0.3
"""Seconds per measurement in ``--quick`` mode (2 otherwise, or ``--duration``)."""
RECORD = b"r" * 240
"""About the size of one raftsql AppendEntries frame carrying one single-row INSERT."""
PREALLOCATE = 64 << 20
"""Log files are written with zeros first, as raftsql's are, so an ``fdatasync`` after an
append flushes data only (no size or block allocation to journal)."""
ACK = b"a"
STOP = b""

VARIANTS = ("durable_in_leader", "durable_client", "memory_in_leader", "followers_client")


def log_file(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, b"\0" * PREALLOCATE, 0)
    os.fsync(fd)
    return fd


def _listen() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(1)
    return listener


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _accept(listener: socket.socket) -> socket.socket:
    listener.settimeout(10)
    sock, _ = listener.accept()
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.close()
    return sock


def _receive_record(sock: socket.socket) -> bytes:
    """One whole record, or ``STOP`` when the peer closed the connection."""
    data = b""
    while len(data) < len(RECORD):
        chunk = sock.recv(len(RECORD) - len(data))
        if not chunk:
            return STOP
        data += chunk
    return data


def follower_main(path: str, sync: bool, conn: Connection) -> None:
    """Append and (if ``sync``) fdatasync every record the leader sends, then answer."""
    fd = log_file(Path(path))
    listener = _listen()
    conn.send(listener.getsockname()[1])
    sock = _accept(listener)
    offset = 0
    try:
        while (record := _receive_record(sock)) != STOP:
            os.pwrite(fd, record, offset)
            offset += len(record)
            if sync:
                os.fdatasync(fd)
            sock.sendall(ACK)
    except OSError:
        pass  # the leader went away
    finally:
        sock.close()
        os.close(fd)


class Leader:
    """The leader's half: replicate one record and return once a majority has it."""

    def __init__(
        self, directory: Path, sync: bool, follower_ports: list[int], acks: int = 1
    ) -> None:
        self.sync = sync
        self.acks = acks
        """Follower acks that make a majority: one with the leader's synced copy, or both."""
        self.fd = log_file(directory / "leader.log")
        self.offset = 0
        self.followers = [connect(port) for port in follower_ports]
        self.owed = [0] * len(self.followers)

    def replicate(self, record: bytes) -> None:
        for sock in self.followers:
            sock.sendall(record)
        self.owed = [owed + 1 for owed in self.owed]
        os.pwrite(self.fd, record, self.offset)
        self.offset += len(record)
        if self.sync:
            os.fdatasync(self.fd)
        # a majority of three on disk: the leader's synced copy and one follower's
        # (acks=1), or both followers' (acks=2, the leader's copy unsynced)
        while sum(owed == 0 for owed in self.owed) < self.acks:
            readable, _, _ = select.select(self.followers, [], [])
            for sock in readable:
                i = self.followers.index(sock)
                got = len(sock.recv(4096))
                if got == 0:
                    raise ConnectionError("a follower closed its connection")
                self.owed[i] -= got

    def close(self) -> None:
        for sock in self.followers:
            sock.close()
        os.close(self.fd)


def timed(replicate_one: Any, seconds: float) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    first = time.perf_counter()
    end = first + seconds
    while (start := time.perf_counter()) < end:
        replicate_one()
        latencies.append(time.perf_counter() - start)
    return len(latencies), time.perf_counter() - first, latencies


def leader_main(directory: str, sync: bool, ports: list[int], acks: int, conn: Connection) -> None:
    """The leader with a client one hop away: serve its records until it closes."""
    leader = Leader(Path(directory), sync, ports, acks)
    listener = _listen()
    conn.send(listener.getsockname()[1])
    client = _accept(listener)
    try:
        while (record := _receive_record(client)) != STOP:
            leader.replicate(record)
            client.sendall(ACK)
    except OSError:
        pass
    finally:
        client.close()
        leader.close()


def start_child(
    processes: list[multiprocessing.process.BaseProcess], target: Any, *args: Any
) -> int:
    """Start ``target(*args, conn)`` in a spawned process that listens on loopback and
    sends its port down ``conn``; add it to ``processes``; return the port."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=target, args=(*args, theirs))
    p.start()
    processes.append(p)
    return await_port(ours, p)


@contextlib.contextmanager
def children() -> Iterator[list[multiprocessing.process.BaseProcess]]:
    """The processes started inside: waited for at the end (they exit once their peer
    closes), killed if they did not."""
    processes: list[multiprocessing.process.BaseProcess] = []
    try:
        yield processes
        for p in processes:
            p.join(timeout=10)
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
                p.join()


def drive_client(port: int, seconds: float) -> tuple[int, float, list[float]]:
    """One synchronous caller in this process, one hop from the leader at ``port``."""
    sock = connect(port)
    try:

        def one() -> None:
            sock.sendall(RECORD)
            if not sock.recv(1):
                raise ConnectionError("the leader closed the connection")

        return timed(one, seconds)
    finally:
        sock.close()


def measure(directory: Path, variant: str, seconds: float) -> dict[str, Any]:
    """One variant: start the followers (and the leader, for a separate caller), drive one
    synchronous caller for ``seconds``, stop every process."""
    sync = variant != "memory_in_leader"
    with children() as processes:
        ports = [
            start_child(processes, follower_main, str(directory / f"f{i}.log"), sync)
            for i in range(2)
        ]
        if variant in ("durable_client", "followers_client"):
            both = variant == "followers_client"
            port = start_child(
                processes, leader_main, str(directory), not both, ports, 2 if both else 1
            )
            ops, elapsed, latencies = drive_client(port, seconds)
        else:
            leader = Leader(directory, sync, ports)
            try:
                ops, elapsed, latencies = timed(lambda: leader.replicate(RECORD), seconds)
            finally:
                leader.close()
    point = common.point("floor", variant, 1, ops, elapsed, latencies, fsync=sync)
    common.progress(common.describe(point))
    return point


def await_port(conn: Connection, process: multiprocessing.process.BaseProcess) -> int:
    """The port a child listens on, as soon as it says; a clear error if it dies first."""
    deadline = time.monotonic() + 30
    while not conn.poll(0.05):
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited (code {process.exitcode}) before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not start listening within 30 s")
    port: int = conn.recv()
    return port


def run_variants(
    measure_one: Callable[[Path, str, float], dict[str, Any]],
    variants: Sequence[str],
    quick: bool,
    duration: float | None,
) -> list[dict[str, Any]]:
    """Every variant, in a fresh directory under the temp dir (where the clusters write)."""
    seconds = duration or (QUICK_SECONDS if quick else 2.0)
    directory = Path(tempfile.mkdtemp(prefix="raftsql-floor-", dir=tempfile.gettempdir()))
    try:
        return [measure_one(directory, variant, seconds) for variant in variants]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(quick: bool = False, duration: float | None = None) -> list[dict[str, Any]]:
    return run_variants(measure, VARIANTS, quick, duration)


def main() -> None:
    common.run_timed_main(__doc__, run, "variant", QUICK_SECONDS)


if __name__ == "__main__":
    main()
