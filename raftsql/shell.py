"""`raftsql shell`: an SQL prompt on a raftsql cluster, in the spirit of sqlite3's CLI.

With no hosts it starts (or reuses) the embedded local cluster, whose data persists from
one shell session to the next. Statements end at ``;`` and may span lines; ``BEGIN; ...;
COMMIT;`` is sent as one atomic request (``ROLLBACK`` drops it). Errors are printed and the
shell stays up. Non-interactive use: ``raftsql shell < script.sql`` or ``-c "SQL"``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from raftsql import errors
from raftsql.client.client import Client, Result
from raftsql.cluster import LocalCluster

HELP = """\
.help                 this text
.tables               list tables
.schema [TABLE]       CREATE statements
.status               every node's role, term and indexes
.leader               which node leads
.consistency [LEVEL]  show or set read consistency: linearizable | stale
.timer on|off         print how long each statement took
.quit                 leave (also Ctrl-D)
BEGIN; ...; COMMIT;   send the statements in between as one atomic request"""


def split_statements(lines: Iterator[str], prompt: Any = None) -> Iterator[str]:
    """Yield complete statements (ending at a ``;`` outside quotes) and dot-commands."""
    buf = ""
    for line in lines:
        if not buf.strip() and line.strip().startswith("."):
            yield line.strip()
            continue
        buf += line
        while True:
            end = _statement_end(buf)
            if end < 0:
                break
            stmt, buf = buf[: end + 1].strip(), buf[end + 1 :]
            if stmt.strip(";").strip():
                yield stmt
        if prompt is not None:
            prompt(bool(buf.strip()))
    if buf.strip():
        yield buf.strip()


def _statement_end(text: str) -> int:
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == "-" and text.startswith("--", i):
            nl = text.find("\n", i)
            if nl < 0:
                return -1
            i = nl
        elif ch == ";":
            return i
        i += 1
    return -1


def format_table(result: Result, width: int) -> str:
    cols = result.columns or [f"c{k}" for k in range(len(result.rows[0]) if result.rows else 0)]
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[k]) for r in cells]) for k, c in enumerate(cols)]
    budget = max(8, (width - 3 * len(cols)) // max(1, len(cols)))
    widths = [min(w, budget) for w in widths]

    def line(values: list[str]) -> str:
        return " | ".join(_fit(v, w) for v, w in zip(values, widths, strict=True))

    out = [line(cols), "-+-".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return "x'" + v.hex() + "'"
    return str(v)


def _fit(v: str, w: int) -> str:
    return v.ljust(w) if len(v) <= w else v[: w - 1] + "…"


class Shell:
    def __init__(self, client: Client, out: TextIO = sys.stdout) -> None:
        self.client = client
        self.out = out
        self.timer = False
        self.txn: list[str] | None = None

    def run_statement(self, stmt: str) -> None:
        word = stmt.split(None, 1)[0].upper().rstrip(";") if stmt.split() else ""
        if word == "BEGIN":
            self.txn = []
            return
        if word in ("COMMIT", "END") and self.txn is not None:
            batch, self.txn = self.txn, None
            started = time.perf_counter()
            results = self.client.write([(s, ()) for s in batch], atomic=True)
            self._print_result(results[-1] if results else Result(), started)
            return
        if word == "ROLLBACK" and self.txn is not None:
            self.txn = None
            print("transaction dropped", file=self.out)
            return
        if self.txn is not None:
            self.txn.append(stmt)
            return
        started = time.perf_counter()
        self._print_result(self.client.execute(stmt), started)

    def _print_result(self, result: Result, started: float) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        if result.columns:
            print(format_table(result, width), file=self.out)
            print(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})", file=self.out)
        elif result.rowcount >= 0:
            print(f"ok, {result.rowcount} row(s) changed", file=self.out)
        if self.timer:
            print(f"time: {(time.perf_counter() - started) * 1000:.1f} ms", file=self.out)

    def run_dot(self, cmd: str) -> bool:
        """Run a dot-command; False means quit."""
        parts = cmd.split()
        name, args = parts[0], parts[1:]
        if name in (".quit", ".exit"):
            return False
        if name == ".help":
            print(HELP, file=self.out)
        elif name == ".tables":
            r = self.client.query(
                "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE "
                "'sqlite_%' AND name NOT LIKE '\\_raftsql%' ESCAPE '\\' ORDER BY name"
            )
            print("  ".join(str(row[0]) for row in r.rows), file=self.out)
        elif name == ".schema":
            sql = "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE "
            sql += "'\\_raftsql%' ESCAPE '\\'"
            r = self.client.query(sql + (" AND tbl_name = ?" if args else ""), tuple(args[:1]))
            for row in r.rows:
                print(f"{row[0]};", file=self.out)
        elif name in (".status", ".leader"):
            st = self.client.status()
            if name == ".leader":
                print(f"node {st['leader']} at {st['leader_address']}", file=self.out)
            else:
                print(_status_line(st), file=self.out)
                for pid, pr in st.get("progress", {}).items():
                    print(f"  follower {pid}: match {pr['match']}, lag {pr['lag']}", file=self.out)
        elif name == ".consistency":
            if args:
                if args[0] not in ("linearizable", "stale"):
                    raise errors.ParameterError("use .consistency linearizable|stale")
                self.client.consistency = args[0]
            print(self.client.consistency, file=self.out)
        elif name == ".timer":
            self.timer = bool(args) and args[0] == "on"
        else:
            print(f"unknown command {name}: try .help", file=self.out)
        return True


def _status_line(st: dict[str, Any]) -> str:
    return (
        f"node {st['id']} ({st['address']}): {st['role']}, term {st['term']}, "
        f"leader {st['leader']}, commit {st['commit']}, applied {st['applied']}"
    )


def run_shell(hosts: str | None, directory: Path, command: str | None = None) -> int:
    if hosts:
        client = Client(hosts)
        where = hosts
    else:
        cluster = LocalCluster(directory=directory)
        print(f"starting the local cluster in {directory} ...", file=sys.stderr)
        cluster.start()
        client = cluster.client()
        where = f"local cluster in {directory} ({', '.join(cluster.addresses())})"
    shell = Shell(client)
    interactive = command is None and sys.stdin.isatty()
    if interactive:
        print(f"raftsql shell — {where}\nEnter .help for help; statements end with ';'")
    source: Iterator[str]
    if command is not None:
        source = iter([command if command.rstrip().endswith(";") else command + ";"])
    elif interactive:
        source = _prompt_lines()
    else:
        source = iter(sys.stdin)
    status = 0
    with client:
        for stmt in split_statements(source):
            try:
                if stmt.startswith("."):
                    if not shell.run_dot(stmt):
                        break
                else:
                    shell.run_statement(stmt)
            except errors.RaftsqlError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
    return status if not interactive else 0


def _prompt_lines() -> Iterator[str]:
    cont = False
    while True:
        try:
            line = input("   ...> " if cont else "raftsql> ")
        except EOFError:
            print()
            return
        cont = not line.strip().startswith(".") and _statement_end(line) < 0 and bool(line)
        yield line + "\n"
