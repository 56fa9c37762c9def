"""The synchronous raftsql client: blocking sockets, no event loop.

It works the same in a script, a thread and a Jupyter notebook (which already runs an event
loop of its own). It finds the leader by itself (any node answers a write with the
leader's address), retries through leader changes and dead nodes until its timeout, and
numbers its writes within a session so that a retried write is applied exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftsql import errors
from raftsql.net.errors import FrameTooLarge
from raftsql.net.errors import ProtocolError as WireProtocolError
from raftsql.net.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame

_RETRYABLE = (errors.NotLeaderError, errors.UnavailableError)
_RETRY_CAP = 0.05
"""Longest pause between retries. A failover is over within an election timeout, and a
client that backs off further than a few ticks adds its own wait to it (measured: a
200 ms cap added a median 165 ms after the new leader was already serving)."""


@dataclass
class Result:
    """One statement's outcome: rows (for SELECT or RETURNING), rowcount and lastrowid."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None
    truncated: bool = False
    """The node stopped at its row limit: more rows matched than came back."""

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Result:
        return cls(
            columns=list(d.get("columns") or []),
            rows=[tuple(r) for r in d.get("rows") or []],
            rowcount=d.get("rowcount", -1),
            lastrowid=d.get("lastrowid"),
            truncated=bool(d.get("truncated")),
        )


def parse_hosts(hosts: str | Iterable[str | tuple[str, int]]) -> list[tuple[str, int]]:
    """``"h1:p1,h2:p2"``, ``"raftsql://h1:p1,h2:p2"`` or a list of either form."""
    if isinstance(hosts, str):
        text = hosts.removeprefix("raftsql://").strip("/")
        items: list[str | tuple[str, int]] = [h for h in text.split(",") if h.strip()]
    else:
        items = list(hosts)
    out = []
    for h in items:
        if isinstance(h, tuple):
            out.append((h[0], int(h[1])))
            continue
        host, sep, port = h.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise errors.ParameterError(f"expected host:port, got {h!r}")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise errors.ParameterError("no hosts given")
    return out


