"""raftsql's DB-API 2.0 (PEP 249) driver; ``import raftsql`` gives the same names.

```python
import raftsql

conn = raftsql.connect("raftsql://127.0.0.1:7001,127.0.0.1:7002")  # or no argument
with conn:                                   # commits on success, rolls back on error
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, x TEXT)")
    cur.executemany("INSERT INTO t (x) VALUES (?)", [("a",), ("b",)])
print(conn.execute("SELECT id, x FROM t").fetchall())
```

Transactions
------------

A raftsql transaction is one replicated request: the statements in it are applied
together, all or nothing, exactly once (the connection is a client session that numbers
its requests, so a retry can never apply them twice). The driver builds such a request:

- **Outside autocommit (the default, as PEP 249 asks)**, writes executed on any cursor of
  the connection (INSERT, UPDATE, DELETE, REPLACE, CREATE, DROP, ALTER, ``PRAGMA
  user_version = n`` ...) are not sent: the connection holds them. ``commit()`` sends them
  all as ONE atomic request; ``rollback()`` (or ``close()``) drops them and nothing reaches
  the cluster. ``with conn:`` commits when the block succeeds and rolls back when it
  raises (it does not close the connection, as with sqlite3).
- **A statement that fails at commit() fails the whole commit**: nothing is applied, the
  transaction is over, and the error (IntegrityError for a constraint, ...) names the
  failing statement. Parameter mistakes (a wrong count, a missing name, a value of an
  unsupported type) are caught at ``execute()`` already; SQL errors that need the schema
  (no such table, a constraint) only show at ``commit()``.
- **Reads run at once**, at the connection's consistency, against the cluster's committed
  data. They do NOT see the writes the transaction holds: ``INSERT`` then ``SELECT`` in the
  same transaction does not return the new row until after ``commit()``. Read before you
  write, or commit first, or use autocommit.
- **Results of held writes come at commit()**: until then ``rowcount`` is -1 and
  ``lastrowid`` is None. ``commit()`` then fills them in on each cursor that issued writes
  and has not executed anything since (for ``executemany``, ``rowcount`` is the total and
  ``lastrowid`` that of the last row).
- **RETURNING inside a transaction raises NotSupportedError**: its rows would only exist
  after commit(). Run it in autocommit mode, where it is its own atomic request.
- **A timed-out commit** (OperationalError; the cluster may or may not have applied it)
  keeps the writes held: calling ``commit()`` again resends the same request under the
  same session number, so it is applied at most once and the answer says what happened;
  ``rollback()`` gives up. Until one of the two, further writes raise OperationalError.
- **Statements the driver cannot classify** (``BEGIN``, ``ATTACH``, misspelled SQL ...)
  are sent at once, even in a transaction, down the read path, which never writes: you
  get the server's error immediately (NotSupportedError, OperationalError) instead of at
  commit(), and nothing can be applied outside the transaction by mistake.
- **With ``autocommit=True``** every ``execute()`` is sent at once as its own atomic
  request and ``rowcount``, ``lastrowid`` and RETURNING rows are real. Setting
  ``conn.autocommit = True`` commits whatever is held first.

``executemany()`` is always one request, never one round trip per row: all rows are
applied or none (in autocommit at once, otherwise at commit()).

Reads and consistency
---------------------

``conn.consistency`` ("linearizable", the default: never stale; or "stale": served by
whichever node answers, fastest) applies to every read; ``cursor.execute(sql, params,
consistency="stale")`` overrides it for one statement. Also settable as
``connect(consistency=...)`` or ``raftsql://...?consistency=stale``.

Module globals
--------------

- ``apilevel = "2.0"``.
- ``threadsafety = 1``: threads may share the module but not connections. A connection is
  one client session over one socket, with one request in flight and numbered requests;
  two threads on one connection would interleave them. Open a connection per thread.
- ``paramstyle = "qmark"`` (``WHERE x = ?`` with a sequence). Named parameters (``:name``,
  ``@name``, ``$name`` with a mapping) are accepted too, as in sqlite3.
- Parameters: None, int, float, str, bytes as they are; bool as 0/1; date, time, datetime
  as ISO text (like sqlite3: ``"2024-05-01"``, ``"2024-05-01 12:30:00"``); Decimal as its
  exact text (the column's affinity decides whether SQLite keeps it as text). Anything
  else raises ProgrammingError, and an integer beyond 64 bits DataError, before anything is
  sent. Results come back as SQLite stores them (dates as text, as sqlite3 does without
  ``detect_types``).

Errors (``raftsql.errors`` -> PEP 249, sqlite3's conventions)
-------------------------------------------------------------

ConstraintError -> IntegrityError; SQLError (syntax, no such table ...) ->
OperationalError; ForbiddenSQL and NonDeterministicSQL (SQL that cannot replicate) ->
NotSupportedError; ParameterError -> ProgrammingError; NotLeaderError, UnavailableError,
RequestTimeout -> OperationalError; ProtocolError -> InterfaceError; InternalError ->
InternalError. The raftsql error is kept as ``__cause__`` and as ``.raftsql_error``. Using
a closed connection or cursor raises ProgrammingError (as sqlite3 does); ``callproc()``
raises NotSupportedError; ``nextset()`` returns None (there is one result set).
"""

from __future__ import annotations

from raftsql.dbapi.connect import connect
from raftsql.dbapi.connection import Connection
from raftsql.dbapi.cursor import Cursor
from raftsql.dbapi.display import ResultSet
from raftsql.dbapi.exceptions import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from raftsql.dbapi.types import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
)

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "ResultSet",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
