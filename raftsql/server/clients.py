"""The client protocol on a node: many requests in flight per connection, matched by id.

Every request is a CBOR map ``{"id": int, "op": str, ...}``; every answer is
``{"id", "ok": True, ...}`` or ``{"id", "ok": False, "error": {"code", "message", ...}}``.
A bad request (or a bad frame) gets an error for that request alone: the connection and
the node keep serving. Ops:

- ``write``: ``stmts`` ``[[sql, params], ...]``, ``atomic``, ``session``, ``seq``
- ``read``: ``sql``, ``params``, ``consistency`` ("linearizable" | "stale"), ``max_lag``
- ``execute``: one statement, routed as a write or a read by what it does
- ``status``, ``transfer`` (``target``), ``snapshot``, ``digest`` (applied index and a
  SHA-256 of the database image: replicas at the same index must agree byte for byte)
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import trio

from raftsql import errors
from raftsql.net.errors import FrameTooLarge, ProtocolError
from raftsql.net.framing import FrameReader, encode_frame
from raftsql.raft import Role
from raftsql.server.node import Node, WriteWaiter
from raftsql.sql.command import StatementResult, results_to_wire
from raftsql.sql.statements import classify

log = logging.getLogger("raftsql.clients")


def result_to_wire(r: StatementResult) -> dict[str, Any]:
    return {
        "columns": list(r.columns),
        "rows": [list(row) for row in r.rows],
        "rowcount": r.rowcount,
        "lastrowid": r.lastrowid,
        "truncated": r.truncated,
    }


class _Replies:
    """Sends answers on one connection, in the order they are ready. The answers to the
    writes of one applied batch go out together, in one ``send`` per connection.

    An answer is first written straight to the (non-blocking) socket: almost always the
    kernel takes it whole, and the answer costs one ``send`` and no task switch (trio's
    ``send_all`` costs several times that in Python). Only what the kernel did not take
    is queued, and one flusher task waits for the socket to drain it, in order.
    """

    def __init__(
        self, stream: trio.SocketStream, nursery: trio.Nursery, max_frame: int, node: Node
    ) -> None:
        self._node = node
        self._held: list[bytes] = []
        self._stream = stream
        self._nursery = nursery
        self._max_frame = max_frame
        self._fd = stream.socket.fileno()
        self._backlog: list[bytes] = []
        self._flushing = False
        self.broken = False
        self.inflight = 0
        """Writes proposed from this connection and not yet answered."""

    def answer(self, message: dict[str, Any]) -> None:
        try:
            frame = encode_frame(message, self._max_frame)
        except FrameTooLarge as exc:
            err = errors.ParameterError(f"the answer is too large to send: {exc}")
            frame = encode_frame({"id": message.get("id"), "ok": False, "error": err.to_wire()})
        if self._node.answering_batch:  # sent with this connection's others of the batch
            if not self._held:
                self._node.after_batch.append(self._send_held)
            self._held.append(frame)
            return
        self.send(frame)

    def _send_held(self) -> None:
        data = b"".join(self._held)
        self._held.clear()
        self.send(data)

    def send(self, frame: bytes) -> None:
        if self.broken:
            return
        if not self._flushing:  # else a chunk is on its way: this one must come after it
            try:
                sent = os.write(self._fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.broken = True  # the client is gone; the receive loop will notice
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self._flushing = True
            self._nursery.start_soon(self._flush)
        self._backlog.append(frame)

    async def _flush(self) -> None:
        try:
            while self._backlog:
                chunk = b"".join(self._backlog)
                self._backlog.clear()
                await self._stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken = True
        finally:
            self._flushing = False


PASS_SECONDS = 0.02
"""How long the client connections together may go on taking requests they have
already read before the other tasks run: each connection's share of it (at least
``MIN_STEP_SECONDS``) is how long its task takes requests before it yields.

