"""Bulk loading: ``.restore`` replays a dump, ``.import`` loads a CSV file.

Both send atomic write requests of BATCH_STATEMENTS statements (fewer when they hold more
than BATCH_BYTES of SQL): one Raft entry per batch instead of one per row, which is what
makes loading fast, while each request stays far below the frame limit. A failure rolls
back its own batch only; the message says how far the load got. Progress goes to stderr
so that stdout stays clean for results.
"""

from __future__ import annotations

import csv
import re
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raftsql import errors
from raftsql.client.client import Client
from raftsql.shell.dump import Query, dump_sql, is_internal
from raftsql.shell.errors import ShellError
from raftsql.shell.splitter import split_statements, words
from raftsql.shell.sqlwords import quote_ident

BATCH_STATEMENTS = 500
BATCH_BYTES = 4 << 20
SQLITE_MAGIC = b"SQLite format 3\x00"


class Progress:
    """A progress line on stderr: done/total, percentage and rate.

    On a terminal the line is redrawn in place (at most five times a second); otherwise
    (a log file, a pipe) a new line is written at most every two seconds, and always at the
    end, so that scripted loads still leave a record without flooding their logs.
    """

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else 2.0
        self.started = time.monotonic()
        self.last = self.started
        self.done = 0
        self.drawn = False

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f"{self.done / elapsed:,.0f} {self.unit}/s, {elapsed:.1f}s"
        if self.total:
            pct = 100 * self.done // self.total
            return f"{self.label}: {self.done}/{self.total} {self.unit} ({pct}%, {rate})"
        return f"{self.label}: {self.done} {self.unit} ({rate})"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        self._draw()

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.drawn = True
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- .restore ---------------------------------------------------------------------------


def sqlite_query(con: sqlite3.Connection) -> Query:
    """Reads from a local SQLite file (the standard library's sqlite3, not apsw)."""

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return con.execute(sql, params).fetchall()

    return query


@dataclass(frozen=True)
class RestoreSource:
    """What ``.restore`` replays, read from its file as it is sent, never held whole: a
    dump of a multi-gigabyte database as a list of statements took several times the
    file's size in memory (rqlite users ask most for loading big SQLite files).

    ``total`` counts the statements to send, for the progress line: exact for SQL text
    (counted in a first pass, which also refuses dot-commands before anything is sent);
    for a SQLite file, an estimate from its row counts (one INSERT a row, one statement a
    schema object).
    """

    path: Path
    sqlite: bool
    total: int

    def statements(self) -> Iterator[str]:
        """The file's statements, in order (a SQLite file is dumped as by ``.dump``)."""
        if self.sqlite:
            con = _open_sqlite(self.path)
            try:
                for stmt in dump_sql(sqlite_query(con)):
                    if not stmt.startswith("--"):
                        yield stmt
            except sqlite3.Error as exc:
                raise ShellError(f"cannot read the SQLite file {self.path}: {exc}") from exc
            finally:
                con.close()
        else:
            with open(self.path, encoding="utf-8", newline="") as f:
                yield from split_statements(f)


def _open_sqlite(path: Path) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True)


def read_restore_file(path: Path) -> RestoreSource:
    """The dump file (SQL text) or SQLite database file (``.backup x.db``, or any SQLite
    file) at ``path``, checked and counted; its statements are read when sent."""
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        con = _open_sqlite(path)
        try:
            schema = con.execute("SELECT type, name FROM sqlite_schema WHERE sql IS NOT NULL")
            objects = schema.fetchall()
            rows = 0
            for kind, name in objects:
                if kind == "table" and not is_internal(name):
                    rows += con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0]
        except sqlite3.Error as exc:
            raise ShellError(f"cannot read the SQLite file {path}: {exc}") from exc
        finally:
            con.close()
        return RestoreSource(path, sqlite=True, total=rows + len(objects))
    total = 0
    with open(path, encoding="utf-8", newline="") as f:
        for stmt in split_statements(f):
            if stmt.startswith("."):
                raise ShellError(
                    f"{path} holds the dot-command {stmt.split()[0]}: .restore replays SQL "
                    "only (.read runs scripts with dot-commands)"
                )
            total += restorable(stmt)
    return RestoreSource(path, sqlite=False, total=total)


