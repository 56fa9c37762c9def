"""A SQLAlchemy (>= 2.0) dialect for raftsql: ``create_engine("raftsql://...")``.

Install with the ``sqlalchemy`` extra (``pip install raftsql[sqlalchemy]``); the dialect is
registered under the name ``raftsql`` through an entry point. It is SQLAlchemy's SQLite
dialect (raftsql nodes run SQLite) driven through raftsql's DB-API module, so SQL, types
and reflection are SQLite's.

URLs
----

- ``raftsql://`` alone: the embedded local cluster (``~/.raftsql/local``), as
  ``raftsql.connect()`` with no argument.
- ``raftsql://host:port``: one node (any node: the client finds the leader).
- ``raftsql:///?hosts=h1:p1,h2:p2,h3:p3``: several nodes. SQLAlchemy's URL parser cannot
  read a comma-separated host list in the host part (``raftsql://h1:p1,h2:p2`` fails in
  ``make_url`` before any dialect code runs), so give the list as ``hosts=``, or combine
  ``raftsql://h1:p1/?hosts=h2:p2,h3:p3``, or use this module's :func:`create_engine` /
  :func:`make_url`, which accept the ``raftsql://h1:p1,h2:p2?...`` form as well.
- Options: ``consistency=stale|linearizable``, ``timeout=<seconds>``, ``autocommit=true``.

Transactions
------------

The driver's transaction rules apply unchanged (see ``raftsql.dbapi``): outside
autocommit, writes are held and ``COMMIT`` sends them as ONE atomic, exactly-once request;
reads run at once and do not see the transaction's held writes. So ``with engine.begin()
as conn:`` is atomic, and ``DataFrame.to_sql`` (DROP + CREATE + executemany in one
SQLAlchemy transaction) is a single request. SAVEPOINT (``begin_nested()``) is not
supported. ``isolation_level="AUTOCOMMIT"`` (engine-wide, or per connection with
``conn.execution_options(isolation_level="AUTOCOMMIT")``) maps to the driver's
``autocommit``: every statement is its own atomic request, and ``lastrowid``, ``rowcount``
and RETURNING are available at once. The transactional level is reported as
``SERIALIZABLE`` (the replicated log applies requests one at a time).

ORM recipe
----------

Inside a driver transaction the id of an inserted row is unknown until commit (lastrowid
is None and RETURNING is refused), but the ORM needs it at flush time for an
autoincrement primary key. Two configurations work:

1. Autoincrement keys: use an autocommit engine for the Session::

       engine = create_engine("raftsql:///?hosts=h1:p1,h2:p2", isolation_level="AUTOCOMMIT")
       with Session(engine) as session:
           session.add(User(name="ada"))
           session.commit()          # the INSERT ran (and got its id) at flush

   Each statement of a flush is its own atomic request, so a flush that writes several
   tables is NOT atomic as a whole, and ``session.rollback()`` cannot undo what was
   flushed. Reading back your own writes works (they are committed).

2. Atomic units of work: keep the default (transactional) engine and give the rows their
   primary keys on the client (``default=lambda: uuid4().hex``, an explicit id, or any
   natural key). The ORM then needs nothing back from the INSERT, and
   ``session.commit()`` sends the whole flush as one atomic request. Note that within
   such a session, queries do not see rows flushed but not yet committed.

An autoincrement key on a transactional engine fails at flush: a single-row flush with
``FlushError: ... has a NULL identity key`` (lastrowid is None), a multi-row flush with
``NotSupportedError: RETURNING needs its rows at once ...``.

Limits
------

- Row counts of held writes are -1 until commit, so the dialect declares
  ``supports_sane_rowcount = False``: the ORM does not check UPDATE/DELETE counts at flush
  (no StaleDataError, and ``version_id_col`` cannot be verified), and
  ``DataFrame.to_sql`` returns -1 on a transactional engine.
- No SAVEPOINT / ``begin_nested()`` (NotImplementedError), no ``REGEXP`` (sqlite3's
  Python regexp function does not exist on the nodes), no TEMP tables, no ATTACH: the
  only schema is ``main``. Tables named ``_raftsql_*`` (internal) are not reflected.
- Dates, times and Decimals are stored as text, as with SQLAlchemy's SQLite dialect.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy
from sqlalchemy import exc, pool, util
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import URL, default

__all__ = ["RaftsqlDialect", "create_engine", "make_url"]

_INTERNAL_PREFIX = "_raftsql_"
_OPTIONS = ("consistency", "timeout", "autocommit")


def make_url(dsn: str | URL) -> URL:
    """A SQLAlchemy URL for ``dsn``, which may list several hosts in the host part
    (``raftsql://h1:p1,h2:p2?consistency=stale``): those move to the ``hosts=`` option."""
    if isinstance(dsn, URL):
        return dsn
    scheme, sep, rest = dsn.strip().partition("://")
    if sep and scheme.lower().startswith("raftsql"):
        hostpart, _, query = rest.partition("?")
        hostpart = hostpart.rstrip("/")
        if "," in hostpart and "/" not in hostpart and "@" not in hostpart:
            pairs = [("hosts", hostpart), *parse_qsl(query, keep_blank_values=True)]
            dsn = f"{scheme}:///?{urlencode(pairs)}"
    return sqlalchemy.engine.make_url(dsn)


def create_engine(dsn: str | URL = "raftsql://", **kwargs: Any) -> sqlalchemy.Engine:
    """``sqlalchemy.create_engine`` that also accepts ``raftsql://h1:p1,h2:p2?...``."""
    return sqlalchemy.create_engine(make_url(dsn), **kwargs)


class RaftsqlDialect(SQLiteDialect):
    """SQLAlchemy's SQLite dialect over raftsql's DB-API driver."""

    name = "raftsql"
    driver = "raftsql"
    default_paramstyle = "qmark"
    supports_statement_cache = True
    supports_native_decimal = False
    # Outside autocommit a held write's rowcount is -1 until commit, so the ORM must not
    # check UPDATE/DELETE row counts at flush (it would raise StaleDataError).
    supports_sane_rowcount = False
    supports_sane_multi_rowcount = False
    returns_native_bytes = True
    description_encoding = None

    def __init__(
        self,
        native_datetime: bool = False,
        json_serializer: Any = None,
        json_deserializer: Any = None,
        **kwargs: Any,
    ) -> None:
        # SQLiteDialect.__init__ reads sqlite3's ``dbapi.sqlite_version_info``, which the
        # raftsql module does not have (the nodes' SQLite is modern: the defaults apply).
        default.DefaultDialect.__init__(self, **kwargs)
        self._json_serializer = json_serializer
        self._json_deserializer = json_deserializer
        self.native_datetime = native_datetime

    @classmethod
    def import_dbapi(cls) -> Any:
        import raftsql

        return raftsql

    @classmethod
    def dbapi(cls) -> Any:  # type: ignore[override]  # SQLAlchemy < 2.0 spelling
        return cls.import_dbapi()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.QueuePool

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        query = dict(url.query)
        hosts: list[str] = []
        if url.host:
            hosts.extend(h for h in url.host.split(",") if h)
            if url.port is not None:
                hosts[-1] = f"{hosts[-1]}:{url.port}"
        extra = query.pop("hosts", None)
        for value in [extra] if isinstance(extra, str) else extra or ():
            hosts.extend(h.strip() for h in value.split(",") if h.strip())
        if url.database:
            raise exc.ArgumentError(f"a raftsql URL has no database path: {url.database!r}")
        unknown = sorted(set(query) - set(_OPTIONS))
        if unknown:
            raise exc.ArgumentError(
                f"unknown raftsql URL option {', '.join(unknown)}: "
                "use hosts, consistency, timeout or autocommit"
            )
        kwargs: dict[str, Any] = {}
        if "consistency" in query:
            kwargs["consistency"] = str(query["consistency"])
        if "timeout" in query:
            kwargs["timeout"] = float(query["timeout"])  # type: ignore[arg-type]
        if "autocommit" in query:
            kwargs["autocommit"] = util.asbool(query["autocommit"])
        return ([",".join(hosts)] if hosts else []), kwargs

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        version = connection.exec_driver_sql("SELECT sqlite_version()").scalar()
        return tuple(int(part) for part in str(version).split(".") if part.isdigit())

    def _get_default_schema_name(self, connection: Any) -> str:
        return "main"

    # --- isolation: SERIALIZABLE (transactional) or AUTOCOMMIT ---------------------------

    def get_isolation_level_values(self, dbapi_connection: Any) -> list[str]:
        return ["SERIALIZABLE", "AUTOCOMMIT"]

    def get_isolation_level(self, dbapi_connection: Any) -> str:
        return "AUTOCOMMIT" if dbapi_connection.autocommit else "SERIALIZABLE"

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        dbapi_connection.autocommit = level == "AUTOCOMMIT"

    def detect_autocommit_setting(self, dbapi_conn: Any) -> bool:
        return bool(dbapi_conn.autocommit)

    # --- no savepoints --------------------------------------------------------------------

    def do_savepoint(self, connection: Any, name: str) -> None:
        raise NotImplementedError(
            "raftsql does not support SAVEPOINT (begin_nested()): a transaction is one "
            "atomic request"
        )

    do_rollback_to_savepoint = do_savepoint
    do_release_savepoint = do_savepoint

    # --- reflection: only the main database; no PRAGMA temp.* or database_list ------------

    def get_schema_names(self, connection: Any, **kw: Any) -> list[str]:
        return ["main"]

    def get_temp_table_names(self, connection: Any, **kw: Any) -> list[str]:
        return []

    def get_temp_view_names(self, connection: Any, **kw: Any) -> list[str]:
        return []

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        names = super().get_table_names(connection, schema, **kw)
        return [n for n in names if not n.lower().startswith(_INTERNAL_PREFIX)]

    def _get_table_sql(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        prefix = self._schema_prefix(schema)
        value = connection.exec_driver_sql(
            f"SELECT sql FROM {prefix}sqlite_master WHERE name = ? AND type in ('table', 'view')",
            (table_name,),
        ).scalar()
        if value is None and not self._is_sys_table(table_name):
            raise exc.NoSuchTableError(f"{prefix}{table_name}")
        return value

    def _get_table_pragma(
        self, connection: Any, pragma: str, table_name: str, schema: str | None = None
    ) -> list[Any]:
        quote = self.identifier_preparer.quote_identifier
        prefix = self._schema_prefix(schema) or "main."
        result = connection.exec_driver_sql(f"PRAGMA {prefix}{pragma}({quote(table_name)})")
        return [] if result._soft_closed else result.fetchall()

    def _schema_prefix(self, schema: str | None) -> str:
        if schema is None:
            return ""
        return self.identifier_preparer.quote_identifier(schema) + "."


dialect = RaftsqlDialect
