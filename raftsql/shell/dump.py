"""``.dump`` and ``.backup``: the database as SQL text that rebuilds it.

The order follows sqlite3's ``.dump``, with changes forced by replication:

- Tables come first, each followed by its rows, then ``sqlite_sequence``, then indexes,
  triggers and views. Triggers must come after the data, or replaying the rows would fire
  them a second time.
- raftsql enforces foreign keys and forbids ``PRAGMA foreign_keys=OFF`` (it is connection
  state), so tables are ordered parents first, following their foreign keys.
- There is no ``BEGIN TRANSACTION; ... COMMIT;``: a whole dump as one request would not fit
  in a request frame. ``.restore`` replays the file in atomic batches instead.

Rows are read page by page (keyset pagination on the rowid where there is one), so a large
table never has to fit in one reply. Each page is a linearizable read, but the dump as a
whole is not one point-in-time snapshot if other clients write while it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from raftsql.client.client import Client
from raftsql.shell.sqlwords import quote_ident

Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
"""Runs one read and returns its rows. The dump only reads through this, so the same code
dumps a raftsql cluster (``.dump``, ``.backup``) and a local SQLite file (``.restore`` of
a ``.db`` file, through the standard library's sqlite3)."""


def client_query(client: Client) -> Query:
    """Reads through the client, at its consistency level (linearizable by default)."""

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return client.query(sql, params).rows

    return query


INTERNAL_PREFIX = "_raftsql_"
PAGE_ROWS = 2000


def is_internal(name: str) -> bool:
    """raftsql's own tables and SQLite's: never shown, dumped or created by the shell."""
    lower = name.lower()
    return lower.startswith(INTERNAL_PREFIX) or lower.startswith("sqlite_")


def sql_literal(value: Any) -> str:
    """``value`` as an SQL literal that reads back as exactly the same value and type.

    Text is single-quoted with quotes doubled; newlines stay literal (valid inside SQL
    strings). Text holding NUL or carriage returns, which line-based tools mangle, is
    written as ``CAST(x'..' AS TEXT)``. Infinities are ``1e999`` as sqlite3 writes them;
    NaN cannot be stored by SQLite, so it becomes NULL.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x'" + bytes(value).hex() + "'"
    text = str(value)
    if "\x00" in text or "\r" in text:
        return "CAST(x'" + text.encode("utf-8", "surrogatepass").hex() + "' AS TEXT)"
    return "'" + text.replace("'", "''") + "'"


@dataclass
class DumpStats:
    tables: int = 0
    rows: int = 0


@dataclass
class _Table:
    name: str
    sql: str
    kind: str  # "table" or "virtual"
    without_rowid: bool


def dump_sql(
    query: Query,
    tables: Sequence[str] | None = None,
    stats: DumpStats | None = None,
    on_rows: Callable[[str, int], None] | None = None,
    page: int = PAGE_ROWS,
) -> Iterator[str]:
    """Yield the dump statement by statement (each ends with ``;``; comments too).

    ``tables`` limits it to those tables (and their indexes and triggers), as
    ``.dump TABLE`` does in sqlite3. ``on_rows(table, rows_so_far)`` is called after
    every page, for progress lines.
    """
    stats = stats if stats is not None else DumpStats()
    wanted = {t.lower() for t in tables} if tables else None
    schema = query(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
        (),
    )
    kinds = {
        str(name): (str(kind), bool(wr))
        for name, kind, wr in query(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'", ()
        )
    }
    picked: list[_Table] = []
    for kind, name, _tbl, sql in schema:
        if kind != "table" or is_internal(name) or (wanted and name.lower() not in wanted):
            continue
        list_kind, without_rowid = kinds.get(name, ("table", False))
        if list_kind == "shadow":
            continue  # a virtual table's storage: recreated by CREATE VIRTUAL TABLE
        picked.append(_Table(name, sql, list_kind, without_rowid))

    yield "-- raftsql dump: replay it with `.restore FILE` in `raftsql shell`"
    for table in _parents_first(query, picked):
        yield _statement(table.sql)
        stats.tables += 1
        yield from _rows(query, table, stats, on_rows, page)

    if wanted is None and any(name == "sqlite_sequence" for _, name, _, _ in schema):
        seq = query("SELECT name, seq FROM sqlite_sequence", ())
        if seq:
            yield "DELETE FROM sqlite_sequence;"
            for name, value in seq:
                yield f"INSERT INTO sqlite_sequence VALUES({sql_literal(name)},{value});"

    for kind, name, tbl, sql in schema:
        if kind == "table" or is_internal(name) or is_internal(tbl):
            continue
        if wanted and tbl.lower() not in wanted:
            continue
        yield _statement(sql)

    if wanted is None:
        version = query("PRAGMA user_version", ())[0][0]
        if version:
            yield f"PRAGMA user_version = {int(version)};"


def _statement(sql: str) -> str:
    sql = sql.strip()
    return sql if sql.endswith(";") else sql + ";"


def _parents_first(query: Query, tables: list[_Table]) -> list[_Table]:
    """Tables ordered so that every table comes after the tables its foreign keys name
    (schema order otherwise; a cycle keeps schema order for the tables in it)."""
    if len(tables) < 2:
        return tables
    by_name = {t.name.lower(): t for t in tables}
    parents: dict[str, set[str]] = {name: set() for name in by_name}
    rows = query(
        'SELECT m.name, f."table" FROM sqlite_schema AS m, pragma_foreign_key_list(m.name) AS f'
        " WHERE m.type = 'table'",
        (),
    )
    for child, parent in rows:
        child, parent = str(child).lower(), str(parent).lower()
        if child in parents and parent in by_name and parent != child:
            parents[child].add(parent)
    ordered: list[_Table] = []
    done: set[str] = set()
    while len(ordered) < len(tables):
        ready = [n for n in by_name if n not in done and parents[n] <= done]
        if not ready:  # a cycle: take the next one in schema order
            ready = [next(n for n in by_name if n not in done)]
        for name in ready[:1]:
            ordered.append(by_name[name])
            done.add(name)
    return ordered


def _rows(
    query: Query,
    table: _Table,
    stats: DumpStats,
    on_rows: Callable[[str, int], None] | None,
    page: int,
) -> Iterator[str]:
    info = query("SELECT name, hidden, pk FROM pragma_table_xinfo(?) ORDER BY cid", (table.name,))
    columns = [str(name) for name, hidden, _pk in info if hidden == 0]
    if not columns:
        return
    # Generated and hidden columns cannot be inserted: name the others when there are any.
    named = len(columns) != len(info)
    target = quote_ident(table.name)
    if named:
        target += "(" + ",".join(quote_ident(c) for c in columns) + ")"
    select = ", ".join(quote_ident(c) for c in columns)
    source = quote_ident(table.name)
    lowered = {c.lower() for c in columns}
    rowid = None
    if table.kind == "table" and not table.without_rowid:
        rowid = next((a for a in ("rowid", "_rowid_", "oid") if a not in lowered), None)
    count = 0
    if rowid is not None:
        last = None
        while True:
            sql = f"SELECT {rowid}, {select} FROM {source}"
            params: tuple[Any, ...] = ()
            if last is not None:
                sql += f" WHERE {rowid} > ?"
                params = (last,)
            rows = query(sql + f" ORDER BY {rowid} LIMIT {page}", params)
            for row in rows:
                yield _insert(target, row[1:])
            count += len(rows)
            stats.rows += len(rows)
            if on_rows is not None:
                on_rows(table.name, count)
            if len(rows) < page:
                return
            last = rows[-1][0]
    order = ""
    if table.without_rowid:
        keys = sorted((pk, str(name)) for name, _hidden, pk in info if pk)
        order = " ORDER BY " + ", ".join(quote_ident(name) for _, name in keys)
    offset = 0
    while True:
        rows = query(f"SELECT {select} FROM {source}{order} LIMIT {page} OFFSET {offset}", ())
        for row in rows:
            yield _insert(target, row)
        offset += len(rows)
        stats.rows += len(rows)
        if on_rows is not None:
            on_rows(table.name, offset)
        if len(rows) < page:
            return


def _insert(target: str, row: Sequence[Any]) -> str:
    return f"INSERT INTO {target} VALUES(" + ",".join(sql_literal(v) for v in row) + ");"
