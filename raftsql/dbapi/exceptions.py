"""PEP 249's exception hierarchy, and how raftsql's own errors map onto it.

The classes are new ones deriving from ``Exception`` exactly as PEP 249 draws them, rather
than subclasses of ``raftsql.errors``: those classes register wire codes, and a driver
class is not a wire error. The raftsql error that caused one is kept twice: as
``__cause__`` (tracebacks show it) and as ``raftsql_error`` (programs can test its class or
read its ``details``, e.g. the leader's address).

Mapping (sqlite3's conventions where PEP 249 leaves a choice, so code written for sqlite3
catches the same classes):

- ConstraintError -> IntegrityError
- SQLError (syntax errors, no such table, SQLite's run-time errors) -> OperationalError,
  as sqlite3 does
- ForbiddenSQL, NonDeterministicSQL (valid SQLite that cannot replicate: ATTACH, BEGIN,
  connection PRAGMAs, changes() ...) -> NotSupportedError
- ParameterError (wrong count, missing name, unsupported type) -> ProgrammingError
- NotLeaderError, UnavailableError, RequestTimeout (the cluster, not the program) ->
  OperationalError
- ProtocolError, StaleRequest (client and server disagree about the protocol) ->
  InterfaceError
- InternalError (a bug or failure inside a node) -> InternalError
- anything else (a code this driver does not know) -> DatabaseError
"""

from __future__ import annotations

from raftsql import errors

__all__ = [
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Warning",
    "from_raftsql",
]


class Warning(Exception):
    """Important warnings (PEP 249 names it so, shadowing the builtin inside this module).
    The driver raises none today."""


class Error(Exception):
    """Base of every error the driver raises (PEP 249).

    ``raftsql_error`` is the raftsql error behind it, or None when the driver itself found
    the problem (a closed cursor, a parameter of an unsupported type ...).
    """

    def __init__(self, message: str = "", raftsql_error: errors.RaftsqlError | None = None):
        super().__init__(message)
        self.raftsql_error = raftsql_error


class InterfaceError(Error):
    """A problem with the driver or the wire protocol rather than the database."""


class DatabaseError(Error):
    """A problem reported by the database."""


class DataError(DatabaseError):
    """A value out of range for SQLite (an integer beyond 64 bits)."""


class OperationalError(DatabaseError):
    """SQL that SQLite could not run, or the cluster could not serve the request (no
    leader, no quorum, timeout)."""


class IntegrityError(DatabaseError):
    """A constraint failed (UNIQUE, NOT NULL, CHECK, FOREIGN KEY); nothing was applied."""


class InternalError(DatabaseError):
    """A failure inside a node; the request may be retried."""


class ProgrammingError(DatabaseError):
    """Wrong use of the API: bad parameters, a closed cursor or connection, a bad DSN."""


class NotSupportedError(DatabaseError):
    """Something raftsql does not do: SQL that cannot replicate, callproc, RETURNING
    inside a transaction."""


_MAPPING: tuple[tuple[type[errors.RaftsqlError], type[Error]], ...] = (
    (errors.ConstraintError, IntegrityError),
    (errors.SQLError, OperationalError),
    (errors.ForbiddenSQL, NotSupportedError),
    (errors.ParameterError, ProgrammingError),
    (errors.NotLeaderError, OperationalError),
    (errors.UnavailableError, OperationalError),
    (errors.RequestTimeout, OperationalError),
    (errors.ProtocolError, InterfaceError),
    (errors.InternalError, InternalError),
)


def from_raftsql(exc: errors.RaftsqlError, message: str | None = None) -> Error:
    """The PEP 249 exception for ``exc`` (raise it ``from exc``); ``message`` replaces the
    text when the driver has something to add (which statement of a commit failed)."""
    cls: type[Error] = DatabaseError
    for source, target in _MAPPING:  # most specific first: ConstraintError before SQLError
        if isinstance(exc, source):
            cls = target
            break
    return cls(exc.message if message is None else message, raftsql_error=exc)
