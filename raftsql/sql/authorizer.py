"""SQLite's authorizer as the last line of defence: rules.py enforced inside SQLite itself.

SQLite calls the authorizer while it compiles a statement, for every action the statement
could take: each function it calls, each pragma, table written, trigger body and view it
pulls in (with the trigger or view named in the last argument). That is SQLite's own,
complete view of a statement, and it is identical on every node running the same SQLite,
so a denial here is a deterministic error, never a divergence. Whatever the leader's
classifier missed (it works without the schema) is caught here.

The authorizer only runs when a statement is prepared; apsw's statement cache reuses
prepared statements by SQL text. The state machine therefore gives its own statements a
per-process secret tag so the cache can never hand a user the prepared, authorized form of
an internal statement (see machine.py).
"""

from __future__ import annotations

from enum import Enum

import apsw

from raftsql.errors import ForbiddenSQL
from raftsql.sql import rules

# The authorizer's action codes (sqlite3.h).
_A = apsw.mapping_authorizer_function

CREATE_INDEX = _A["SQLITE_CREATE_INDEX"]
CREATE_TABLE = _A["SQLITE_CREATE_TABLE"]
CREATE_TRIGGER = _A["SQLITE_CREATE_TRIGGER"]
CREATE_VIEW = _A["SQLITE_CREATE_VIEW"]
CREATE_VTABLE = _A["SQLITE_CREATE_VTABLE"]
ATTACH = _A["SQLITE_ATTACH"]
DETACH = _A["SQLITE_DETACH"]
FUNCTION = _A["SQLITE_FUNCTION"]
PRAGMA = _A["SQLITE_PRAGMA"]
READ = _A["SQLITE_READ"]
SAVEPOINT = _A["SQLITE_SAVEPOINT"]
TRANSACTION = _A["SQLITE_TRANSACTION"]

_TEMP_ACTIONS = frozenset(
    _A[name]
    for name in (
        "SQLITE_CREATE_TEMP_INDEX",
        "SQLITE_CREATE_TEMP_TABLE",
        "SQLITE_CREATE_TEMP_TRIGGER",
        "SQLITE_CREATE_TEMP_VIEW",
        "SQLITE_DROP_TEMP_INDEX",
        "SQLITE_DROP_TEMP_TABLE",
        "SQLITE_DROP_TEMP_TRIGGER",
        "SQLITE_DROP_TEMP_VIEW",
    )
)

_WRITE_ACTIONS = (
    frozenset(
        _A[name]
        for name in (
            "SQLITE_ALTER_TABLE",
            "SQLITE_ANALYZE",
            "SQLITE_CREATE_INDEX",
            "SQLITE_CREATE_TABLE",
            "SQLITE_CREATE_TRIGGER",
            "SQLITE_CREATE_VIEW",
            "SQLITE_CREATE_VTABLE",
            "SQLITE_DELETE",
            "SQLITE_DROP_INDEX",
            "SQLITE_DROP_TABLE",
            "SQLITE_DROP_TRIGGER",
            "SQLITE_DROP_VIEW",
            "SQLITE_DROP_VTABLE",
            "SQLITE_INSERT",
            "SQLITE_REINDEX",
            "SQLITE_UPDATE",
        )
    )
    | _TEMP_ACTIONS
)

_MAINTENANCE_ACTIONS = frozenset((_A["SQLITE_ANALYZE"], _A["SQLITE_REINDEX"]))

_OK = apsw.SQLITE_OK
_DENY = apsw.SQLITE_DENY


class Mode(Enum):
    INTERNAL = "internal"
    """The state machine's own bookkeeping: everything is allowed."""
    WRITE = "write"
    """User SQL applied from the log."""
    READ = "read"
    """User SQL run by query(): reads only."""
    EXPLAIN = "explain"
    """An EXPLAIN run by query(): like READ, but the explained statement may be a write,
    since EXPLAIN only compiles it (and the read connection could not write anyway)."""


class Authorizer:
    """A callable for ``Connection.authorizer`` that remembers why it last said no.

    SQLite turns a denial into a bare "not authorized" error; ``denied`` keeps the error
    class and the message naming the construct, so the caller can raise something useful.
    """

    __slots__ = ("denied", "mode")

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.denied: tuple[type[ForbiddenSQL], str] | None = None

    def error(self, fallback: str) -> ForbiddenSQL:
        """The error for the latest denial (``fallback`` is SQLite's message, if none)."""
        if self.denied is None:
            return ForbiddenSQL(fallback)
        cls, message = self.denied
        return cls(message)

    def __call__(
        self, op: int, p1: str | None, p2: str | None, db: str | None, source: str | None
    ) -> int:
        if self.mode is Mode.INTERNAL:
            return _OK
        problem = self._check(op, p1, p2, db)
        if problem is None:
            return _OK
        cls, message = problem
        if source is not None:
            message = f"{message} (in trigger or view {source!r})"
        self.denied = (cls, message)
        return _DENY

    def _check(self, op: int, p1: str | None, p2: str | None, db: str | None) -> rules.Problem:
        writing = self.mode is Mode.WRITE
        if self.mode is Mode.EXPLAIN and op in _WRITE_ACTIONS:
            return None
        if op == FUNCTION:
            return rules.function_problem(p2 or "", writing)
        if op == READ:
            # Table-valued pragmas run their PRAGMA only when stepped; judge them here, at
            # compile time, by the table they read.
            if p1 is not None and (p1.lower() == "dbstat" or p1.lower().startswith("pragma_")):
                return rules.table_function_problem(p1, writing)
            return None
        if op == PRAGMA:
            return rules.pragma_problem(p1 or "", p2, db, writing)
        if op == ATTACH:
            # SQLite reports VACUUM as attaching '' and VACUUM INTO as attaching its file.
            return ForbiddenSQL, (
                rules.ATTACH_OR_VACUUM_INTO_MESSAGE if p1 else rules.VACUUM_MESSAGE
            )
        if op == DETACH:
            return ForbiddenSQL, rules.DETACH_MESSAGE
        if op == TRANSACTION:
            return ForbiddenSQL, rules.TRANSACTION_MESSAGE.format(verb=p1 or "BEGIN")
        if op == SAVEPOINT:
            verb = "SAVEPOINT" if p1 == "BEGIN" else (p1 or "SAVEPOINT")
            return ForbiddenSQL, rules.TRANSACTION_MESSAGE.format(verb=verb)
        if op in _WRITE_ACTIONS:
            if not writing:
                return ForbiddenSQL, (
                    "this is a read-only query: statements that change the database must be "
                    "sent as writes, through the replicated log"
                )
            if op in _TEMP_ACTIONS or (db is not None and db.lower() == "temp"):
                return ForbiddenSQL, rules.TEMP_MESSAGE
            if op == CREATE_VTABLE:
                problem = rules.vtab_problem(p2 or "")
                if problem is not None:
                    return problem
            if op in _MAINTENANCE_ACTIONS:
                return None  # ANALYZE/REINDEX of every table includes ours: harmless
            return rules.internal_name_problem(p1) or rules.internal_name_problem(p2)
        return None
