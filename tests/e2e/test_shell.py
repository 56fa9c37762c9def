"""`raftsql shell` driven through a real pseudo-terminal (pexpect), against real clusters.

One cluster serves the whole module (each test uses its own tables); the tests that need a
fresh or a damaged cluster start their own with ``make_cluster``. Expectations are matched
on the terminal output with ANSI escapes removed, and only ever against text the shell
prints as results (a table row, a status line): the echo of what was typed is re-rendered
by prompt_toolkit and must not satisfy an expectation by accident.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from raftsql.cluster import LocalCluster, free_ports
from raftsql.shell.loading import read_restore_file
from raftsql.shell.splitter import split_sql
from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.timeout(180)

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, modes
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles
    r"|\x1b[()][A-Za-z0-9]|\x1b[=>78]"  # charsets, keypad, save/restore cursor
)
PROMPT = "<prompt>"
"""Each new prompt turns bracketed paste on (ESC [?2004h) once, while the re-renders of a
line being typed do not: that is how a test knows the shell finished the previous input,
even when it printed nothing (a statement buffered inside BEGIN ... COMMIT)."""
UP = "\x1b[A"


def clean(raw: str) -> str:
    return _ANSI.sub("", raw.replace("\x1b[?2004h", PROMPT)).replace("\r", "")


class Term:
    """The shell in a 40x120 pseudo-terminal, with expectations on the cleaned output."""

    def __init__(self, hosts: str, home: Path, *args: str) -> None:
        env = dict(os.environ, RAFTSQL_HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        for name in ("RAFTSQL_HISTORY", "COLUMNS", "LINES"):
            env.pop(name, None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "raftsql", "shell", hosts, *args],
            env=env,
            dimensions=(40, 120),
            encoding="utf-8",
            codec_errors="replace",
        )
        self.raw = ""
        self.pos = 0  # how far into clean(self.raw) expectations have consumed
        self.expect(PROMPT)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until ``pattern`` appears after what earlier expectations consumed."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = clean(self.raw)
            m = rx.search(text, self.pos)
            if m is not None:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            ended = not self._read(min(max(left, 0.01), 0.5)) and not self.child.isalive()
            if left <= 0 or (ended and rx.search(clean(self.raw), self.pos) is None):
                raise AssertionError(
                    f"{pattern!r} not seen within {timeout}s (shell alive: "
                    f"{self.child.isalive()}); the output after the last match:\n"
                    f"{text[self.pos :][-3000:]}"
                )

    def _read(self, timeout: float) -> bool:
        try:
            self.raw += self.child.read_nonblocking(1 << 16, timeout=timeout)
            return True
        except (pexpect.TIMEOUT, pexpect.EOF):
            return False

    def run(self, line: str, *patterns: str) -> list[re.Match[str]]:
        """Type a line, press Enter, expect each pattern in turn, then the next prompt."""
        self.child.send(line + "\r")
        found = [self.expect(p) for p in patterns]
        self.expect(PROMPT)
        return found

    def quit(self) -> None:
        self.child.send(".quit\r")
        self.child.expect(pexpect.EOF, timeout=20)
        self.child.close()
        assert self.child.exitstatus == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(directory=tmp_path_factory.mktemp("shell") / "cluster")
    c.start(timeout=30)
    yield c
    c.stop()


@pytest.fixture
def hosts(cluster: LocalCluster) -> str:
    return ",".join(cluster.addresses())


@pytest.fixture
def term(hosts: str, tmp_path: Path) -> Iterator[Term]:
    t = Term(hosts, tmp_path / "home")
    yield t
    t.child.close(force=True)


# --- statements, transactions, errors ---------------------------------------------------


def test_multi_line_statements_and_results(term: Term) -> None:
    term.run("CREATE TABLE ml (id INTEGER PRIMARY KEY, name TEXT, n REAL);", r"\nok")
    term.child.send("INSERT INTO ml (name, n)\r")
    term.expect(r"\.\.\.>")  # the continuation prompt: the statement is not finished
    term.child.send("  VALUES ('semi;colon', 1.5),\r")
    term.expect(r"\.\.\.>")
    term.run("  ('it''s', NULL);", r"ok, 2 rows changed")
    term.run(
        "SELECT id, name, n FROM ml ORDER BY id;",
        r"\|\s+1 \| semi;colon\s+\|\s+1\.5 \|",
        r"\|\s+2 \| it's\s+\|\s+NULL \|",
        r"\(2 rows, [0-9.]+ ms\)",
    )
    term.run("SELECT 1 AS a; SELECT 2 AS b;", r"\|\s+1 \|", r"\|\s+2 \|")
    # A result wider than the terminal is cut to fit its 120 columns.
    (row,) = term.run(
        "SELECT 1 AS id, printf('%.300c', 'x') AS wide, 'end' AS last;", r"\|\s+1 \| x+… \| end  \|"
    )
    assert len(row.group()) <= 120
    term.quit()


def test_begin_commit_is_one_atomic_request_and_rollback_drops(term: Term) -> None:
    term.run("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0));")
    term.run("INSERT INTO acct VALUES (1, 100), (2, 0);", r"ok, 2 rows changed")
    term.run("BEGIN;", r"transaction open")
    term.run("UPDATE acct SET balance = balance - 30 WHERE id = 1;")  # buffered: no output
    term.run("UPDATE acct SET balance = balance + 30 WHERE id = 2;")
    term.run("COMMIT;", r"ok, committed 2 statements atomically, 2 rows changed")
    term.run("SELECT balance FROM acct ORDER BY id;", r"\|\s+70 \|\n\|\s+30 \|")
    # A failing statement rolls the whole transaction back.
    term.run("BEGIN;", r"transaction open")
    term.run("UPDATE acct SET balance = balance + 500 WHERE id = 2;")
    term.run("UPDATE acct SET balance = balance - 500 WHERE id = 1;")
    term.run(
        "COMMIT;",
        r"error: transaction rolled back at statement 2 of 2 \(UPDATE acct .*CHECK constraint",
    )
    term.run("BEGIN;", r"transaction open")
    term.run("DELETE FROM acct;")
    term.run("ROLLBACK;", r"transaction rolled back: 1 statement not sent")
    term.run("SELECT sum(balance) AS total FROM acct;", r"\|\s+100 \|")
    term.run("COMMIT;", r"error: no transaction is open")
    term.quit()


def test_errors_are_printed_and_the_shell_stays_up(term: Term) -> None:
    term.run("SELEC 1;", r'error: near "SELEC": syntax error')
    term.run("SELECT changes();", r"error: changes\(\) is not allowed")
    term.run("CREATE TEMP TABLE tmp (x);", r"error: TEMP objects are not allowed")
    term.run("PRAGMA journal_mode = delete;", r"error: PRAGMA journal_mode is not allowed")
    term.run("SELECT * FROM no_such_table;", r"error: no such table: no_such_table")
    term.run(".bogus", r"error: unknown command \.bogus")
    term.run(".read /no/such/file.sql", r"error: .*No such file")
    term.run(".mode fancy", r"error: usage: \.mode")
    term.child.send("SELECT 'interrupted'\r")  # half a statement, then Ctrl-C clears it
    term.expect(r"\.\.\.>")
    term.child.send("\x03")
    term.run("SELECT 6 * 7 AS answer;", r"\|\s+42 \|")
    term.quit()


def test_no_reachable_node_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (dead,) = free_ports(1)
    t = Term(f"127.0.0.1:{dead}", tmp_path / "home", "--timeout", "1")
    try:
        t.run("SELECT 1;", r"error: no answer within 1\.0s .*(refused|Connection)")
        t.run(".nodes", r"error: no answer within")
        t.run(".help", r"\.restore FILE")
        t.quit()
    finally:
        t.child.close(force=True)


def test_nodes_show_a_node_that_is_down(make_cluster: Callable[..., LocalCluster]) -> None:
    own = make_cluster(3)
    t = Term(",".join(own.addresses()), own.directory)
    try:
        t.run(".nodes", r"(\|\s+[123] \| 127\.0\.0\.1:\d+ \| (leader|follower) .*\| up\s+\|\n){3}")
        leader = own.wait_for_leader()
        victim = next(i for i in (1, 2, 3) if i != leader)
        own.kill(victim)
        t.run(".nodes", rf"\|\s+{victim} \| 127\.0\.0\.1:\d+ \| -\s+\|.*unreachable")
        t.run("CREATE TABLE still_ok (x); INSERT INTO still_ok VALUES (1);", r"ok, 1 row changed")
        t.quit()
    finally:
        t.child.close(force=True)


# --- dot-commands -----------------------------------------------------------------------


def test_dot_commands(term: Term, tmp_path: Path) -> None:
    term.run(
        "CREATE TABLE dots (id INTEGER PRIMARY KEY, label TEXT, data BLOB);",
        r"\nok",
    )
    term.run("CREATE INDEX dots_label ON dots (label);", r"\nok")
    term.run("INSERT INTO dots VALUES (1, 'one', x'00ff'), (2, NULL, NULL);", r"2 rows changed")
    term.run(".help", r"\.nodes\s+every node", r"\.import FILE TABLE")
    term.run(".tables", r"\bdots\b")
    assert "_raftsql" not in clean(term.raw)
    term.run(
        ".schema dots", r"CREATE TABLE dots \(id INTEGER PRIMARY KEY, label TEXT, data BLOB\);"
    )
    term.run(".indexes dots", r"\| dots_label \| dots\s+\| no\s+\| label\s+\|")
    term.run(".nodes", r"\| leader\s+\|")
    term.run(".status", r"log\s+\d+\.\.\d+, commit \d+, applied \d+", r"reads\s+linearizable")
    term.run(".leader", r"leader: node [123] at 127\.0\.0\.1:\d+ \(term \d+\)")
    term.run(".consistency stale")
    term.run(".consistency", r"consistency: stale")
    term.run("SELECT count(*) AS n FROM dots;", r"\|\s+2 \|")  # a stale read, still served
    term.run(".consistency linearizable")
    term.run(".mode csv")
    term.run("SELECT id, label, data FROM dots ORDER BY id;", r"id,label,data\n1,one,x'00ff'\n2,,")
    term.run(".mode json")
    term.run(
        "SELECT id, label FROM dots ORDER BY id;",
        r'\[\{"id": 1, "label": "one"\},\n\{"id": 2, "label": null\}\]',
    )
    term.run(".mode line")
    term.run("SELECT id, label FROM dots WHERE id = 1;", r"   id = 1\nlabel = one")
    term.run(".mode table")
    term.run(".mode", r"mode: table")
    term.run(".timer off")
    term.run("SELECT 1 AS one;", r"\(1 row\)\n")
    term.run(".timer on")
    term.run("SELECT 1 AS one;", r"\(1 row, [0-9.]+ ms\)")
    script = tmp_path / "script.sql"
    script.write_text(
        "INSERT INTO dots VALUES (3, 'three', NULL);\nSELECT max(id) AS m FROM dots;\n"
    )
    term.run(f".read {script}", r"1 row changed", r"\|\s+3 \|")
    term.run(
        ".dump dots",
        r"CREATE TABLE dots \(id INTEGER PRIMARY KEY, label TEXT, data BLOB\);\n"
        r"INSERT INTO dots VALUES\(1,'one',x'00ff'\);\n"
        r"INSERT INTO dots VALUES\(2,NULL,NULL\);\n"
        r"INSERT INTO dots VALUES\(3,'three',NULL\);\n"
        r"CREATE INDEX dots_label ON dots \(label\);",
    )
    backup = tmp_path / "backup.sql"
    term.run(
        f".backup {backup}", rf"backed up \d+ tables? and \d+ rows? to {re.escape(str(backup))}"
    )
    assert "INSERT INTO dots VALUES(1,'one',x'00ff');" in backup.read_text()
    term.quit()


def test_history_is_kept_across_runs(hosts: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Term(hosts, home)
    first.run("SELECT 'first-run-marker' AS m;", r"\| first-run-marker \|")
    first.quit()
    assert "SELECT 'first-run-marker' AS m;" in (home / "history").read_text()
    second = Term(hosts, home)
    try:
        second.child.send(UP)  # recall the last line of the first run: `.quit`
        second.child.send(UP)  # and the statement before it
        second.child.send("\r")
        second.expect(r"\| first-run-marker \|")
        second.expect(PROMPT)
        second.quit()
    finally:
        second.child.close(force=True)


def test_completion_knows_new_tables(term: Term) -> None:
    term.run("CREATE TABLE completion_target (x INTEGER);", r"\nok")
    term.run("INSERT INTO completion_target VALUES (7), (8);", r"2 rows changed")
    term.child.send("SELECT sum(x) AS total FROM completion_ta\t")
    term.expect(r"FROM completion_target")  # Tab finished the name
    term.run(";", r"\|\s+15 \|")
    term.quit()


# --- bulk loading -----------------------------------------------------------------------


def test_import_csv_and_restore_a_dump_with_progress(term: Term, tmp_path: Path) -> None:
    rows = 3000
    people = tmp_path / "people.csv"
    with open(people, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "score", "zip"])
        for k in range(1, rows + 1):
            w.writerow([k, f"person {k}, the {k % 7}th", f"{k / 4}", f"0{k % 10000:04d}"])
    term.run(
        f".import {people} people",
        rf"import people: {rows}/{rows} rows \(100%",
        rf"imported {rows} rows into people",
    )
    term.run(
        "SELECT count(*), sum(id), typeof(score), typeof(zip), "
        "(SELECT name || '/' || zip FROM people WHERE id = 999) AS who FROM people;",
        rf"\|\s+{rows} \|\s+{rows * (rows + 1) // 2} \| real\s+\| text\s+\| "
        r"person 999, the 5th/00999 \|",
    )
    term.run(
        ".schema people", r"CREATE TABLE people \(id INTEGER, name TEXT, score REAL, zip TEXT\)"
    )
    # Into an existing table: the header picks the columns.
    more = tmp_path / "more.csv"
    more.write_text("name,id\nlate,5001\n")
    term.run(f".import {more} people", r"imported 1 row into people")
    term.run(f".import {tmp_path / 'missing.csv'} people", r"error: .*No such file")

    # A sqlite3-style dump (transaction lines included) with a few thousand statements.
    dump = tmp_path / "restore.sql"
    lines = [
        "PRAGMA foreign_keys=OFF;",
        "BEGIN TRANSACTION;",
        "CREATE TABLE restored (id INTEGER PRIMARY KEY, body TEXT, raw BLOB);",
        "CREATE TABLE restored_log (n INTEGER);",
    ]
    lines += [
        f"INSERT INTO restored VALUES({k},'body {k}; ''q''',x'{k:04x}');" for k in range(2500)
    ]
    lines += [
        "CREATE TRIGGER restored_ins AFTER INSERT ON restored BEGIN",
        "  INSERT INTO restored_log VALUES (new.id);",
        "END;",
        "COMMIT;",
    ]
    dump.write_text("\n".join(lines) + "\n")
    term.run(
        f".restore {dump}",
        r"restore: 2503/2503 statements \(100%",
        r"restored 2503 statements from",
    )
    term.run(
        "SELECT count(*), (SELECT body FROM restored WHERE id = 7), hex(max(raw)) FROM restored;",
        r"\|\s+2500 \| body 7; 'q'\s+\| 09C3\s+\|",
    )
    term.run("SELECT count(*) AS fired FROM restored_log;", r"\|\s+0 \|")  # after the data
    term.quit()


def test_backup_restores_into_a_fresh_cluster(
    hosts: str, tmp_path: Path, make_cluster: Callable[..., LocalCluster]
) -> None:
    home = tmp_path / "home"
    setup = (
        "CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB, t TEXT);\n"
        "CREATE TABLE kid (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id));\n"
        "INSERT INTO parent (v, t) VALUES (x'00', 'a\nb'), (NULL, 'it''s'), (x'', NULL);\n"
        "INSERT INTO kid VALUES (1, 1), (2, 3);\n"
        "CREATE VIEW kids AS SELECT kid.id, parent.t FROM kid\n"
        "  JOIN parent ON parent.id = kid.parent;\n"
    )
    done = run_cli("shell", hosts, home=home, stdin=setup)
    assert done.returncode == 0, done.stderr
    sql_file, db_file = tmp_path / "all.sql", tmp_path / "all.db"
    for target in (sql_file, db_file):
        made = run_cli("shell", hosts, "-c", f".backup {target}", home=home)
        assert made.returncode == 0 and "backed up" in made.stdout, made.stderr
    original = run_cli("shell", hosts, "-c", ".dump", home=home).stdout
    assert "INSERT INTO parent VALUES(1,x'00','a\nb');" in original
    # The SQLite backup holds the same database: .restore reads it back as this dump.
    assert db_file.read_bytes().startswith(b"SQLite format 3\x00")
    assert list(read_restore_file(db_file).statements()) == split_sql(original)[0]

    fresh = make_cluster(3)
    where = ",".join(fresh.addresses())
    restored = run_cli("shell", where, "-c", f".restore {sql_file}", home=home)
    assert restored.returncode == 0, restored.stderr
    assert re.search(r"restore: (\d+)/\1 statements \(100%", restored.stderr), restored.stderr
    assert "restored" in restored.stdout
    assert run_cli("shell", where, "-c", ".dump", home=home).stdout == original


# --- non-interactive ----------------------------------------------------------------------


def test_scripts_on_stdin_and_dash_c(hosts: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = (
        "CREATE TABLE script_t (x INTEGER, y TEXT);\n"
        "CREATE TRIGGER script_trg AFTER INSERT ON script_t BEGIN\n"
        "  UPDATE script_t SET y = 'seen; ' || new.x WHERE rowid = new.rowid;\n"
        "END;\n"
        "BEGIN;\nINSERT INTO script_t (x) VALUES (1);\nINSERT INTO script_t (x) VALUES (2);\n"
        "COMMIT;\n"
        "SELEC oops;\n"
        "SELECT sum(x) AS s, max(y) AS y FROM script_t;\n"
    )
    done = run_cli("shell", hosts, home=home, stdin=script)
    assert done.returncode == 1  # one statement failed ...
    assert 'error: near "SELEC"' in done.stderr
    assert re.search(r"\|\s+3 \| seen; 2 \|", done.stdout), done.stdout  # ... the rest ran
    assert "committed 2 statements atomically" in done.stdout
    assert not (home / "history").exists()  # scripts leave no history
    assert "\x1b" not in done.stdout  # no terminal codes when not on a terminal

    one = run_cli("shell", hosts, "-c", "SELECT count(*) AS n FROM script_t; SELECT 5", home=home)
    assert one.returncode == 0, one.stderr
    assert re.search(r"\|\s+2 \|", one.stdout) and re.search(r"\|\s+5 \|", one.stdout)
    tables = run_cli("shell", hosts, "-c", ".tables script%", home=home)
    assert tables.stdout.split() == ["script_t"]
    as_csv = run_cli(
        "shell", hosts, "--mode", "csv", "-c", "SELECT x, y FROM script_t ORDER BY x", home=home
    )
    assert as_csv.stdout == "x,y\n1,seen; 1\n2,seen; 2\n"
    bad = run_cli("shell", hosts, "-c", "SELECT * FROM nowhere", home=home)
    assert bad.returncode == 1 and "error: no such table: nowhere" in bad.stderr
