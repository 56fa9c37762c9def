"""The PEP 249 cursor: runs statements through its connection and holds one result set.

A cursor keeps no socket or server-side state: every result arrives whole (the cluster
answers a read with all its rows), so fetching never talks to the cluster, and closing a
cursor only forgets its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from raftsql.client.client import Result
from raftsql.dbapi.exceptions import NotSupportedError, ProgrammingError
from raftsql.dbapi.sqltext import Kind, classify
from raftsql.dbapi.types import WireParams, adapt_parameters, type_code_of

if TYPE_CHECKING:
    from raftsql.dbapi.connection import Connection

__all__ = ["Cursor", "Description"]

Description = tuple[tuple[str, type | None, None, None, None, None, None], ...]

_RETURNING_IN_TRANSACTION = (
    "RETURNING needs its rows at once, but outside autocommit writes are held until "
    "commit(): run it on a connection with autocommit=True (it is then its own atomic "
    "request), or drop the RETURNING clause"
)


class Cursor:
    """Runs statements and fetches their rows (PEP 249).

    ``rowcount`` is the number of rows a write changed, or for a query the number of rows
    it returned, and -1 when not known (DDL, or a write still held in a transaction).
    ``lastrowid`` is the rowid an INSERT/REPLACE inserted, else None. Outside autocommit a
    write is held until ``commit()``; if this cursor issued nothing since, ``commit()``
    fills in its ``rowcount`` and ``lastrowid`` from the applied result.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.arraysize = 1
        """How many rows fetchmany() returns by default (PEP 249)."""
        self._closed = False
        self._operation = 0
        """Counts execute*() calls, so a commit() updates only a cursor that has not run
        anything else since it buffered its writes."""
        self._reset()

    # === attributes ======================================================================

    @property
    def connection(self) -> Connection:
        """The connection this cursor belongs to (a PEP 249 extension)."""
        return self._connection

    @property
    def description(self) -> Description | None:
        """One 7-tuple per result column: (name, type_code, None, None, None, None, None);
        None when the last statement produced no result set."""
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    @property
    def closed(self) -> bool:
        return self._closed

    # === running statements ==============================================================

    def execute(
        self, operation: str, parameters: Any = None, *, consistency: str | None = None
    ) -> Cursor:
        """Run one statement; returns the cursor, so ``cur.execute(...).fetchall()`` works.

        ``consistency`` ("linearizable" or "stale") overrides the connection's default for
        this statement if it reads (an extension). Outside autocommit, a write is held
        until commit() and a read runs at once, without seeing the held writes.
        """
        conn = self._check_open()
        sql = _check_sql(operation)
        params = adapt_parameters(parameters)
        level = conn._level(consistency)
        self._reset()
        info = classify(sql)
        if conn.autocommit:
            self._set_results([conn._execute_now(sql, params, level)])
        elif info.kind is Kind.WRITE:
            if info.returning:
                raise NotSupportedError(_RETURNING_IN_TRANSACTION)
            _check_parameters(info.param_style, info.param_count, info.param_names, params)
            conn._hold(self, self._operation, [(sql, params)])
        else:
            # Reads, and whatever the driver cannot place, go down the read path: it never
            # writes, so an unknown statement gets the server's verdict now (or its rows)
            # and can never be applied outside the transaction.
            self._set_results([conn._read_now(sql, params, level)])
        return self

    def executemany(self, operation: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        """Run a write once per set of parameters, as ONE atomic request: all applied or
        none, in one round trip (outside autocommit, all are held until commit())."""
        conn = self._check_open()
        sql = _check_sql(operation)
        all_params = [adapt_parameters(p) for p in seq_of_parameters]
        info = classify(sql)
        self._reset()
        if info.kind is Kind.READ:
            raise ProgrammingError(
                "executemany() runs statements that change data; use execute() for queries"
            )
        if not all_params:
            self._rowcount = 0
            return self
        stmts = [(sql, params) for params in all_params]
        if conn.autocommit:
            self._set_results(conn._write_now(stmts))
            return self
        if info.kind is Kind.UNKNOWN:
            conn._read_now(sql, all_params[0], conn.consistency)  # the server's error, or:
            raise ProgrammingError(
                "executemany() runs statements that change data; use execute() for queries"
            )
        if info.returning:
            raise NotSupportedError(_RETURNING_IN_TRANSACTION)
        for params in all_params:
            _check_parameters(info.param_style, info.param_count, info.param_names, params)
        conn._hold(self, self._operation, stmts)
        return self

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Any:
        """SQLite has no stored procedures."""
        self._check_open()
        raise NotSupportedError("raftsql (SQLite) has no stored procedures")

    def nextset(self) -> None:
        """There is never more than one result set: None, as PEP 249 says for "no more"."""
        self._check_open()
        return None

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows it): values are sent as they are."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows it): results arrive whole."""

    # === fetching ========================================================================

    def fetchone(self) -> tuple[Any, ...] | None:
        self._check_result()
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        self._check_result()
        n = self.arraysize if size is None else size
        rows = self._rows[self._position : self._position + max(n, 0)]
        self._position += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._check_result()
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # === lifetime ========================================================================

    def close(self) -> None:
        """Forget the rows; any later use raises ProgrammingError. Closing twice is fine."""
        self._closed = True
        self._reset()

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # === plumbing ========================================================================

    def _check_open(self) -> Connection:
        if self._closed:
            raise ProgrammingError("cannot use a closed cursor")
        self._connection._check_open()
        return self._connection

    def _check_result(self) -> None:
        self._check_open()
        if self._description is None:
            raise ProgrammingError(
                "no result set to fetch from: the last statement returned no rows "
                "(or nothing was executed yet)"
            )

    def _reset(self) -> None:
        self._operation += 1
        self._rows: list[tuple[Any, ...]] = []
        self._position = 0
        self._description: Description | None = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    def _set_results(self, results: Sequence[Result]) -> None:
        """Show the results of one execute*() call (one Result per statement)."""
        self._rows = [row for r in results for row in r.rows]
        self._position = 0
        columns = next((r.columns for r in results if r.columns), None)
        self._description = (
            None
            if columns is None
            else tuple(
                (name, type_code_of(self._rows, i), None, None, None, None, None)
                for i, name in enumerate(columns)
            )
        )
        counts = [r.rowcount for r in results]
        if counts and all(c >= 0 for c in counts):
            self._rowcount = sum(counts)
        elif columns is not None:
            self._rowcount = len(self._rows)
        else:
            self._rowcount = -1
        self._lastrowid = results[-1].lastrowid if results else None

    def _committed(self, operation: int, results: Sequence[Result]) -> None:
        """A commit() applied the writes this cursor held for ``operation``: report their
        rowcount and lastrowid, unless the cursor has moved on to something else since."""
        if not self._closed and operation == self._operation:
            self._set_results(results)