Why: one read can bring hundreds of pipelined requests, and trio runs every ready task
once per scheduler pass. With 64 connections each proposing all that one read brought, a
leader with 10,000 writes in flight made passes of ~0.4 s, its heartbeats went out late,
and the followers elected another leader."""

MIN_STEP_SECONDS = 0.0002


def _step_seconds(node: Node) -> float:
    return max(MIN_STEP_SECONDS, PASS_SECONDS / max(1, node.client_connections))


async def serve_client(node: Node, stream: trio.SocketStream, reader: FrameReader) -> None:
    """Answer one client connection's requests, many in flight, each on its own.

    A write on the leader (the hot path) is proposed right here and answered from its
    completion callback: no task per write. Everything else gets a task of its own. A
    connection yields to the other tasks after its share of ``PASS_SECONDS`` of requests
    taken from what it has already read.
    """

    async def handle(request: Any, replies: _Replies) -> None:
        rid = request.get("id") if isinstance(request, dict) else None
        try:
            answer = await _dispatch(node, request)
            answer.update(id=rid, ok=True)
        except errors.RaftsqlError as exc:
            answer = {"id": rid, "ok": False, "error": exc.to_wire()}
        except Exception as exc:
            answer = _internal_error(node, request, exc)
        replies.answer(answer)

    replies: _Replies | None = None
    node.client_connections += 1
    try:
        async with trio.open_nursery() as nursery:
            replies = _Replies(stream, nursery, node.config.max_frame, node)
            step_ends = 0.0
            while not replies.broken:
                waits = not reader.pending  # then the receive yields: a new step starts
                if not waits and time.perf_counter() > step_ends:
                    await trio.lowlevel.checkpoint()  # ticks, peers, other clients
                    waits = True
                try:
                    request = await reader.receive()
                except ProtocolError as exc:
                    err = errors.ProtocolError(str(exc))
                    replies.answer({"id": None, "ok": False, "error": err.to_wire()})
                    if not isinstance(exc, FrameTooLarge):
                        return  # the byte stream is out of step: nothing after is trustworthy
                    continue
                except EOFError:
                    break
                if waits:
                    step_ends = time.perf_counter() + _step_seconds(node)
                if not _write_on_leader(node, request, replies) and not _read_now(
                    node, request, replies
                ):
                    nursery.start_soon(handle, request, replies)
            while replies.inflight and not replies.broken:
                # the client half-closed: still answer what it sent (a write ends within
                # the request timeout, one way or another)
                await trio.sleep(0.01)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        node.client_connections -= 1
        if replies is not None:
            # writes still in flight answer into the void, never into a reused fd number
            replies.broken = True


def _write_on_leader(node: Node, request: Any, replies: _Replies) -> bool:
    """The hot path: propose a leader's write now and answer it when it is applied.
    False (nothing done) for anything else, which then goes through ``_dispatch``."""
    if not (
        isinstance(request, dict) and request.get("op") == "write" and node.core.role is Role.LEADER
    ):
        return False
    rid = request.get("id")
    done = _WriteAnswer(node, replies, rid)
    try:
        statements = node.check_statements(statements_from_wire(request.get("stmts")))
        node.submit_write(
            statements,
            atomic=_opt(request, "atomic", bool, True),
            session=_session(request),
            seq=_opt(request, "seq", int, 0),
            on_done=done,
        )
        replies.inflight += 1
    except errors.RaftsqlError as exc:
        replies.answer({"id": rid, "ok": False, "error": exc.to_wire()})
    except Exception as exc:
        replies.answer(_internal_error(node, request, exc))
    return True


class _WriteAnswer:
    """Answers one write from the leader's completion callback. One small object per
    write in flight, not a closure (a function and a cell per captured name), and it
    does not keep the request alive: with thousands of writes in flight every object
    they hold lengthens the garbage collector's full passes, which stop the event loop."""

    __slots__ = ("node", "replies", "rid")

    def __init__(self, node: Node, replies: _Replies, rid: Any) -> None:
        self.node = node
        self.replies = replies
        self.rid = rid

    def __call__(self, waiter: WriteWaiter) -> None:
        self.replies.inflight -= 1
        rid = self.rid
        try:
            if waiter.error is not None:
                raise waiter.error
            assert waiter.result is not None
            answer = {"id": rid, "ok": True, "results": results_to_wire(waiter.result)}
        except errors.RaftsqlError as exc:
            answer = {"id": rid, "ok": False, "error": exc.to_wire()}
        except Exception as exc:
            answer = _internal_error(self.node, {"op": "write", "id": rid}, exc)
        self.replies.answer(answer)