def restorable(stmt: str) -> bool:
    """False for what a dump may hold but a replicated replay must not send: transaction
    control (each batch is its own transaction), ``PRAGMA foreign_keys`` (connection
    state; the dump is ordered parents first instead) and ANALYZE."""
    first = words(stmt, 2)
    if not first:
        return True
    if first[0] in ("BEGIN", "COMMIT", "END", "ROLLBACK", "ANALYZE"):
        return False
    return first[:2] != ["PRAGMA", "FOREIGN_KEYS"]


_INSERT = re.compile(r"INSERT\s+INTO\s+(.+?)\s*VALUES\s*\((.*)\)\s*;?\s*\Z", re.I | re.S)
_LITERAL = re.compile(
    r"""\s*(?:
        (?P<null>NULL)
      | '(?P<text>(?:[^']|'')*)'
      | [xX]'(?P<blob>(?:[0-9a-fA-F]{2})*)'
      | CAST\(\s*[xX]'(?P<cast>(?:[0-9a-fA-F]{2})*)'\s+AS\s+TEXT\s*\)
      | (?P<int>-?[0-9]+)(?![0-9.eExX])
      | (?P<real>-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    )\s*(?P<sep>,|\Z)""",
    re.I | re.X | re.S,
)


def parameterize(stmt: str) -> tuple[str, tuple[Any, ...]]:
    """``INSERT INTO t VALUES(1,'a',x'00',NULL);`` as ``INSERT INTO t VALUES(?,?,?,?)``
    with its values as parameters, or the statement unchanged if it is anything else.

    The leader classifies each distinct SQL text once and caches it: a dump's literal
    INSERTs are all distinct and would each be classified (several times slower), while
    the parameterized form is one text per table. Values are parsed exactly as SQLite reads
    these literals (an integer beyond 64 bits is REAL, 1e999 is infinity), and binding a
    value goes through the same column affinity as the literal would.
    """
    m = _INSERT.match(stmt)
    if m is None:
        return stmt, ()
    target, values_text = m.group(1), m.group(2)
    values: list[Any] = []
    pos = 0
    while pos < len(values_text):
        lit = _LITERAL.match(values_text, pos)
        if lit is None or (lit.group("sep") == "," and lit.end() == len(values_text)):
            return stmt, ()
        pos = lit.end()
        if lit.group("null") is not None:
            values.append(None)
        elif lit.group("text") is not None:
            values.append(lit.group("text").replace("''", "'"))
        elif lit.group("blob") is not None:
            values.append(bytes.fromhex(lit.group("blob")))
        elif lit.group("cast") is not None:
            try:
                values.append(bytes.fromhex(lit.group("cast")).decode("utf-8"))
            except UnicodeDecodeError:
                return stmt, ()
        elif lit.group("int") is not None:
            n = int(lit.group("int"))
            values.append(n if -(2**63) <= n < 2**63 else float(lit.group("int")))
        else:
            values.append(float(lit.group("real")))
    if not values:
        return stmt, ()
    return f"INSERT INTO {target} VALUES({','.join('?' * len(values))})", tuple(values)


def restore(
    client: Client,
    statements: Iterable[str],
    stream: TextIO | None = None,
    total: int | None = None,
) -> int:
    """Replay ``statements`` in atomic batches, reading them as it goes; returns how
    many were applied. ``total`` (default: ``len(statements)`` if it has one) is what the
    progress line counts towards; at the end it shows what was really sent."""
    if total is None and isinstance(statements, Sequence):
        total = sum(1 for s in statements if restorable(s))
    progress = Progress("restore", total, "statements", stream)
    done = 0
    try:
        for batch in _batches(s for s in statements if restorable(s)):
            try:
                client.write([parameterize(s) for s in batch], atomic=True)
            except errors.RaftsqlError as exc:
                raise _load_failed(
                    "restore", exc, batch, done, progress.total or done + len(batch), "statements"
                ) from exc
            done += len(batch)
            progress.update(done)
        progress.total = done  # an estimate (a SQLite file's) ends as the exact count
    finally:
        progress.close()
    return done


