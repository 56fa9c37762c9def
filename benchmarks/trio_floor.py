"""The replication floor again, with trio event loops in the nodes.

``replication_floor``'s ``durable_client`` is the least any Python design pays for one
synchronous caller's durable write here: blocking sockets, nothing else. raftsql's nodes
are trio programs, and a node must keep heartbeats flowing while its disk flushes (etcd
#7312), so its fsyncs run in a worker thread. This measures the same three processes and
the same one caller, with only those two things added, and no work at all (no Raft, no
encoding, no SQL):

- ``trio_inline``: each node is a trio program (a task per socket, ``receive_some``,
  events); the fdatasync runs on the event loop, blocking it. The least any trio node
  pays, even one that gave up heartbeats during a flush;
- ``trio_worker``: as ``trio_inline``, with each fdatasync in a worker thread that lives as
  long as the node (``raftsql.server.worker.Worker``, raftsql's own, the cheapest hand-off
  we found): the follower's thread writes the ack itself once the record is on disk, the
  leader's thread reports back to the loop. The least a trio node that keeps its loop free
  during a flush pays, which is what raftsql's design requires.

Compared with the blocking floor in the same run, the difference is what the event loop
and the thread hand-off cost per write before a node does anything; ``paired_floor`` sets
these against PySyncObj's synchronous caller in alternating turns.

    python -m benchmarks.trio_floor [--quick] [--duration 2]
"""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trio

from benchmarks import common
from benchmarks.replication_floor import (
    ACK,
    HOST,
    QUICK_SECONDS,
    RECORD,
    children,
    drive_client,
    log_file,
    run_variants,
    start_child,
)
from raftsql.server.worker import Worker

VARIANTS = ("trio_inline", "trio_worker")


async def _receive_record(stream: trio.SocketStream) -> bytes:
    """One whole record, or ``b""`` when the peer closed the connection."""
    data = b""
    while len(data) < len(RECORD):
        chunk = await stream.receive_some(len(RECORD) - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


async def _accept_one(conn: Connection) -> trio.SocketStream:
    """Listen on loopback, tell the parent the port, take one connection."""
    (listener,) = await trio.open_tcp_listeners(0, host=HOST)
    conn.send(listener.socket.getsockname()[1])
    with trio.fail_after(10):
        stream = await listener.accept()
    await listener.aclose()
    return stream


class _Log:
    """A preallocated log file appended to and flushed, like the blocking floor's."""

    def __init__(self, path: Path) -> None:
        self.fd = log_file(path)
        self.offset = 0

    def append_and_sync(self, record: bytes) -> None:
        os.pwrite(self.fd, record, self.offset)
        self.offset += len(record)
        os.fdatasync(self.fd)


async def _follower(path: str, worker_thread: bool, conn: Connection) -> None:
    log = _Log(Path(path))
    stream = await _accept_one(conn)
    fd = stream.socket.fileno()

    def persist_and_ack(record: bytes) -> None:
        log.append_and_sync(record)
        os.write(fd, ACK)  # from the thread, as raftsql's followers do (send_from_thread)

    worker = Worker("floor-disk") if worker_thread else None
    try:
        while record := await _receive_record(stream):
            if worker is None:
                persist_and_ack(record)
            else:
                worker.submit(persist_and_ack, record)
    except (OSError, trio.BrokenResourceError):
        pass  # the leader went away
    finally:
        if worker is not None:
            with trio.CancelScope(shield=True):
                await worker.run(lambda: None)  # the jobs before it are done: fd unused
            worker.close()
        os.close(log.fd)


def follower_main(path: str, worker_thread: bool, conn: Connection) -> None:
    trio.run(_follower, path, worker_thread, conn)


class _Leader:
    """Replicates one record at a time: done when its own copy is on disk and one
    follower has acknowledged (a majority of three)."""

    def __init__(self, directory: Path, worker_thread: bool) -> None:
        self.log = _Log(directory / "leader.log")
        self.worker = Worker("floor-disk") if worker_thread else None
        self.owed = [0, 0]
        self.durable = False
        self.done = trio.Event()

    def _check(self) -> None:
        if self.durable and min(self.owed) == 0:
            self.done.set()

    def _persisted(self) -> None:
        self.durable = True
        self._check()

    async def read_acks(self, i: int, stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(4096):
            self.owed[i] -= len(data)
            self._check()
        raise ConnectionError("a follower closed its connection")

    async def replicate(self, record: bytes, followers: list[trio.SocketStream]) -> None:
        self.done = trio.Event()
        self.durable = False
        for i, stream in enumerate(followers):
            os.write(stream.socket.fileno(), record)
            self.owed[i] += 1
        if self.worker is None:
            self.log.append_and_sync(record)
            self._persisted()
        else:
            self.worker.submit(self.log.append_and_sync, record, then=self._persisted)
        await self.done.wait()


async def _leader(directory: str, worker_thread: bool, ports: list[int], conn: Connection) -> None:
    leader = _Leader(Path(directory), worker_thread)
    followers = [await trio.open_tcp_stream(HOST, port) for port in ports]
    client = await _accept_one(conn)
    try:
        async with trio.open_nursery() as nursery:
            for i, stream in enumerate(followers):
                nursery.start_soon(leader.read_acks, i, stream)
            while record := await _receive_record(client):
                await leader.replicate(record, followers)
                os.write(client.socket.fileno(), ACK)
            nursery.cancel_scope.cancel()
    except (OSError, trio.BrokenResourceError, ConnectionError):
        pass
    finally:
        if leader.worker is not None:
            leader.worker.close()
        for stream in followers:
            await stream.aclose()
        os.close(leader.log.fd)


def leader_main(directory: str, worker_thread: bool, ports: list[int], conn: Connection) -> None:
    trio.run(_leader, directory, worker_thread, ports, conn)


def measure(directory: Path, variant: str, seconds: float) -> dict[str, Any]:
    """Start two followers and the leader (trio programs), drive one synchronous caller
    from this process for ``seconds``, stop every process."""
    worker_thread = variant == "trio_worker"
    with children() as processes:
        ports = [
            start_child(processes, follower_main, str(directory / f"f{i}.log"), worker_thread)
            for i in range(2)
        ]
        port = start_child(processes, leader_main, str(directory), worker_thread, ports)
        ops, elapsed, latencies = drive_client(port, seconds)
    point = common.point("floor", variant, 1, ops, elapsed, latencies, fsync=True)
    common.progress(common.describe(point))
    return point


def run(quick: bool = False, duration: float | None = None) -> list[dict[str, Any]]:
    return run_variants(measure, VARIANTS, quick, duration)


def main() -> None:
    common.run_timed_main(__doc__, run, "variant", QUICK_SECONDS)


if __name__ == "__main__":
    main()