def _check_sql(operation: Any) -> str:
    if not isinstance(operation, str):
        kind = type(operation).__name__
        raise ProgrammingError(f"the operation must be a str of SQL, not {kind}")
    return operation


def _check_parameters(style: str, count: int, names: tuple[str, ...], params: WireParams) -> None:
    """The server's parameter checks, done early for a write that is held until commit():
    a wrong count should fail at execute(), where the mistake is, not at commit()."""
    if style == "mixed":
        raise ProgrammingError(
            "this statement mixes positional (?) and named (:name) parameters; use one style"
        )
    if style == "named":
        if not isinstance(params, dict):
            raise ProgrammingError(
                f"this statement uses named parameters ({', '.join(':' + n for n in names)}): "
                "pass a mapping"
            )
        missing = [name for name in names if name not in params]
        if missing:
            raise ProgrammingError(
                f"missing value for named parameter {', '.join(':' + n for n in missing)}"
            )
        return
    if isinstance(params, dict):
        if params or style == "qmark":
            raise ProgrammingError(
                "this statement uses positional (?) parameters: pass a sequence, not a mapping"
                if style == "qmark"
                else "this statement takes no parameters, but a mapping was given"
            )
        return
    if len(params) != count:
        raise ProgrammingError(
            f"this statement takes {count} parameter{'' if count == 1 else 's'}, "
            f"{len(params)} given"
        )
