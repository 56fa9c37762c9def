"""The errors a raftsql user can see, and their wire form.

Errors cross the network (a follower answers for the leader, a state machine's error result
travels back to the client inside an encoded result), so every error has a stable ``code``
string and round-trips through ``to_wire()`` / ``error_from_wire()`` as a small dict of
plain values. The client re-raises the decoded error; the DB-API module maps the classes
onto PEP 249 (SQLError -> DatabaseError/OperationalError, ConstraintError ->
IntegrityError, ForbiddenSQL/ParameterError -> ProgrammingError, and so on).

Codes are part of the protocol: never rename one. Add new classes with new codes. A peer
that receives a code it does not know still gets a RaftsqlError carrying that code and its
message, so older clients degrade instead of failing to decode.

Errors compare equal when class, code, message and details agree: results holding errors
are compared across nodes and in tests, and identity comparison would make that useless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

_REGISTRY: dict[str, type[RaftsqlError]] = {}


class RaftsqlError(Exception):
    """Base of every user-facing raftsql error.

    ``details`` holds extra structured facts (wire-safe plain values) such as the index of
    the failing statement or the leader's address; they travel with the error.
    """

    code: ClassVar[str] = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must define its own wire code")
        if cls.code in _REGISTRY:
            raise TypeError(f"wire code {cls.code!r} is already used by {_REGISTRY[cls.code]}")
        _REGISTRY[cls.code] = cls

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.details.items())
        return f"{type(self).__name__}({self.message!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RaftsqlError):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.code == other.code
            and self.message == other.message
            and self.details == other.details
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling passes only args, which would drop the details.
        return (_rebuild, (type(self), self.code, self.message, self.details))

    def to_wire(self) -> dict[str, Any]:
        """The error as a plain dict ``{"code", "message", **details}`` for CBOR."""
        wire: dict[str, Any] = {"code": self.code, "message": self.message}
        wire.update(self.details)
        return wire


def _rebuild(
    cls: type[RaftsqlError], code: str, message: str, details: dict[str, Any]
) -> RaftsqlError:
    err = cls(message, **details)
    if err.code != code:
        err.code = code  # type: ignore[misc]  # an unknown code kept on a base instance
    return err


def error_from_wire(wire: Mapping[str, Any]) -> RaftsqlError:
    """Rebuild an error from ``to_wire()`` output. Unknown codes give a RaftsqlError that
    keeps the code; a malformed dict gives a ProtocolError saying so."""
    if not isinstance(wire, Mapping):
        return ProtocolError(f"malformed error on the wire: {wire!r}")
    code = wire.get("code")
    message = wire.get("message", "")
    if not isinstance(code, str) or not isinstance(message, str):
        return ProtocolError(f"malformed error on the wire: {dict(wire)!r}")
    details = {k: v for k, v in wire.items() if k not in ("code", "message")}
    if not all(isinstance(k, str) for k in details):
        return ProtocolError(f"malformed error details on the wire: {dict(wire)!r}")
    cls = _REGISTRY.get(code)
    if cls is None:
        return _rebuild(RaftsqlError, code, message, details)
    return cls(message, **details)


# --- SQL errors ---------------------------------------------------------------------------


class SQLError(RaftsqlError):
    """Invalid SQL, or SQLite refused it while running (the message is SQLite's own)."""

    code = "sql_error"


class ConstraintError(SQLError):
    """A constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY, RAISE in a trigger) failed; the
    whole request was rolled back."""

    code = "constraint"


class ForbiddenSQL(RaftsqlError):
    """Valid SQLite that cannot be replicated safely (ATTACH, PRAGMAs that change the
    connection, TEMP objects, transaction statements, load_extension ...). The message
    names the construct and why."""

    code = "forbidden_sql"


class NonDeterministicSQL(ForbiddenSQL):
    """SQL whose result would depend on the node rather than on the data (changes(),
    last_insert_rowid(), sqlite_version() in a write ...). random() and 'now' are not in
    this class: the state machine pins them so that every node agrees."""

    code = "nondeterministic_sql"


class ParameterError(RaftsqlError):
    """Parameters that do not fit the statement: wrong count, missing names, wrong style,
    or a value of a type SQLite cannot store."""

    code = "parameter"


# --- Cluster and protocol errors -------------------------------------------------------------


class NotLeaderError(RaftsqlError):
    """This node cannot serve the request because it is not the leader. ``leader_id`` and
    ``leader_addr`` (details, may be None) say whom to ask instead."""

    code = "not_leader"

    @property
    def leader_id(self) -> int | None:
        value = self.details.get("leader_id")
        return value if isinstance(value, int) else None

    @property
    def leader_addr(self) -> str | None:
        value = self.details.get("leader_addr")
        return value if isinstance(value, str) else None


class UnavailableError(RaftsqlError):
    """The cluster cannot serve the request now (no quorum, node shutting down, overloaded:
    backpressure). Safe to retry later with the same session and seq."""

    code = "unavailable"


class RequestTimeout(RaftsqlError):
    """The request did not finish in time. A write may still be applied later: retry with
    the same session and seq to learn its outcome exactly once."""

    code = "timeout"


class ProtocolError(RaftsqlError):
    """A malformed frame or command, or a request that breaks the session rules."""

    code = "protocol"


class StaleRequest(ProtocolError):
    """The request's seq is older than the last one applied for its session, so its result
    is no longer kept. Clients send increasing seqs with one request outstanding per
    session; this means a very late duplicate or a client bug."""

    code = "stale_request"


class InternalError(RaftsqlError):
    """A bug or an unexpected failure inside a node; the request may be retried."""

    code = "internal"


__all__ = [
    "ConstraintError",
    "ForbiddenSQL",
    "InternalError",
    "NonDeterministicSQL",
    "NotLeaderError",
    "ParameterError",
    "ProtocolError",
    "RaftsqlError",
    "RequestTimeout",
    "SQLError",
    "StaleRequest",
    "UnavailableError",
    "error_from_wire",
]
