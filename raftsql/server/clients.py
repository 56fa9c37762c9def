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

import contextlib
import logging
from typing import Any

import trio

from raftsql import errors
from raftsql.net.errors import FrameTooLarge, ProtocolError
from raftsql.net.framing import FrameReader, encode_frame
from raftsql.server.node import Node
from raftsql.sql.command import StatementResult
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


async def serve_client(node: Node, stream: trio.SocketStream, reader: FrameReader) -> None:
    send_lock = trio.Lock()

    async def reply(message: dict[str, Any]) -> None:
        try:
            frame = encode_frame(message, node.config.max_frame)
        except FrameTooLarge as exc:
            err = errors.ParameterError(f"the answer is too large to send: {exc}")
            frame = encode_frame({"id": message.get("id"), "ok": False, "error": err.to_wire()})
        async with send_lock:
            await stream.send_all(frame)

    async def handle(request: Any) -> None:
        rid = request.get("id") if isinstance(request, dict) else None
        try:
            answer = await _dispatch(node, request)
            answer.update(id=rid, ok=True)
        except errors.RaftsqlError as exc:
            answer = {"id": rid, "ok": False, "error": exc.to_wire()}
        except Exception as exc:
            log.exception("node %d: internal error on %r", node.config.id, request)
            err = errors.InternalError(f"{type(exc).__name__}: {exc}")
            answer = {"id": rid, "ok": False, "error": err.to_wire()}
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await reply(answer)

    try:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    request = await reader.receive()
                except ProtocolError as exc:
                    err = errors.ProtocolError(str(exc))
                    await reply({"id": None, "ok": False, "error": err.to_wire()})
                    if not isinstance(exc, FrameTooLarge):
                        return  # the byte stream is out of step: nothing after is trustworthy
                    continue
                except EOFError:
                    break
                nursery.start_soon(handle, request)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _dispatch(node: Node, req: Any) -> dict[str, Any]:
    if not isinstance(req, dict):
        raise errors.ProtocolError("a request must be a map")
    op = req.get("op")
    if op == "write":
        stmts = _statements(req.get("stmts"))
        outcome = await node.write(
            stmts,
            atomic=_opt(req, "atomic", bool, True),
            session=_session(req),
            seq=_opt(req, "seq", int, 0),
            forwarded=req.get("forwarded") is True,
        )
        return {"results": [result_to_wire(r) for r in outcome.unwrap()]}
    if op == "read":
        sql = _required(req, "sql", str)
        result = await node.read(
            sql,
            _params(req.get("params")),
            consistency=_opt(req, "consistency", str, "linearizable"),
            max_lag=req.get("max_lag") if isinstance(req.get("max_lag"), int) else None,
        )
        return result_to_wire(result)
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


def _statements(stmts: Any) -> list[tuple[str, Any]]:
    if not isinstance(stmts, list) or not stmts:
        raise errors.ProtocolError("'stmts' must be a non-empty array of [sql, params]")
    out = []
    for item in stmts:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise errors.ProtocolError("each statement must be [sql, params]")
        out.append((item[0], _params(item[1])))
    return out
