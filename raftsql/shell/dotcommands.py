"""The shell's dot-commands (``.help``, ``.tables``, ``.nodes``, ``.dump`` ...).

Each command is a function registered with its usage line and help text, so ``.help``, the
completer and the dispatcher all read one table. A handler returns False to end the shell
(``.quit``); problems are raised (ShellError, RaftsqlError, OSError) and printed by the
shell as ``error: ...``, after which the shell carries on.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftsql import errors
from raftsql.client.client import Client
from raftsql.shell.dump import DumpStats, client_query, dump_sql, is_internal
from raftsql.shell.errors import ShellError
from raftsql.shell.formatting import MODES, plural
from raftsql.shell.loading import Progress, import_csv, read_restore_file, restore

if TYPE_CHECKING:
    from raftsql.shell.repl import Shell

Handler = Callable[["Shell", list[str]], bool | None]


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Handler


COMMANDS: dict[str, Command] = {}
ALIASES = {".exit": ".quit", ".q": ".quit"}
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def command(usage: str, help: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[usage.split()[0]] = Command(usage, help, fn)
        return fn

    return register


def run_dot(shell: Shell, line: str) -> bool:
    """Run one dot-command line; False means quit."""
    try:
        parts = shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise ShellError(f"cannot parse {line!r}: {exc}") from exc
    name = ALIASES.get(parts[0], parts[0])
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise ShellError(f"unknown command {parts[0]}: enter .help for the list")
    return cmd.run(shell, parts[1:]) is not False


def _arity(args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise ShellError(f"usage: {usage}")


def help_text() -> str:
    width = max(len(c.usage) for c in COMMANDS.values()) + 2
    lines = [f"{c.usage.ljust(width)}{c.help}" for c in COMMANDS.values()]
    lines.append(
        f"{'BEGIN; ...; COMMIT;'.ljust(width)}send the statements in between as one atomic "
        "request (ROLLBACK drops them)"
    )
    lines.append("Statements end with ';' and may span lines. Blobs show as x'..'.")
    return "\n".join(lines)


# --- help, schema -------------------------------------------------------------------------


@command(".help", "this text")
def _help(shell: Shell, args: list[str]) -> None:
    shell.print(help_text())


@command(".tables [PATTERN]", "list tables and views (PATTERN: a LIKE pattern)")
def _tables(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 1, ".tables [PATTERN]")
    rows = shell.client.query(  # pragma_table_list tells a virtual table's storage apart
        "SELECT name FROM pragma_table_list WHERE schema = 'main'"
        " AND type IN ('table', 'view', 'virtual') AND name LIKE ? ORDER BY name",
        (args[0] if args else "%",),
    ).rows
    names = [str(r[0]) for r in rows if not is_internal(str(r[0]))]
    if not names:
        return
    width = shell.width() or 80
    col = max(len(n) for n in names) + 2
    per_line = max(1, width // col)
    lines = [
        "".join(n.ljust(col) for n in names[k : k + per_line]).rstrip()
        for k in range(0, len(names), per_line)
    ]
    shell.print("\n".join(lines))


@command(".schema [TABLE]", "CREATE statements (of TABLE and its indexes and triggers)")
def _schema(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 1, ".schema [TABLE]")
    sql = "SELECT name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL"
    params: tuple[Any, ...] = ()
    if args:
        sql += " AND tbl_name = ? COLLATE NOCASE"
        params = (args[0],)
    rows = shell.client.query(sql + " ORDER BY rowid", params).rows
    shown = [f"{r[2]};" for r in rows if not (is_internal(r[0]) or is_internal(r[1]))]
    if args and not shown:
        raise ShellError(f"no such table: {args[0]}")
    if shown:
        shell.print("\n".join(shown))


@command(".indexes [TABLE]", "indexes with their table, columns and uniqueness")
def _indexes(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 1, ".indexes [TABLE]")
    sql = (
        'SELECT m.name, m.tbl_name, il."unique", (SELECT group_concat(coalesce(ii.name, '
        "'<expression>'), ', ') FROM pragma_index_info(m.name) AS ii) FROM sqlite_schema AS m"
        " JOIN pragma_index_list(m.tbl_name) AS il ON il.name = m.name WHERE m.type = 'index'"
    )
    params: tuple[Any, ...] = ()
    if args:
        sql += " AND m.tbl_name = ? COLLATE NOCASE"
        params = (args[0],)
    rows = shell.client.query(sql + " ORDER BY m.tbl_name, m.name", params).rows
    rows = [
        (name, table, "yes" if unique else "no", cols)
        for name, table, unique, cols in rows
        if not is_internal(str(table))
    ]
    shell.print_rows(["index", "table", "unique", "columns"], rows, count=False)


# --- cluster ----------------------------------------------------------------------------


@command(".nodes", "every node: role, term, commit/applied index, lag, reachability")
def _nodes(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 0, ".nodes")
    first = shell.client.status()
    peers = {int(k): str(v) for k, v in first["peers"].items()}

    def fetch(address: str) -> dict[str, Any] | str:
        try:
            with Client([address], timeout=1.0) as c:
                return c.status()
        except errors.RaftsqlError as exc:
            return f"unreachable ({exc})" if "no answer" not in str(exc) else "unreachable"

    with ThreadPoolExecutor(max_workers=max(1, len(peers))) as pool:
        found = dict(zip(peers, pool.map(fetch, peers.values()), strict=True))
    leader = next(
        (s for s in found.values() if isinstance(s, dict) and s["role"] == "leader"), None
    )
    progress = leader["progress"] if leader else {}
    rows = []
    for node_id, address in sorted(peers.items()):
        st = found[node_id]
        if isinstance(st, str):
            rows.append((node_id, address, "-", "-", "-", "-", "-", "-", st))
            continue
        lag: int | None = 0 if st["role"] == "leader" else None
        pr = progress.get(str(node_id))
        if pr is not None:
            lag = pr["lag"]
        leader_id = st["leader"] or None
        row = (node_id, address, st["role"], st["term"], leader_id, st["commit"], st["applied"])
        rows.append((*row, lag, "up"))
    columns = ["id", "address", "role", "term", "leader", "commit", "applied", "lag", "state"]
    shell.print_rows(columns, rows, count=False)


@command(".status", "the status of the node this shell talks to")
def _status(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 0, ".status")
    st = shell.client.status()
    leader = f"node {st['leader']} at {st['leader_address']}" if st["leader"] else "none known yet"
    lines = [
        f"node       {st['id']} at {st['address']}: {st['role']}, term {st['term']}",
        f"leader     {leader}",
        f"log        {st['first_index']}..{st['last_index']}, commit {st['commit']}, "
        f"applied {st['applied']}, snapshot {st['snapshot_index']}",
        f"voters     {', '.join(str(v) for v in st['voters'])}",
        f"uptime     {st['uptime']:.0f} s",
        "counters   " + ", ".join(f"{k} {v}" for k, v in st.get("counters", {}).items()),
        f"reads      {shell.client.consistency} (this shell's setting: .consistency)",
    ]
    for pid, pr in sorted(st.get("progress", {}).items()):
        link = "connected" if pr.get("connected") else "not connected"
        lines.append(
            f"follower   {pid}: match {pr['match']}, lag {pr['lag']}, {pr['state']}, {link}"
        )
    shell.print("\n".join(lines))


@command(".leader", "which node leads")
def _leader(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 0, ".leader")
    st = shell.client.status()
    if st["leader"]:
        shell.print(f"leader: node {st['leader']} at {st['leader_address']} (term {st['term']})")
    else:
        shell.print(f"no leader known yet (term {st['term']}): an election may be under way")


@command(".consistency [LEVEL]", "show or set read consistency: linearizable | stale")
def _consistency(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 1, ".consistency [linearizable|stale]")
    if args:
        if args[0] not in ("linearizable", "stale"):
            raise ShellError("usage: .consistency linearizable|stale")
        shell.client.consistency = args[0]
    else:
        shell.print(f"consistency: {shell.client.consistency}")


# --- output -------------------------------------------------------------------------------


@command(".mode [MODE]", "show or set the output mode: " + " | ".join(MODES))
def _mode(shell: Shell, args: list[str]) -> None:
    _arity(args, 0, 1, ".mode [" + "|".join(MODES) + "]")
    if args:
        if args[0] not in MODES:
            raise ShellError("usage: .mode " + "|".join(MODES))
        shell.mode = args[0]
    else:
        shell.print(f"mode: {shell.mode}")


@command(".timer on|off", "show how long each statement takes")
def _timer(shell: Shell, args: list[str]) -> None:
    if len(args) != 1 or args[0] not in ("on", "off"):
        raise ShellError("usage: .timer on|off")
    shell.timer = args[0] == "on"


# --- files --------------------------------------------------------------------------------


@command(".read FILE", "run the statements and dot-commands in FILE")
def _read(shell: Shell, args: list[str]) -> bool:
    _arity(args, 1, 1, ".read FILE")
    return shell.run_file(Path(args[0]).expanduser())


@command(".dump [TABLE...]", "the database (or TABLEs) as SQL that rebuilds it")
def _dump(shell: Shell, args: list[str]) -> None:
    for stmt in dump_sql(client_query(shell.client), args or None):
        shell.print(stmt)


@command(".backup FILE", "write a dump to FILE (SQL text; a SQLite file if FILE ends in .db)")
def _backup(shell: Shell, args: list[str]) -> None:
    _arity(args, 1, 1, ".backup FILE")
    path = Path(args[0]).expanduser()
    tmp = path.with_name(path.name + ".partial")
    stats = DumpStats()
    progress = Progress("backup", None, "rows", shell.err)
    statements = dump_sql(
        client_query(shell.client), stats=stats, on_rows=lambda _t, _n: progress.update(stats.rows)
    )
    as_sqlite = path.suffix.lower() in SQLITE_SUFFIXES
    try:
        tmp.unlink(missing_ok=True)
        if as_sqlite:
            _write_sqlite(tmp, statements)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                for stmt in statements:
                    f.write(stmt + "\n")
        os.replace(tmp, path)
    finally:
        progress.close()
        tmp.unlink(missing_ok=True)
    kind = "a SQLite database" if as_sqlite else "SQL text"
    shell.note(
        f"backed up {plural(stats.tables, 'table')} and {plural(stats.rows, 'row')} to {path} "
        f"({kind}; .restore {path} loads it)"
    )


def _write_sqlite(path: Path, statements: Any) -> None:
    """Build a SQLite file locally (the standard library's sqlite3) from the dump."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN")
        for stmt in statements:
            if not stmt.startswith("--"):
                con.execute(stmt)
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ShellError(f"cannot write the SQLite file {path}: {exc}") from exc
    finally:
        con.close()


@command(".restore FILE", "replay a dump or backup (SQL text or SQLite file) in batches")
def _restore(shell: Shell, args: list[str]) -> None:
    _arity(args, 1, 1, ".restore FILE")
    path = Path(args[0]).expanduser()
    source = read_restore_file(path)
    shell.schema.dirty = True
    done = restore(shell.client, source.statements(), shell.err, total=source.total)
    shell.note(f"restored {plural(done, 'statement')} from {path}")


@command(".import FILE TABLE", "load a CSV file (header line first) into TABLE, in batches")
def _import(shell: Shell, args: list[str]) -> None:
    _arity(args, 2, 2, ".import FILE TABLE")
    path = Path(args[0]).expanduser()
    shell.schema.dirty = True
    done = import_csv(shell.client, path, args[1], shell.err)
    shell.note(f"imported {plural(done, 'row')} into {args[1]}")


@command(".quit", "leave the shell (also .exit, Ctrl-D)")
def _quit(shell: Shell, args: list[str]) -> bool:
    return False
