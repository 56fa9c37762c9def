"""The PEP 249 connection: one client session, and the transaction it holds.

The transaction rules are in the package docstring (``raftsql/dbapi/__init__.py``). In
short: outside autocommit, writes wait here in ``_pending`` and ``commit()`` sends them as
one atomic request; reads run at once. This file is where those rules are kept.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from raftsql import errors
from raftsql.client.client import Client, Result
from raftsql.dbapi import exceptions
from raftsql.dbapi.cursor import Cursor
from raftsql.dbapi.display import ResultSet
from raftsql.dbapi.exceptions import OperationalError, ProgrammingError, from_raftsql
from raftsql.dbapi.types import WireParams

__all__ = ["CONSISTENCY_LEVELS", "Connection"]

CONSISTENCY_LEVELS = ("linearizable", "stale")


@dataclass(frozen=True, slots=True)
class _Held:
    """Which cursor buffered statements ``start:stop`` of the pending transaction, and in
    which of its execute*() calls (so commit() can report their results to it)."""

    cursor: weakref.ref[Cursor]
    operation: int
    start: int
    stop: int


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise raftsql errors as their PEP 249 class, the original kept as ``__cause__``."""
    try:
        yield
    except errors.RaftsqlError as exc:
        raise from_raftsql(exc) from exc


def check_consistency(level: Any) -> str:
    if level not in CONSISTENCY_LEVELS:
        raise ProgrammingError(
            f"unknown consistency {level!r}: use {' or '.join(map(repr, CONSISTENCY_LEVELS))}"
        )
    return str(level)


