"""Length-prefixed CBOR frames: ``u32 big-endian length | one CBOR item``.

Used by both links (peer and client). The length prefix is checked against ``max_size``
*before* any of the body is buffered, so a hostile or buggy sender announcing 4 GiB costs
us 4 bytes of memory, not 4 GiB (LESSONS: bad input gets an error for that request only,
the node keeps serving).

Every error is per frame and leaves the stream usable: a malformed body was delimited by
its length, so decoding resumes at the next frame; an oversized frame's body is skipped as
it streams past, without being stored. Whether to keep talking to such a sender is the
caller's choice (a client gets an error reply; a peer link may simply reconnect).

:class:`FrameDecoder` is pure (feed bytes, get objects), so it is tested without sockets;
:func:`send_frame` and :class:`FrameReader` put it on a trio stream.
"""

from __future__ import annotations

import io
import os
from collections import deque
from struct import Struct
from typing import Any

import cbor2
import trio

from raftsql.net.errors import FrameTooLarge, MalformedFrame, ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameDecoder",
    "FrameReader",
    "FrameTooLarge",
    "MalformedFrame",
    "ProtocolError",
    "decode_payload",
    "encode_frame",
    "read_frames",
    "send_frame",
]

DEFAULT_MAX_FRAME = 64 << 20
_LEN = Struct(">I")
_MAX_U32 = (1 << 32) - 1
_RECEIVE_MIN = 64 << 10
_RECEIVE_MAX = 1 << 20


def encode_frame(obj: Any, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame holding ``obj`` as CBOR. Raises :class:`FrameTooLarge` rather than send
    something the receiver would refuse (the caller should split, e.g. fewer entries)."""
    payload = cbor2.dumps(obj)
    if len(payload) > max_size:
        raise FrameTooLarge(len(payload), max_size)
    return _LEN.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> Any:
    """Exactly one CBOR item, or :class:`MalformedFrame`.

    Trailing bytes after the item are an error too: a frame that holds more than it says is
    a bug on the sender's side that would otherwise go unnoticed.
    """
    fp = io.BytesIO(payload)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types (and RecursionError, MemoryError)
        raise MalformedFrame(f"invalid CBOR: {exc}") from exc
    if fp.tell() != len(payload):
        raise MalformedFrame(f"{len(payload) - fp.tell()} trailing bytes after the CBOR item")
    return obj


class FrameDecoder:
    """Incremental decoder: ``feed(bytes) -> [objects]`` for however the bytes were split.

    Raises :class:`FrameTooLarge` when a length prefix over ``max_size`` arrives (the body
    is then skipped as it comes in) and :class:`MalformedFrame` for a body that is not one
    CBOR item. Frames decoded before the error in the same call are in ``error.decoded``;
    bytes after it stay buffered, and the next ``feed`` (``feed(b"")`` will do) continues.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 < max_size <= _MAX_U32:
            raise ValueError(f"max_size must be in 1..{_MAX_U32}")
        self.max_size = max_size
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame's body still to discard

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (0 at a frame boundary)."""
        return len(self._buf) + self._skip

    @property
    def wanted(self) -> int:
        """How many more bytes would complete the frame in progress (a receive-size hint)."""
        if self._skip:
            return self._skip
        if len(self._buf) < _LEN.size:
            return _LEN.size - len(self._buf)
        (n,) = _LEN.unpack_from(self._buf)
        return max(_LEN.size + n - len(self._buf), 1)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = memoryview(data)[self._skip :]
            self._skip = 0
        buf = self._buf
        buf += data
        out: list[Any] = []
        pos = 0
        end = len(buf)
        try:
            while end - pos >= _LEN.size:
                (n,) = _LEN.unpack_from(buf, pos)
                if n > self.max_size:
                    body_here = min(n, end - pos - _LEN.size)
                    pos += _LEN.size + body_here
                    self._skip = n - body_here
                    raise FrameTooLarge(n, self.max_size, decoded=out)
                if end - pos - _LEN.size < n:
                    break
                start = pos + _LEN.size
                pos = start + n
                with memoryview(buf) as view:
                    payload = view[start:pos].tobytes()
                try:
                    out.append(decode_payload(payload))
                except MalformedFrame as exc:
                    exc.decoded = out
                    raise
        finally:
            del buf[:pos]
        return out


async def send_frame(
    stream: trio.abc.SendStream, obj: Any, max_size: int = DEFAULT_MAX_FRAME
) -> None:
    """Encode ``obj`` and send it as one frame (one ``send_all``).

    trio allows one ``send_all`` at a time per stream: tasks sharing a stream must
    serialize their sends (a lock, or one sender task fed by a memory channel).
    """
    await stream.send_all(encode_frame(obj, max_size))


class FrameReader:
    """Frames from a trio ``ReceiveStream``, as an async iterator or with :meth:`receive`.

    A class rather than an async generator so it survives errors: on
    :class:`MalformedFrame` or :class:`FrameTooLarge` the iteration stops with that error,
    the frames before it have been delivered, and iterating again continues with the next
    frame. At a clean end of stream iteration stops; a stream closed mid-frame raises
    :class:`MalformedFrame`.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(max_size)
        self._ready: deque[Any] = deque()
        self._error: ProtocolError | None = None
        self._drain = False  # frames may sit decoded-but-unread behind a reported error
        self._eof = False
        self._full_read = False

    @property
    def pending(self) -> int:
        """Frames decoded and not yet received: :meth:`receive` returns the next one
        without waiting, and without yielding to other tasks."""
        return len(self._ready)

    async def receive(self) -> Any:
        """The next frame; raises ``EOFError`` at a clean end of stream."""
        while not self._ready:
            if self._error is not None:
                error, self._error = self._error, None
                self._drain = True
                raise error
            if self._drain:
                self._drain = False
                self._absorb(b"")
                continue
            if self._eof:
                raise EOFError("stream closed")
            hint = min(max(self._decoder.wanted, _RECEIVE_MIN), _RECEIVE_MAX)
            data = await self._receive_some(hint)
            if not data:
                self._eof = True
                if self._decoder.buffered:
                    self._error = MalformedFrame(
                        f"stream closed inside a frame ({self._decoder.buffered} bytes pending)"
                    )
                    self._decoder = FrameDecoder(self._decoder.max_size)
                continue
            self._absorb(data)
        return self._ready.popleft()

    async def _receive_some(self, hint: int) -> bytes:
        """``receive_some``, cheaper on a socket: wait for readability first, then read.

        trio's ``receive_some`` tries the read first, which on a request/response
        connection almost always finds nothing (the peer is waiting for our answer) and
        costs a wasted syscall per request. Only after a read that filled the buffer, when
        more is likely queued, do we try reading before waiting.
        """
        sock = getattr(self._stream, "socket", None)
        if not isinstance(sock, trio.socket.SocketType):
            return await self._stream.receive_some(hint)
        fd = sock.fileno()
        if self._full_read:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                data = os.read(fd, hint)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            self._full_read = len(data) == hint
            return data

    def _absorb(self, data: bytes) -> None:
        try:
            self._ready.extend(self._decoder.feed(data))
        except ProtocolError as exc:
            self._ready.extend(exc.decoded)
            exc.decoded = []
            self._error = exc

    def __aiter__(self) -> FrameReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except EOFError:
            raise StopAsyncIteration from None


def read_frames(stream: trio.abc.ReceiveStream, max_size: int = DEFAULT_MAX_FRAME) -> FrameReader:
    """``async for obj in read_frames(stream): ...`` — see :class:`FrameReader`."""
    return FrameReader(stream, max_size)