def _read_now(node: Node, request: Any, replies: _Replies) -> bool:
    """The read hot path, like :func:`_write_on_leader`: started here, answered from its
    completion callback. False for any other op."""
    if not (isinstance(request, dict) and request.get("op") == "read"):
        return False
    rid = request.get("id")

    def done(slot: Any) -> None:
        replies.inflight -= 1
        if slot.error is None:
            answer = result_to_wire(slot.result)
            answer.update(id=rid, ok=True)
        elif isinstance(slot.error, errors.RaftsqlError):
            answer = {"id": rid, "ok": False, "error": slot.error.to_wire()}
        else:
            answer = _internal_error(node, request, slot.error)
        replies.answer(answer)

    replies.inflight += 1  # before: a read may be answered before start_read returns
    try:
        node.start_read(
            _required(request, "sql", str),
            _params(request.get("params")),
            _opt(request, "consistency", str, "linearizable"),
            done,
            max_lag=request.get("max_lag") if isinstance(request.get("max_lag"), int) else None,
        )
    except errors.RaftsqlError as exc:
        replies.inflight -= 1
        replies.answer({"id": rid, "ok": False, "error": exc.to_wire()})
    except Exception as exc:
        replies.inflight -= 1
        replies.answer(_internal_error(node, request, exc))
    return True


def _internal_error(node: Node, request: Any, exc: Exception) -> dict[str, Any]:
    log.exception("node %d: internal error on %r", node.config.id, request)
    err = errors.InternalError(f"{type(exc).__name__}: {exc}")
    rid = request.get("id") if isinstance(request, dict) else None
    return {"id": rid, "ok": False, "error": err.to_wire()}


async def _dispatch(node: Node, req: Any) -> dict[str, Any]:
    if not isinstance(req, dict):
        raise errors.ProtocolError("a request must be a map")
    op = req.get("op")
    if op == "write":
        stmts = statements_from_wire(req.get("stmts"))
        outcome = await node.write(
            stmts,
            atomic=_opt(req, "atomic", bool, True),
            session=_session(req),
            seq=_opt(req, "seq", int, 0),
            forwarded=req.get("forwarded") is True,
        )
        return {"results": [result_to_wire(r) for r in outcome.unwrap()]}
    if op == "execute":
        sql = _required(req, "sql", str)
        params = _params(req.get("params"))
        if classify(sql).is_write:
            outcome = await node.write(
                [(sql, params)], session=_session(req), seq=_opt(req, "seq", int, 0)
            )
            (result,) = outcome.unwrap()
        else:
            consistency = _opt(req, "consistency", str, "linearizable")
            result = await node.read(sql, params, consistency=consistency)
        return result_to_wire(result)
    if op == "status":
        return {"status": node.status()}
    if op == "transfer":
        node.transfer_leader(_required(req, "target", int))
        return {}
    if op == "digest":
        return await node.digest()
    if op == "snapshot":
        meta = await node.snapshot_now()
        return {"index": meta.index, "term": meta.term, "size": meta.size}
    raise errors.ProtocolError(f"unknown op {op!r}")


def _required(req: dict[str, Any], key: str, kind: type) -> Any:
    value = req.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise errors.ProtocolError(f"{key!r} must be a {kind.__name__}")
    return value


def _opt(req: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    return default if req.get(key) is None else _required(req, key, kind)


def _session(req: dict[str, Any]) -> bytes:
    session = req.get("session", b"")
    if isinstance(session, str):
        session = session.encode()
    if not isinstance(session, bytes):
        raise errors.ProtocolError("'session' must be bytes")
    return session


def _params(params: Any) -> Any:
    if params is None:
        return ()
    if isinstance(params, list):
        return tuple(params)
    if isinstance(params, dict):
        return params
    raise errors.ParameterError("parameters must be an array or a map")


def statements_from_wire(stmts: Any) -> list[tuple[str, Any]]:
    """A request's ``stmts`` as (sql, params) pairs, checked for shape: a clear
    ProtocolError for anything else. (Public: ``benchmarks.write_work`` times it.)"""
    if not isinstance(stmts, list) or not stmts:
        raise errors.ProtocolError("'stmts' must be a non-empty array of [sql, params]")
    out = []
    for item in stmts:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise errors.ProtocolError("each statement must be [sql, params]")
        out.append((item[0], _params(item[1])))
    return out
