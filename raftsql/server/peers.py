"""Outbound links to the other nodes: one per peer, reconnecting with backoff.

Messages go out the moment the node hands them over: they are encoded and written
straight to the (non-blocking) socket from the event loop, all of one Ready's messages
for a peer in one write. Measured on one writer, handing them to a sender task instead
cost 0.3-0.4 ms per hop, the time for that task to get the GIL back from a worker
thread. The sender task only takes over what the kernel did not accept at once, and
snapshot chunks.

Raft tolerates lost messages, so a link never queues without bound: while a peer is
unreachable, messages for it are dropped (the leader retransmits from its progress state),
and the queue is bounded. Snapshot chunks leave the core without their bytes; the link
reads each chunk from the snapshot file just before sending it, in a worker thread, so
neither the protocol nor the event loop ever holds a snapshot in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress

import trio

from raftsql.net import codec
from raftsql.net.framing import encode_frame
from raftsql.raft.messages import InstallSnapshot, Message

log = logging.getLogger("raftsql.peers")

_QUEUE = 4096
_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
_BATCH = 512

_Item = Message | bytes
"""What the sender task sends: a message, or the unsent rest of a direct write."""


class PeerLink:
    def __init__(
        self,
        self_id: int,
        peer_id: int,
        address: tuple[str, int],
        read_chunk: Callable[[InstallSnapshot], bytes],
        max_frame: int,
    ) -> None:
        self.self_id = self_id
        self.peer_id = peer_id
        self.address = address
        self._read_chunk = read_chunk
        self._max_frame = max_frame
        self._send, self._recv = trio.open_memory_channel[_Item](_QUEUE)
        self._queued = 0
        """Items in the channel or being sent by the task: while any, a direct write would
        overtake them, so new messages queue behind."""
        self._fd: int | None = None
        self.connected = False
        self.dropped = 0
        self._write_lock = threading.Lock()
        """Held for every write to the socket but the sender task's, and for queueing
        (which is what starts the sender task): the disk worker writes too."""

    def send(self, m: Message) -> None:
        self.send_batch((m,))

    def send_batch(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` in order: written now if the link is idle, else queued."""
        if self._fd is not None and not self._queued:
            direct = []
            for m in messages:
                if isinstance(m, InstallSnapshot) and m.length and not m.data:
                    break  # its bytes come from the snapshot file, in the sender task
                direct.append(m)
            if direct:
                self._write_now(direct)
                messages = messages[len(direct) :]
        for m in messages:
            self._enqueue(m)

    def _write_now(self, messages: Sequence[Message]) -> None:
        data = b"".join(encode_frame(codec.to_wire(m), self._max_frame) for m in messages)
        with self._write_lock:
            fd = self._fd
            if fd is None:
                self.dropped += len(messages)
                return
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.dropped += len(messages)  # the peer is gone; the watcher reconnects
                return
            if sent < len(data):
                self._enqueue_locked(data[sent:])

    def send_from_thread(self, messages: Sequence[Message], timeout: float = 1.0) -> bool:
        """From the disk worker: write ``messages`` now, without waking the event loop
        (a follower's acknowledgement leaves the moment its entries are on disk, not one
        thread hand-off later). False, with nothing sent, if the link is not idle (not
        connected, or older messages still queued): then the loop sends them.

        A write the kernel takes only in part is finished here, waiting for the socket
        (the lock keeps every other writer out meanwhile); a peer that takes nothing for
        ``timeout`` seconds has its connection shut down, and the link reconnects.
        """
        data = b"".join(encode_frame(codec.to_wire(m), self._max_frame) for m in messages)
        with self._write_lock:
            fd = self._fd
            if fd is None or self._queued:
                return False
            view = memoryview(data)
            try:
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:
                        if not select.select([], [fd], [], timeout)[1]:
                            raise TimeoutError("peer not reading") from None
            except (OSError, TimeoutError):
                # the stream may now end inside a frame: end the connection (the link
                # reconnects; Raft resends what was lost)
                self.dropped += len(messages)
                with suppress(OSError):
                    sock = socket.socket(fileno=fd)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.detach()  # the stream still owns the descriptor
        return True

    def _enqueue(self, item: _Item) -> None:
        with self._write_lock:
            self._enqueue_locked(item)

    def _enqueue_locked(self, item: _Item) -> None:
        try:
            self._send.send_nowait(item)
            self._queued += 1
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self) -> None:
        backoff = 0.02
        while True:
            try:
                stream = await trio.open_tcp_stream(*self.address)
            except OSError:
                self._drain()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            backoff = 0.02
            try:
                async with stream:
                    try:
                        hello = {"hello": "peer", "id": self.self_id}
                        await stream.send_all(encode_frame(hello, self._max_frame))
                        self.connected = True
                        self._fd = stream.socket.fileno()
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._watch, stream, nursery.cancel_scope)
                            await self._pump_until_broken(stream)
                            nursery.cancel_scope.cancel()
                    finally:
                        # Forget the descriptor before the stream closes it: once closed,
                        # its number can be reused by any file this process opens (the
                        # log, SQLite), and the disk worker writes to it without the loop.
                        self.connected = False
                        with self._write_lock:
                            self._fd = None
            except _LINK_ERRORS as exc:
                log.debug("link %d->%d lost: %s", self.self_id, self.peer_id, exc)
            self._drain()

    @staticmethod
    async def _watch(stream: trio.SocketStream, link: trio.CancelScope) -> None:
        """Notice at once when the peer closes the connection (it died or restarted).

        The peer never writes on this connection, so anything that ends the read (EOF,
        a reset) means it is gone. Without this, a link learns it only from a failed send,
        and the one or two messages written into the dead socket first are lost; during
        an election those are votes, and each lost one costs a whole election timeout.
        """
        with suppress(*_LINK_ERRORS):
            while await stream.receive_some(4096):
                pass
        link.cancel()

    async def _pump_until_broken(self, stream: trio.SocketStream) -> None:
        try:
            await self._pump(stream)
        except _LINK_ERRORS as exc:
            log.debug("link %d->%d lost: %s", self.self_id, self.peer_id, exc)

    async def _pump(self, stream: trio.SocketStream) -> None:
        while True:
            batch = [await self._recv.receive()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self._send_items(stream, batch)
            finally:
                self._queued -= len(batch)

    async def _send_items(self, stream: trio.SocketStream, batch: list[_Item]) -> None:
        """Small frames go out together in one write; a snapshot chunk is read from its
        file, encoded and sent on its own, after the frames before it. Why alone: a
        batch can hold the whole in-flight window of chunks (8 MiB by default), and
        reading, encoding and joining them at once made a leader sending a 64 MB
        snapshot peak at ~17 MiB more RSS; one at a time it is about one chunk."""
        frames: list[bytes] = []
        for item in batch:
            if isinstance(item, bytes):
                frames.append(item)
                continue
            m = item
            if isinstance(m, InstallSnapshot) and m.length and not m.data:
                if frames:
                    await stream.send_all(b"".join(frames))
                    frames = []
                try:
                    data = await trio.to_thread.run_sync(self._read_chunk, m)
                except Exception as exc:  # a snapshot replaced meanwhile: leader resends
                    log.info("snapshot chunk for %d not sent: %s", self.peer_id, exc)
                    continue
                frame = encode_frame(
                    codec.to_wire(dataclasses.replace(m, data=data)), self._max_frame
                )
                del data
                await stream.send_all(frame)
                continue
            frames.append(encode_frame(codec.to_wire(m), self._max_frame))
        if frames:
            await stream.send_all(b"".join(frames))

    def _drain(self) -> None:
        """Forget what was queued for a peer we cannot reach: it would be stale anyway."""
        while True:
            try:
                self._recv.receive_nowait()
                self._queued -= 1
                self.dropped += 1
            except trio.WouldBlock:
                return
