"""PeerLink notices a dead connection by itself (LESSONS: lost votes after a restart).

A real loopback listener plays the peer: it takes the link's connection, reads the hello
and closes. The link must reconnect without anything being sent through it: before the
fix it only learned of the close from a failed send, and the first message written into
the dead socket (during an election, a vote) was lost.
"""

from __future__ import annotations

from functools import partial

import trio

from raftsql.net.framing import FrameReader
from raftsql.raft.messages import Heartbeat
from raftsql.server.peers import PeerLink


def _no_chunks(_: object) -> bytes:
    raise AssertionError("no snapshot chunks in this test")


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
        listeners = await nursery.start(partial(trio.serve_tcp, peer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        link = PeerLink(1, 2, ("127.0.0.1", port), _no_chunks, 1 << 20)
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
