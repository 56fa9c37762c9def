"""The shell's loop: read statements, send them, print results; never die on an error.

Three ways in, one Shell underneath: an interactive prompt (prompt_toolkit: multi-line
editing, history kept across runs, completion, SQL highlighting) when stdin and stdout are
both terminals; a plain ``input()`` prompt when only stdin is; and a script read from stdin
(or ``-c``) otherwise, where errors make the exit status 1 but do not stop the script,
like the sqlite3 CLI.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from raftsql import __version__, errors
from raftsql.client.client import Client, Result
from raftsql.cluster import LocalCluster
from raftsql.shell.dotcommands import COMMANDS, run_dot
from raftsql.shell.errors import ShellError
from raftsql.shell.formatting import MODES, format_rows, plural
from raftsql.shell.schema import Schema
from raftsql.shell.splitter import first_word, is_complete, split_statements

PROMPT = "raftsql> "
TXN_PROMPT = "raftsql*> "
CONTINUATION = "...> "
MAX_READ_DEPTH = 16
DDL = frozenset({"CREATE", "DROP", "ALTER"})
_REPORTED = (
    errors.RaftsqlError,
    ShellError,
    OSError,
    csv.Error,
    UnicodeDecodeError,
    sqlite3.Error,
)


class Shell:
    """Runs statements and dot-commands against one client and prints what happened.

    ``txn`` holds the statements typed after BEGIN: nothing is sent until COMMIT, which
    sends them all as one atomic write request (the server forbids BEGIN itself, since
    every request is already one transaction on every node).
    """

    def __init__(
        self,
        client: Client,
        out: TextIO | None = None,
        err: TextIO | None = None,
        interactive: bool = False,
        mode: str = "table",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.client = client
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.interactive = interactive
        self.mode = mode
        self.timer = interactive
        self.txn: list[str] | None = None
        self.schema = Schema()
        self.failures = 0
        self._depth = 0

    # --- output ---------------------------------------------------------------------------

    def width(self) -> int | None:
        """The terminal's width, or None when output goes to a file or pipe: nothing is
        cut there, since a script's output must keep every value."""
        try:
            if not self.out.isatty():
                return None
            return os.get_terminal_size(self.out.fileno()).columns  # as it is now (resizes)
        except (OSError, ValueError, io.UnsupportedOperation):
            return shutil.get_terminal_size((100, 24)).columns

    def print(self, text: str) -> None:
        print(text, file=self.out)

    def note(self, text: str) -> None:
        """Status lines ("ok", messages) go with the results in the human modes, and to
        stderr in csv/json so that stdout stays machine-readable."""
        if self.mode in ("table", "line"):
            print(text, file=self.out)
        else:
            self.out.flush()
            print(text, file=self.err)

    def error(self, message: str) -> None:
        self.failures += 1
        self.out.flush()
        print(f"error: {message}", file=self.err)
        self.err.flush()

    def print_rows(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        elapsed: float | None = None,
        count: bool = True,
    ) -> None:
        if rows or self.mode in ("table", "csv"):
            text = format_rows(self.mode, columns, rows, self.width())
            if text:
                self.print(text)
        elif self.mode == "json":
            self.print("[]")
        if self.mode in ("csv", "json"):  # no row counts in machine-readable output
            if elapsed is not None and self.timer:
                self.note(self._timed("time:", elapsed).replace("(", "").rstrip(")"))
        elif count:
            self.note(self._timed(f"({plural(len(rows), 'row')})", elapsed))

    def _timed(self, text: str, elapsed: float | None) -> str:
        if elapsed is None or not self.timer:
            return text
        shown = f"{elapsed * 1000:.1f} ms" if elapsed < 1 else f"{elapsed:.2f} s"
        if text.endswith(")"):
            return f"{text[:-1]}, {shown})"
        return f"{text} ({shown})"

    def show(self, result: Result, elapsed: float) -> None:
        if result.columns:
            self.print_rows(result.columns, result.rows, elapsed)
        elif result.rowcount >= 0:
            self.note(self._timed(f"ok, {plural(result.rowcount, 'row')} changed", elapsed))
        else:
            self.note(self._timed("ok", elapsed))

    # --- input ------------------------------------------------------------------------------

    def run_lines(self, lines: Iterable[str]) -> bool:
        """Run every statement and dot-command in ``lines``; False once ``.quit`` ran."""
        return all(self.run_one(item) for item in split_statements(lines))

    def run_file(self, path: Path) -> bool:
        if self._depth >= MAX_READ_DEPTH:
            raise ShellError(f".read nested deeper than {MAX_READ_DEPTH} files (a loop?)")
        self._depth += 1
        try:
            with open(path, encoding="utf-8", newline="") as f:
                return self.run_lines(f)
        finally:
            self._depth -= 1

    def run_one(self, item: str) -> bool:
        """Run one statement or dot-command, printing any error; False means quit."""
        try:
            if item.startswith("."):
                return run_dot(self, item)
            self.run_statement(item)
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            self.client.close()  # a reply may still be on its way: start afresh
            self.error("interrupted (a write already sent may still be applied)")
        except _REPORTED as exc:
            self.error(str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug in the shell: say so, but keep the shell up
            self.error(f"{type(exc).__name__}: {exc} (a bug in the shell, please report it)")
        return True

    def run_statement(self, stmt: str) -> None:
        word = first_word(stmt)
        if word == "BEGIN":
            if self.txn is not None:
                raise ShellError("a transaction is already open: COMMIT or ROLLBACK it first")
            self.txn = []
            if self.interactive:
                self.note("transaction open: statements are sent together at COMMIT")
            return
        if word in ("COMMIT", "END"):
            self._commit()
            return
        if word == "ROLLBACK":
            if self.txn is None:
                raise ShellError("no transaction is open")
            dropped, self.txn = len(self.txn), None
            self.note(f"transaction rolled back: {plural(dropped, 'statement')} not sent")
            return
        if self.txn is not None:
            self.txn.append(stmt)
            return
        if word in DDL:
            self.schema.dirty = True
        started = time.perf_counter()
        result = self.client.execute(stmt)
        self.show(result, time.perf_counter() - started)

    def _commit(self) -> None:
        if self.txn is None:
            raise ShellError("no transaction is open")
        batch, self.txn = self.txn, None
        if not batch:
            self.note("ok, empty transaction")
            return
        if any(first_word(s) in DDL for s in batch):
            self.schema.dirty = True
        started = time.perf_counter()
        try:
            results = self.client.write([(s, ()) for s in batch], atomic=True)
        except errors.RaftsqlError as exc:
            k = exc.details.get("statement")
            which = ""
            if isinstance(k, int) and 0 <= k < len(batch):
                which = f" at statement {k + 1} of {len(batch)} ({' '.join(batch[k].split())})"
            raise ShellError(f"transaction rolled back{which}: {exc}") from exc
        elapsed = time.perf_counter() - started
        for result in results:
            if result.columns:
                self.print_rows(result.columns, result.rows)
        changed = sum(max(r.rowcount, 0) for r in results)
        self.note(
            self._timed(
                f"ok, committed {plural(len(batch), 'statement')} atomically, "
                f"{plural(changed, 'row')} changed",
                elapsed,
            )
        )

    def refresh_schema(self) -> None:
        if self.schema.stale():
            self.schema.refresh(self.client)

    def finish(self) -> None:
        """At the end of input: an open transaction is dropped, as sqlite3 rolls back."""
        if self.txn is not None:
            dropped, self.txn = len(self.txn), None
            self.error(
                f"transaction never committed: {plural(dropped, 'statement')} dropped "
                "(end it with COMMIT;)"
            )


# --- prompts ------------------------------------------------------------------------------


def _prompt_toolkit_loop(shell: Shell, history: Path | None) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from raftsql.shell.completion import SqlCompleter

    lexer: Any = None
    try:
        from prompt_toolkit.lexers import PygmentsLexer
        from pygments.lexers.sql import SqlLexer

        lexer = PygmentsLexer(SqlLexer)
    except ImportError:  # highlighting is a nicety: plain text without pygments
        pass
    file_history: Any = InMemoryHistory()
    if history is not None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            history.touch()
            file_history = FileHistory(str(history))
        except OSError as exc:
            shell.error(f"history not kept: {exc}")
    session: PromptSession[str] = PromptSession(
        history=file_history,
        lexer=lexer,
        completer=SqlCompleter(shell.schema, [*COMMANDS, ".exit"]),
        complete_while_typing=False,
        prompt_continuation=lambda width, _line, _soft: CONTINUATION.rjust(width),
        multiline=Condition(lambda: not is_complete(session.default_buffer.text)),
    )
    while True:
        shell.refresh_schema()
        try:
            text = session.prompt(TXN_PROMPT if shell.txn is not None else PROMPT)
        except KeyboardInterrupt:
            continue  # Ctrl-C clears the line, as in sqlite3 and psql
        except EOFError:
            return
        if not shell.run_lines(text.splitlines(keepends=True)):
            return


def _input_lines(shell: Shell) -> Iterator[str]:
    """Lines from ``input()``, for a terminal on stdin whose output is redirected."""
    buf = ""
    while True:
        try:
            prompt = CONTINUATION.rjust(len(PROMPT)) if buf else PROMPT
            line = input(prompt if shell.txn is None or buf else TXN_PROMPT)
        except EOFError:
            return
        except KeyboardInterrupt:
            buf = ""
            print(file=sys.stderr)
            continue
        buf = "" if is_complete(buf + line) else buf + line + "\n"
        yield line + "\n"


# --- entry point --------------------------------------------------------------------------


def history_file(hosts: str | None, directory: Path) -> Path:
    """Where history is kept: $RAFTSQL_HISTORY; else the local cluster's directory; else
    $RAFTSQL_HOME or ~/.raftsql, for shells on other clusters."""
    if os.environ.get("RAFTSQL_HISTORY"):
        return Path(os.environ["RAFTSQL_HISTORY"]).expanduser()
    if not hosts:
        return directory / "history"
    home = os.environ.get("RAFTSQL_HOME")
    return (Path(home) if home else Path.home() / ".raftsql") / "history"


def run_shell(
    hosts: str | None,
    directory: Path,
    command: str | None = None,
    *,
    history: Path | None = None,
    mode: str = "table",
    timeout: float = 10.0,
) -> int:
    """``raftsql shell``: returns the exit status (1 if a script or -c had an error)."""
    if hosts:
        client = Client(hosts, timeout=timeout)
        where = hosts
    else:
        cluster = LocalCluster(directory=directory)
        print(f"starting the local cluster in {directory} ...", file=sys.stderr)
        try:
            cluster.start()
        except (OSError, TimeoutError) as exc:
            print(f"error: the local cluster did not start: {exc}", file=sys.stderr)
            return 1
        client = cluster.client(timeout=timeout)
        where = f"local cluster in {directory} ({', '.join(cluster.addresses())})"
    interactive = command is None and sys.stdin.isatty()
    shell = Shell(client, interactive=interactive, mode=mode)
    with client:
        try:
            if command is not None:
                shell.run_lines(command.splitlines(keepends=True))
            elif interactive:
                print(f"raftsql shell {__version__}: {where}")
                print("Enter .help for help. Statements end with ';' and may span lines.")
                if sys.stdout.isatty() and importlib.util.find_spec("prompt_toolkit"):
                    _prompt_toolkit_loop(shell, history or history_file(hosts, directory))
                else:
                    shell.run_lines(_input_lines(shell))
            else:
                shell.run_lines(sys.stdin)
        except KeyboardInterrupt:  # Ctrl-C during a script or -c: stop there
            print("\ninterrupted", file=sys.stderr)
            return 130
        shell.finish()
    sys.stdout.flush()
    if interactive:
        return 0
    return 1 if shell.failures else 0
