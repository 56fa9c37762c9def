"""Forwarding a client's write from a follower to the leader.

A client connected only to a follower still gets its writes done: the follower relays the
request (same session and seq, so a retry stays exactly-once) over one multiplexed client
connection to the leader and relays the answer back. A forwarded request is marked so that
it is never forwarded a second time: if leadership moved meanwhile, the client gets
``NotLeaderError`` and retries against the new leader.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio

from raftsql import errors
from raftsql.net.errors import ProtocolError
from raftsql.net.framing import FrameReader, encode_frame
from raftsql.server.config import parse_address


class _Link:
    def __init__(self, address: str, stream: trio.SocketStream, max_frame: int) -> None:
        self.address = address
        self.stream = stream
        self.reader = FrameReader(stream, max_frame)
        self.send_lock = trio.Lock()
        self.waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self.broken = False

    async def read_replies(self) -> None:
        try:
            while True:
                reply = await self.reader.receive()
                slot = self.waiting.pop(reply.get("id"), None) if isinstance(reply, dict) else None
                if slot is not None:
                    slot[1].append(reply)
                    slot[0].set()
        except (EOFError, ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.broken = True
            for event, _ in self.waiting.values():
                event.set()  # no reply: the caller reports the leader as unreachable
            self.waiting.clear()
            await self.stream.aclose()


class Forwarder:
    def __init__(self, nursery: trio.Nursery, max_frame: int, timeout: float) -> None:
        self._nursery = nursery
        self._max_frame = max_frame
        self._timeout = timeout
        self._links: dict[str, _Link] = {}
        self._ids = itertools.count(1)
        self._connecting = trio.Lock()

    async def call(self, leader_address: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send ``request`` to the leader; returns its ok-reply or raises its error."""
        link = await self._link(leader_address)
        rid = next(self._ids)
        event = trio.Event()
        box: list[dict[str, Any]] = []
        link.waiting[rid] = (event, box)
        try:
            async with link.send_lock:
                await link.stream.send_all(encode_frame({**request, "id": rid, "forwarded": True}))
            with trio.move_on_after(self._timeout):
                await event.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            link.waiting.pop(rid, None)
        if not box:
            raise errors.UnavailableError(f"the leader at {leader_address} did not answer")
        reply = box[0]
        if not reply.get("ok"):
            raise errors.error_from_wire(reply.get("error") or {})
        return reply

    async def _link(self, address: str) -> _Link:
        async with self._connecting:
            link = self._links.get(address)
            if link is not None and not link.broken:
                return link
            try:
                stream = await trio.open_tcp_stream(*parse_address(address))
                await stream.send_all(encode_frame({"hello": "client"}))
            except OSError as exc:
                raise errors.UnavailableError(
                    f"cannot reach the leader at {address}: {exc}"
                ) from exc
            link = self._links[address] = _Link(address, stream, self._max_frame)
            self._nursery.start_soon(link.read_replies)
            return link