def _batches(statements: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for stmt in statements:
        if batch and (len(batch) >= BATCH_STATEMENTS or size + len(stmt) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(stmt)
        size += len(stmt)
    if batch:
        yield batch


def _load_failed(
    what: str,
    exc: errors.RaftsqlError,
    batch: Sequence[str],
    done: int,
    total: int,
    unit: str,
    offset: int = 0,
) -> ShellError:
    """The error that ends a load, saying which item failed (the server reports the index
    of the failing statement in its request; ``offset`` statements preceded the items)."""
    k = exc.details.get("statement")
    if isinstance(k, int):
        k -= offset
    where = ""
    if isinstance(k, int) and 0 <= k < len(batch):
        text = " ".join(batch[k].split())
        where = f" at {unit[:-1]} {done + k + 1} of {total} ({text[:80]})"
    return ShellError(
        f"{what} stopped{where}: {exc}. The first {done} {unit} were applied; the failing "
        f"batch of {len(batch)} was rolled back"
    )


# --- .import ------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)\Z")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def infer_type(values: Iterable[str]) -> str:
    """INTEGER, REAL or TEXT: the narrowest type that every non-empty value fits.

    Numbers with leading zeros (zip codes, ids like 007) make a column TEXT, since storing
    them as numbers would lose the zeros.
    """
    kind = "INTEGER"
    seen = False
    for v in values:
        if v == "":
            continue
        seen = True
        if kind == "INTEGER" and _INT.match(v) and -(2**63) <= int(v) < 2**63:
            continue
        if _REAL.match(v) and not re.match(r"[+-]?0[0-9]", v):
            kind = "REAL"
            continue
        return "TEXT"
    return kind if seen else "TEXT"


def column_names(header: Sequence[str]) -> list[str]:
    """Header names made usable as columns: blanks get a name, duplicates a suffix."""
    names: list[str] = []
    seen: set[str] = set()
    for k, raw in enumerate(header):
        name = raw.strip() or f"c{k + 1}"
        base, n = name, 2
        while name.lower() in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name.lower())
        names.append(name)
    return names


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows; a row with the wrong number of fields is an error (with its line
    number) before anything is sent, so a bad file never half-loads."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ShellError(f"{path} is empty: .import needs a header line naming the columns")
        rows = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise ShellError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                    f"{len(header)}"
                )
            rows.append(row)
    return header, rows


def import_csv(client: Client, path: Path, table: str, stream: TextIO | None = None) -> int:
    """Insert the CSV file's rows into ``table``, creating it from the header if missing
    (with INTEGER/REAL/TEXT columns inferred from the data). Returns the rows inserted."""
    if is_internal(table):
        raise ShellError(f"{table} is an internal table name")
    header, rows = read_csv(path)
    names = column_names(header)
    existing = [
        str(r[0]) for r in client.query("SELECT name FROM pragma_table_info(?)", (table,)).rows
    ]
    first: list[tuple[str, Any]] = []
    empty_is_null = [False] * len(names)
    if existing:
        known = {c.lower() for c in existing}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise ShellError(
                f"table {table} has no column {', '.join(unknown)} (the CSV header names the "
                f"columns to fill; the table has {', '.join(existing)})"
            )
    else:
        types = [infer_type(r[k] for r in rows) for k in range(len(names))]
        empty_is_null = [t != "TEXT" for t in types]
        cols = ", ".join(f"{quote_ident(n)} {t}" for n, t in zip(names, types, strict=True))
        first.append((f"CREATE TABLE {quote_ident(table)} ({cols})", ()))
    insert = (
        f"INSERT INTO {quote_ident(table)} ({', '.join(quote_ident(n) for n in names)}) "
        f"VALUES ({', '.join('?' * len(names))})"
    )
    progress = Progress(f"import {table}", len(rows), "rows", stream)
    done = 0
    try:
        for start in range(0, max(len(rows), 1), BATCH_STATEMENTS):
            chunk = rows[start : start + BATCH_STATEMENTS]
            stmts = [*first]
            for row in chunk:
                values = [
                    None if v == "" and null else v
                    for v, null in zip(row, empty_is_null, strict=True)
                ]
                stmts.append((insert, values))
            if not stmts:
                break
            try:
                client.write(stmts, atomic=True)
            except errors.RaftsqlError as exc:
                texts = [",".join(r) for r in chunk]
                raise _load_failed(
                    "import", exc, texts, done, len(rows), "rows", offset=len(first)
                ) from exc
            first = []
            done += len(chunk)
            progress.update(done)
    finally:
        progress.close()
    return done
