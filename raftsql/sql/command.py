"""What travels through the Raft log (a WriteCommand) and back to the client (a CommandResult).

Both are encoded with CBOR as flat positional arrays rather than maps: every entry is
encoded once by the leader, decoded by every node on apply, and stored in the sessions
table, so field names would be paid for thousands of times a second. Each array starts with
a format number so that a future layout can be told apart from this one.

WriteCommand array (format 1)::

    [1, session, seq, atomic, time_ns, seed, sql_0, params_0, sql_1, params_1, ...]

CommandResult array::

    [0, rows_0, columns_0, rowcount_0, lastrowid_0, truncated_0, rows_1, ...]   success
    [1, {"code": ..., "message": ..., ...}]                                     error

Parameters are a CBOR array (bound by position) or a map (bound by name). Values are the
SQLite storage classes: None, int (64-bit), float, str, bytes; bool is accepted and binds
as 0/1. Decoding validates all of this, because a follower must be able to reject a corrupt
entry deterministically instead of crashing on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from raftsql.errors import ProtocolError, RaftsqlError, error_from_wire

Value = None | int | float | str | bytes
"""A value SQLite can store (and so a parameter or a result cell)."""

Params = tuple[Value, ...] | dict[str, Value]

COMMAND_FORMAT = 1
_COMMAND_HEADER = 6
_RESULT_OK = 0
_RESULT_ERROR = 1
_RESULT_FIELDS = 5

_VALUE_TYPES = (type(None), int, float, str, bytes)  # bool is an int


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement (original text, never regenerated) and its parameters."""

    sql: str
    params: Params = ()


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """A client's write request as it is replicated.

    ``session`` and ``seq`` identify the request for exactly-once application: a retry
    carries the same pair and gets the first result back. An empty session opts out.
    ``time_ns`` and ``seed`` are stamped by the leader when it proposes the entry, so that
    'now' and random() evaluate identically on every node. Every command is applied
    all-or-nothing; ``atomic`` is carried for the client protocol and currently means the
    same (see machine.py).
    """

    session: bytes | str
    seq: int
    stmts: tuple[Statement, ...]
    atomic: bool = True
    time_ns: int = 0
    seed: int = 0

    def stamped(self, time_ns: int, seed: int) -> WriteCommand:
        """This command with the leader's clock and seed filled in."""
        return dataclasses.replace(self, time_ns=time_ns, seed=seed)

    def encode(self) -> bytes:
        out: list[Any] = [
            COMMAND_FORMAT,
            self.session,
            self.seq,
            self.atomic,
            self.time_ns,
            self.seed,
        ]
        for st in self.stmts:
            out.append(st.sql)
            params = st.params
            out.append(params if isinstance(params, dict) else list(params))
        try:
            return cbor2.dumps(out)
        except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
            raise ProtocolError(f"cannot encode command: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes) -> WriteCommand:
        """Parse and validate an encoded command; anything malformed is a ProtocolError."""
        try:
            raw = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises a variety of types on garbage
            raise ProtocolError(f"undecodable command: {exc}") from exc
        if not isinstance(raw, list) or len(raw) < _COMMAND_HEADER:
            raise ProtocolError("malformed command: not a command array")
        fmt, session, seq, atomic, time_ns, seed = raw[:_COMMAND_HEADER]
        if fmt != COMMAND_FORMAT or type(fmt) is not int:
            raise ProtocolError(f"unsupported command format {fmt!r}")
        if not isinstance(session, bytes | str):
            raise ProtocolError("malformed command: session must be bytes or str")
        for name, value in (("seq", seq), ("time_ns", time_ns), ("seed", seed)):
            if type(value) is not int:
                raise ProtocolError(f"malformed command: {name} must be an integer")
        if type(atomic) is not bool:
            raise ProtocolError("malformed command: atomic must be a boolean")
        body = raw[_COMMAND_HEADER:]
        if not body or len(body) % 2:
            raise ProtocolError("malformed command: statements must come as (sql, params) pairs")
        stmts = []
        for i in range(0, len(body), 2):
            sql, params = body[i], body[i + 1]
            if not isinstance(sql, str):
                raise ProtocolError("malformed command: SQL must be a string")
            stmts.append(Statement(sql, _decode_params(params)))
        return cls(session, seq, tuple(stmts), atomic, time_ns, seed)


def _decode_params(params: Any) -> Params:
    if isinstance(params, list):
        for value in params:
            if not isinstance(value, _VALUE_TYPES):
                raise ProtocolError(f"malformed command: parameter of type {type(value).__name__}")
        return tuple(params)
    if isinstance(params, dict):
        for key, value in params.items():
            if not isinstance(key, str):
                raise ProtocolError("malformed command: parameter names must be strings")
            if not isinstance(value, _VALUE_TYPES):
                raise ProtocolError(f"malformed command: parameter of type {type(value).__name__}")
        return params
    raise ProtocolError("malformed command: parameters must be an array or a map")


@dataclass(frozen=True, slots=True)
class StatementResult:
    """What one statement produced.

    ``rowcount`` is the number of rows an INSERT/UPDATE/DELETE/REPLACE changed and -1 for
    every other statement (PEP 249). ``lastrowid`` is the rowid of the last row an INSERT or
    REPLACE inserted, else None. ``truncated`` says a read stopped at its ``max_rows``.
    """

    rows: list[tuple[Value, ...]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command: one StatementResult per statement, or one error (then
    nothing of the command was applied)."""

    results: tuple[StatementResult, ...] = ()
    error: RaftsqlError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> tuple[StatementResult, ...]:
        """The results, or raise the error (what a client does with a result)."""
        if self.error is not None:
            raise self.error
        return self.results

    def encode(self) -> bytes:
        if self.error is not None:
            return cbor2.dumps([_RESULT_ERROR, self.error.to_wire()])
        out: list[Any] = [_RESULT_OK]
        for r in self.results:
            out.extend((r.rows, r.columns, r.rowcount, r.lastrowid, r.truncated))
        return cbor2.dumps(out)

    @classmethod
    def decode(cls, data: bytes) -> CommandResult:
        try:
            raw = cbor2.loads(data)
        except Exception as exc:
            raise ProtocolError(f"undecodable result: {exc}") from exc
        if not isinstance(raw, list) or not raw:
            raise ProtocolError("malformed result")
        if raw[0] == _RESULT_ERROR and len(raw) == 2:
            return cls(error=error_from_wire(raw[1]))
        if raw[0] != _RESULT_OK or (len(raw) - 1) % _RESULT_FIELDS:
            raise ProtocolError("malformed result")
        results = []
        for i in range(1, len(raw), _RESULT_FIELDS):
            rows, columns, rowcount, lastrowid, truncated = raw[i : i + _RESULT_FIELDS]
            if not isinstance(rows, list) or not isinstance(columns, list):
                raise ProtocolError("malformed result rows")
            results.append(
                StatementResult(
                    [tuple(row) for row in rows], list(columns), rowcount, lastrowid, truncated
                )
            )
        return cls(tuple(results))


def results_to_wire(data: bytes) -> list[dict[str, Any]]:
    """An encoded CommandResult straight to the client protocol's ``results`` (one map per
    statement), or raise its error: the leader answers every write with this, so it skips
    building StatementResult objects only to take them apart again."""
    try:
        raw = cbor2.loads(data)
    except Exception as exc:
        raise ProtocolError(f"undecodable result: {exc}") from exc
    if (
        isinstance(raw, list)
        and raw
        and raw[0] == _RESULT_OK
        and (len(raw) - 1) % _RESULT_FIELDS == 0
    ):
        return [
            {
                "columns": raw[i + 1],
                "rows": raw[i],
                "rowcount": raw[i + 2],
                "lastrowid": raw[i + 3],
                "truncated": raw[i + 4],
            }
            for i in range(1, len(raw), _RESULT_FIELDS)
        ]
    CommandResult.decode(data).unwrap()  # raises the command's error (or a ProtocolError)
    raise ProtocolError("malformed result")


def statement(sql: str, params: Sequence[Value] | Mapping[str, Value] | None = None) -> Statement:
    """Build a Statement from the loose shapes callers have (None, list, tuple, mapping)."""
    if params is None:
        return Statement(sql, ())
    if isinstance(params, Mapping):
        return Statement(sql, dict(params))
    return Statement(sql, tuple(params))