class Connection:
    """A connection to a raftsql cluster (PEP 249); make one with ``raftsql.connect()``.

    One connection is one client session with one socket: use it from one thread at a time
    (``threadsafety = 1``: share the module between threads, not connections).
    """

    # PEP 249 optional extension: the exception classes as connection attributes, so code
    # holding only a connection can catch its driver's errors.
    Warning = exceptions.Warning
    Error = exceptions.Error
    InterfaceError = exceptions.InterfaceError
    DatabaseError = exceptions.DatabaseError
    DataError = exceptions.DataError
    OperationalError = exceptions.OperationalError
    IntegrityError = exceptions.IntegrityError
    InternalError = exceptions.InternalError
    ProgrammingError = exceptions.ProgrammingError
    NotSupportedError = exceptions.NotSupportedError

    def __init__(
        self, client: Client, *, autocommit: bool = False, consistency: str = "linearizable"
    ) -> None:
        self._client = client
        self._autocommit = bool(autocommit)
        self._consistency = check_consistency(consistency)
        self._closed = False
        self._pending: list[tuple[str, WireParams]] = []
        self._held: list[_Held] = []
        self._in_doubt: int | None = None
        """The session seq of a commit that timed out: its outcome is unknown until a
        commit() resends the same request under the same seq (see commit)."""

    # === attributes ======================================================================

    @property
    def client(self) -> Client:
        """The underlying ``raftsql.client.Client`` (e.g. ``conn.client.status()``)."""
        return self._client

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_transaction(self) -> bool:
        """True while writes are held for commit() (or a timed-out commit is unresolved)."""
        return bool(self._pending) or self._in_doubt is not None

    @property
    def autocommit(self) -> bool:
        """When True, every statement is sent at once as its own atomic request. Setting it
        to True commits what is held first (as sqlite3 does)."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._check_open()
        if value and not self._autocommit:
            self.commit()
        self._autocommit = bool(value)

    @property
    def consistency(self) -> str:
        """The default consistency of this connection's reads: "linearizable" (never
        stale) or "stale" (served locally by whichever node answers; fastest)."""
        return self._consistency

    @consistency.setter
    def consistency(self, value: str) -> None:
        self._consistency = check_consistency(value)

    # === PEP 249 =========================================================================

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def commit(self) -> None:
        """Send the held writes as ONE atomic request: all applied, exactly once, or none.

        On an SQL error nothing is applied, the transaction is over (the held writes are
        dropped) and the error names the failing statement. On a timeout the outcome is
        unknown: the writes stay held, and calling commit() again resends the same request
        under the same session seq, so the cluster applies it at most once and answers
        with its first result; rollback() gives up instead (it may have been applied).
        """
        self._check_open()
        if not self._pending:
            return
        seq = self._in_doubt if self._in_doubt is not None else self._client.next_seq()
        stmts = list(self._pending)
        try:
            results = self._client.write_with_seq(seq, stmts, atomic=True)
        except errors.RequestTimeout as exc:
            self._in_doubt = seq
            raise OperationalError(
                f"commit() timed out and its outcome is unknown ({exc.message}); call "
                "commit() again to learn it (the writes are applied at most once) or "
                "rollback() to give up",
                raftsql_error=exc,
            ) from exc
        except errors.RaftsqlError as exc:
            self._forget()
            raise from_raftsql(exc, _where(exc, stmts)) from exc
        held = self._held
        self._forget()
        for h in held:
            cursor = h.cursor()
            if cursor is not None:
                cursor._committed(h.operation, results[h.start : h.stop])

    def rollback(self) -> None:
        """Drop the held writes; nothing of them reaches the cluster."""
        self._check_open()
        self._forget()

    def close(self) -> None:
        """Drop the held writes (PEP 249: closing without commit() rolls back) and close
        the socket. Closing twice is fine; any other later use raises ProgrammingError."""
        if self._closed:
            return
        self._forget()
        self._closed = True
        self._client.close()

    def __enter__(self) -> Connection:
        self._check_open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """``with conn:`` commits if the block succeeded and rolls back if it raised, as
        sqlite3 does. It does not close the connection."""
        if exc_type is None:
            self.commit()
        elif not self._closed:
            self.rollback()

    # === sqlite3-style shortcuts (extensions) ============================================

    def execute(
        self, operation: str, parameters: Any = None, *, consistency: str | None = None
    ) -> Cursor:
        """``cursor().execute(...)``: a new cursor, returned for fetching."""
        return self.cursor().execute(operation, parameters, consistency=consistency)

    def executemany(self, operation: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        return self.cursor().executemany(operation, seq_of_parameters)

    def query(self, sql: str, params: Any = (), consistency: str | None = None) -> ResultSet:
        """Run ``sql`` and return its rows as a :class:`ResultSet` (an HTML table in a
        notebook; ``.df()`` for pandas). A statement without a result set gives an empty
        ResultSet. The usual transaction rules apply (see ``execute``)."""
        cur = self.execute(sql, params, consistency=consistency)
        try:
            if cur.description is None:
                return ResultSet([], [])
            return ResultSet([d[0] for d in cur.description], cur.fetchall())
        finally:
            cur.close()

    # === for Cursor ======================================================================

    def _check_open(self) -> None:
        if self._closed:
            raise ProgrammingError("cannot use a closed connection")

    def _level(self, consistency: str | None) -> str:
        return self._consistency if consistency is None else check_consistency(consistency)

    def _execute_now(self, sql: str, params: WireParams, level: str) -> Result:
        """Autocommit: the server decides read or write and applies a write at once."""
        with _translated():
            return self._client.execute(sql, params, consistency=level)

    def _read_now(self, sql: str, params: WireParams, level: str) -> Result:
        """The read path, which never writes (the server refuses a write sent here)."""
        with _translated():
            return self._client.query(sql, params, consistency=level)

    def _write_now(self, stmts: Sequence[tuple[str, WireParams]]) -> list[Result]:
        with _translated():
            return self._client.write(stmts, atomic=True)

    def _hold(self, cursor: Cursor, operation: int, stmts: list[tuple[str, WireParams]]) -> None:
        if self._in_doubt is not None:
            raise OperationalError(
                "the last commit() timed out and its outcome is unknown: call commit() "
                "again to learn it, or rollback() to give up, before writing more"
            )
        start = len(self._pending)
        self._pending.extend(stmts)
        self._held.append(_Held(weakref.ref(cursor), operation, start, len(self._pending)))

    def _forget(self) -> None:
        self._pending = []
        self._held = []
        self._in_doubt = None


def _where(exc: errors.RaftsqlError, stmts: Sequence[tuple[str, Any]]) -> str:
    """The error's message, plus which held statement failed (the server reports its
    index in the request), so a failed commit() points at the write that caused it."""
    index = exc.details.get("statement")
    if not isinstance(index, int) or not 0 <= index < len(stmts) or len(stmts) == 1:
        return exc.message
    sql = " ".join(stmts[index][0].split())
    if len(sql) > 80:
        sql = sql[:77] + "..."
    return f"{exc.message} (statement {index + 1} of {len(stmts)} in this commit: {sql})"
