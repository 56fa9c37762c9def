"""raftsql: a replicated SQL database. SQLite statements replicated through Raft.

The package is also its DB-API 2.0 (PEP 249) module, like ``sqlite3``::

    import raftsql
    conn = raftsql.connect("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")

The driver lives in ``raftsql.dbapi`` (see its docstring for the transaction rules); its
public names are re-exported here so that ``raftsql`` itself carries ``apilevel``,
``threadsafety``, ``paramstyle``, ``connect``, the exceptions and the type constructors.
"""

from raftsql.dbapi import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Connection,
    Cursor,
    DatabaseError,
    DataError,
    Date,
    DateFromTicks,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    Warning,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)

__version__ = "0.1.0"

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
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "__version__",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
