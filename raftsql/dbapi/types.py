"""PEP 249 type objects and constructors, and how Python values become SQLite values.

SQLite stores five kinds of value: NULL, 64-bit integers, floats, text and blobs. Those go
to the cluster unchanged. A few other Python types are converted here, before sending,
the way sqlite3 does it (so the stored text is what sqlite3 users know, and SQLite's own
date functions understand it):

- ``bool`` -> 0 / 1
- ``datetime.date`` -> ``"YYYY-MM-DD"``; ``datetime.datetime`` -> ``"YYYY-MM-DD
  HH:MM:SS[.ffffff][+HH:MM]"`` (a space, like CURRENT_TIMESTAMP, so text comparisons with
  it work); ``datetime.time`` -> ``"HH:MM:SS[.ffffff]"``
- ``decimal.Decimal`` -> its exact text (``str(value)``): no binary rounding; the column's
  affinity decides how SQLite stores it (a NUMERIC/REAL column turns it into a number, a
  TEXT or untyped column keeps the exact text: read it back with ``Decimal(value)``)
- ``bytearray`` / ``memoryview`` -> ``bytes``; subclasses of int/float/str/bytes (IntEnum,
  StrEnum ...) -> their base value

Values come back as SQLite returns them (dates as text), as with sqlite3 without
``detect_types``. Anything else is a ProgrammingError naming the parameter, raised before
anything is sent; an integer beyond 64 bits is a DataError.
"""

from __future__ import annotations

import datetime
import decimal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from raftsql.dbapi.exceptions import DataError, ProgrammingError

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "DBAPITypeObject",
    "Date",
    "DateFromTicks",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "WireParams",
    "WireValue",
    "adapt_parameters",
    "type_code_of",
]

WireValue = None | int | float | str | bytes
WireParams = list[WireValue] | dict[str, WireValue]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# --- constructors ---------------------------------------------------------------------------

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    """The local date at ``ticks`` seconds since the epoch."""
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    """The local time of day at ``ticks`` seconds since the epoch."""
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    """The local date and time at ``ticks`` seconds since the epoch."""
    return Timestamp(*time.localtime(ticks)[:6])


# --- type objects ---------------------------------------------------------------------------


class DBAPITypeObject:
    """A PEP 249 type object: compares equal to every type code of its kind.

    A cursor's ``description`` carries as type code the Python type of the column's first
    non-NULL value (``int``, ``float``, ``str``, ``bytes``), or None when the column has no
    such value: results carry values, not declared types. So ``NUMBER == int`` and
    ``STRING == str`` hold; DATETIME never matches a result column, because SQLite returns
    dates as text (their type code is ``str``).
    """

    def __init__(self, name: str, *codes: type) -> None:
        self.name = name
        self.codes = frozenset(codes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return self is other
        return other in self.codes

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return self.name


STRING = DBAPITypeObject("STRING", str)
BINARY = DBAPITypeObject("BINARY", bytes)
NUMBER = DBAPITypeObject("NUMBER", int, float)
DATETIME = DBAPITypeObject("DATETIME", datetime.date, datetime.datetime, datetime.time)
ROWID = DBAPITypeObject("ROWID", int)


def type_code_of(rows: Sequence[Sequence[Any]], column: int) -> type | None:
    """The type code of a result column: its first non-NULL value's type."""
    for row in rows:
        value = row[column]
        if value is not None:
            return type(value)
    return None


# --- parameters -----------------------------------------------------------------------------


def adapt_parameters(params: Any) -> WireParams:
    """``params`` (a sequence for ``?``, a mapping for ``:name``) as SQLite values."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: dict[str, WireValue] = {}
        for key, value in params.items():
            if not isinstance(key, str):
                raise ProgrammingError(f"parameter names must be strings, not {key!r}")
            out[key] = adapt_value(value, f":{key}")
        return out
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
        raise ProgrammingError(
            f"parameters must be a sequence (for ?) or a mapping (for :name), "
            f"not {type(params).__name__}"
        )
    return [adapt_value(value, f"#{i + 1}") for i, value in enumerate(params)]


def adapt_value(value: Any, where: str) -> WireValue:
    """One parameter as a SQLite value (see the module docstring), or an error."""
    kind = type(value)
    if value is None or kind is str or kind is bytes or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise DataError(f"parameter {where}: {value} does not fit in SQLite's 64-bit integer")
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return int(value)
    if isinstance(value, datetime.datetime):  # before date: a datetime is a date
        return value.isoformat(" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, int):
        return adapt_value(int(value), where)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(value)
    raise ProgrammingError(
        f"parameter {where} has unsupported type {kind.__name__}: use None, int, float, str, "
        "bytes, bool, datetime.date/time/datetime or decimal.Decimal"
    )