class _Connection:
    """One TCP connection to one node, speaking length-prefixed CBOR frames."""

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME)
        self.pending: list[Any] = []
        self.sock.sendall(encode_frame({"hello": "client"}))

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.sock.settimeout(max(timeout, 0.001))
        self.sock.sendall(encode_frame(request))
        while True:
            while self.pending:
                reply = self.pending.pop(0)
                if isinstance(reply, dict) and reply.get("id") in (request["id"], None):
                    return reply
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"{self.address[0]}:{self.address[1]} closed the connection")
            self.pending.extend(self.decoder.feed(data))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Client:
    """A session with a raftsql cluster.

    ``consistency`` is the default for reads: "linearizable" (never stale, served on any
    node through ReadIndex) or "stale" (local, fastest). ``timeout`` bounds each call,
    retries included.
    """

    def __init__(
        self,
        hosts: str | Iterable[str | tuple[str, int]],
        timeout: float = 10.0,
        consistency: str = "linearizable",
    ) -> None:
        self.hosts = parse_hosts(hosts)
        self.timeout = timeout
        self.consistency = consistency
        self.session = os.urandom(16)
        self._seq = 0
        self._ids = itertools.count(1)
        self._conn: _Connection | None = None
        self._leader: tuple[str, int] | None = None
        self._next_host = 0

    # === public API ======================================================================

    def execute(self, sql: str, params: Any = (), consistency: str | None = None) -> Result:
        """Run one statement of any kind: the node replicates it if it writes, and runs it
        as a read at ``consistency`` otherwise."""
        self._seq += 1
        request = {
            "op": "execute",
            "sql": sql,
            "params": _wire_params(params),
            "consistency": consistency or self.consistency,
            "session": self.session,
            "seq": self._seq,
        }
        return Result.from_wire(self._call(request, to_leader=False))

    def write(self, stmts: Sequence[tuple[str, Any]], atomic: bool = True) -> list[Result]:
        """Replicate statements as one request: all-or-nothing when ``atomic``."""
        return self.write_with_seq(self.next_seq(), stmts, atomic)

    def next_seq(self) -> int:
        """Take the next sequence number of this session, for :meth:`write_with_seq`."""
        self._seq += 1
        return self._seq

    def write_with_seq(
        self, seq: int, stmts: Sequence[tuple[str, Any]], atomic: bool = True
    ) -> list[Result]:
        """Like :meth:`write`, but as request ``seq`` of this session (from next_seq()).

        Why: write() numbers every call afresh, so calling it again after a RequestTimeout
        (outcome unknown) could apply the statements twice. Sending the same statements
        again under the same seq gets the first outcome instead: applied at most once.
        Valid while no later seq of this session has been applied (the cluster keeps the
        last result per session). The DB-API driver retries a timed-out commit() this way.
        """
        request = {
            "op": "write",
            "stmts": [[sql, _wire_params(params)] for sql, params in stmts],
            "atomic": atomic,
            "session": self.session,
            "seq": seq,
        }
        reply = self._call(request, to_leader=True)
        return [Result.from_wire(r) for r in reply["results"]]

    def query(
        self,
        sql: str,
        params: Any = (),
        consistency: str | None = None,
        max_lag: int | None = None,
    ) -> Result:
        """Run a read-only statement at the given consistency level."""
        request = {
            "op": "read",
            "sql": sql,
            "params": _wire_params(params),
            "consistency": consistency or self.consistency,
        }
        if max_lag is not None:
            request["max_lag"] = max_lag
        return Result.from_wire(self._call(request, to_leader=False))

    def status(self) -> dict[str, Any]:
        """The status of whichever node this client is connected to."""
        return self._call({"op": "status"}, to_leader=False)["status"]

    def transfer_leader(self, target: int) -> None:
        self._call({"op": "transfer", "target": target}, to_leader=True)

    def digest(self) -> dict[str, Any]:
        """This node's applied index and a SHA-256 of its database image at that index."""
        return self._call({"op": "digest"}, to_leader=False)

    def snapshot(self) -> dict[str, Any]:
        return self._call({"op": "snapshot"}, to_leader=False)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # === plumbing ========================================================================

    def _call(self, request: dict[str, Any], to_leader: bool) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        last_error: Exception | None = None
        delay = 0.01
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.RequestTimeout(
                    f"no answer within {self.timeout}s (last problem: {last_error})"
                )
            try:
                conn = self._connect(to_leader, remaining)
                request["id"] = next(self._ids)
                reply = conn.call(request, deadline - time.monotonic())
            except FrameTooLarge as exc:
                raise errors.ParameterError(f"the request is too large to send: {exc}") from exc
            except (OSError, WireProtocolError) as exc:
                last_error = exc
                self._drop_connection()
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, _RETRY_CAP)
                continue
            if reply.get("ok"):
                return reply
            err = errors.error_from_wire(reply.get("error") or {})
            if isinstance(err, errors.NotLeaderError):
                leader = err.leader_addr
                self._leader = parse_hosts([leader])[0] if leader else None
                if self._leader is None or (self._conn and self._conn.address == self._leader):
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, _RETRY_CAP)
                self._drop_connection()
                last_error = err
                continue
            if isinstance(err, (_RETRYABLE, errors.RequestTimeout)):
                last_error = err
                if not err.details.get("overloaded"):
                    # another node may do (no leader here, a node gone); an overloaded
                    # leader is the right node, busy: a new connection would only add work
                    self._drop_connection()
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, _RETRY_CAP)
                continue
            raise err

    def _connect(self, to_leader: bool, timeout: float) -> _Connection:
        if self._conn is not None:
            if not to_leader or self._leader is None or self._conn.address == self._leader:
                return self._conn
            self._drop_connection()
        if self._leader is not None:
            address = self._leader
        else:
            address = self.hosts[self._next_host % len(self.hosts)]
            self._next_host += 1
        try:
            self._conn = _Connection(address, min(timeout, 2.0))
        except OSError:
            if address == self._leader:
                self._leader = None
            raise
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _wire_params(params: Any) -> Any:
    if params is None:
        return []
    if isinstance(params, dict):
        return dict(params)
    if isinstance(params, (list, tuple)):
        return list(params)
    raise errors.ParameterError(
        f"parameters must be a sequence or a mapping, not {type(params).__name__}"
    )
