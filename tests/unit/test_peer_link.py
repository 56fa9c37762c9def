"""PeerLink notices a dead connection by itself (LESSONS: lost votes after a restart).

A real loopback listener plays the peer: it takes the link's connection, reads the hello
and closes. The link must reconnect without anything being sent through it: before the
fix it only learned of the close from a failed send, and the first message written into
the dead socket (during an election, a vote) was lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from raftsql.net.framing import FrameReader
from raftsql.raft.messages import Heartbeat
from raftsql.server.peers import PeerLink


def _no_chunks(_: object) -> bytes:
    raise AssertionError("no snapshot chunks in this test")


async def _peer_and_link(
    nursery: trio.Nursery, peer: Callable[[trio.SocketStream], Awaitable[None]], max_frame: int
) -> PeerLink:
    """A loopback listener serving ``peer``, and a link from node 1 to it (not started)."""
    listeners = await nursery.start(partial(trio.serve_tcp, peer, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return PeerLink(1, 2, ("127.0.0.1", port), _no_chunks, max_frame)


async def test_link_reconnects_when_the_peer_closes_without_any_send() -> None:
    hellos: list[object] = []
    first_closed = trio.Event()
    second = trio.Event()
    received: list[object] = []

    async def peer(stream: trio.SocketStream) -> None:
        reader = FrameReader(stream, 1 << 20)
        hellos.append(await reader.receive())
        if len(hellos) == 1:
            await stream.aclose()  # the peer "restarts": its end of the link is gone
            first_closed.set()
            return
        second.set()
        received.append(await reader.receive())

    async with trio.open_nursery() as nursery:
        link = await _peer_and_link(nursery, peer, 1 << 20)
        nursery.start_soon(link.run)
        with trio.fail_after(5):
            await first_closed.wait()
            await second.wait()  # reconnected with nothing sent: the close was noticed
        assert hellos == [{"hello": "peer", "id": 1}, {"hello": "peer", "id": 1}]
        link.send(Heartbeat(1, 2, 3, commit=0, round=0))
        with trio.fail_after(5):
            while not received:
                await trio.sleep(0.01)
        assert received[0]  # the first message after the restart arrives
        nursery.cancel_scope.cancel()


async def test_writes_from_the_disk_worker_and_the_loop_never_tear_a_frame() -> None:
    """The disk worker writes acknowledgements straight to the socket while the loop
    writes to the same link: with big messages (partial writes, a full socket buffer)
    every frame must still arrive whole, and each writer's messages in its order."""
    from raftsql.net import codec
    from raftsql.raft.messages import AppendEntries, Entry

    per_writer = 40
    received: list[object] = []
    got_all = trio.Event()

    async def peer(stream: trio.SocketStream) -> None:
        reader = FrameReader(stream, 64 << 20)
        await reader.receive()  # hello
        while len(received) < 2 * per_writer:
            await trio.sleep(0.002)  # a slow reader: the socket buffer fills up
            received.append(codec.from_wire(await reader.receive()))
        got_all.set()

    def big(k: int, sender: int) -> AppendEntries:
        entry = Entry(term=1, index=k + 1, data=bytes([k % 251]) * 1_000_000)
        return AppendEntries(1, 2, sender, prev_index=k, entries=(entry,))

    async with trio.open_nursery() as nursery:
        link = await _peer_and_link(nursery, peer, 64 << 20)
        assert not link.send_from_thread([big(0, 2)]), "not connected yet: the loop sends"
        nursery.start_soon(link.run)
        with trio.fail_after(5):
            while not link.connected:
                await trio.sleep(0.01)

        def from_thread() -> int:
            fallbacks = 0
            for k in range(per_writer):
                while not link.send_from_thread([big(k, 2)]):
                    fallbacks += 1  # the loop's queue was busy: try again
                    trio.from_thread.run(trio.sleep, 0.001)
            return fallbacks

        async def from_loop() -> None:
            for k in range(per_writer):
                link.send(big(k, 3))
                await trio.sleep(0)

        nursery.start_soon(from_loop)
        await trio.to_thread.run_sync(from_thread)
        with trio.fail_after(20):
            await got_all.wait()
        nursery.cancel_scope.cancel()
    by_sender: dict[int, list[int]] = {2: [], 3: []}
    for m in received:
        assert isinstance(m, AppendEntries)
        (entry,) = m.entries
        assert entry.data == bytes([m.prev_index % 251]) * 1_000_000
        by_sender[m.term].append(m.prev_index)
    assert by_sender == {2: list(range(per_writer)), 3: list(range(per_writer))}
    assert link.dropped == 0  # the one tried before the link was up was left to the loop


async def test_the_link_forgets_its_descriptor_before_the_socket_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a socket is closed its descriptor number can be handed to any file this
    process opens next (the log, SQLite); the disk worker writes acks to ``_fd`` without
    the loop, so the link must drop it before the close, never after."""
    seen_at_close: list[int | None] = []
    real_open = trio.open_tcp_stream

    async def open_recording(*args: object, **kwargs: object) -> trio.SocketStream:
        stream = await real_open(*args, **kwargs)  # type: ignore[arg-type]
        real_aclose = stream.aclose

        async def aclose() -> None:
            seen_at_close.append(link._fd)
            await real_aclose()

        stream.aclose = aclose  # type: ignore[method-assign]
        return stream

    monkeypatch.setattr(trio, "open_tcp_stream", open_recording)

    async def peer(stream: trio.SocketStream) -> None:
        await FrameReader(stream, 1 << 20).receive()  # the hello, then hang up
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        link = await _peer_and_link(nursery, peer, 1 << 20)
        nursery.start_soon(link.run)
        with trio.fail_after(5):
            while not seen_at_close:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert seen_at_close[0] is None
