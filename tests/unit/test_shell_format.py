"""The shell's pure parts: where statements end, how results print, how values are dumped.

No cluster here: the dump is checked against SQLite files built with the standard
library's sqlite3 (the dump reads through a query function, so it dumps those the same way
it dumps a cluster), and the completer against prompt_toolkit documents.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from raftsql.shell.completion import SqlCompleter
from raftsql.shell.dump import dump_sql, sql_literal
from raftsql.shell.formatting import (
    display_width,
    fit_widths,
    format_csv,
    format_json,
    format_line,
    format_table,
)
from raftsql.shell.loading import (
    Progress,
    column_names,
    infer_type,
    parameterize,
    read_csv,
    restorable,
    sqlite_query,
)
from raftsql.shell.schema import Schema
from raftsql.shell.splitter import (
    first_word,
    is_complete,
    next_statement,
    split_sql,
    split_statements,
)
from raftsql.shell.sqlwords import quote_ident

# --- statement splitting ---------------------------------------------------------------


def stmts(text: str) -> list[str]:
    return list(split_statements(text.splitlines(keepends=True)))


def test_statements_end_at_semicolons_outside_quotes_and_comments() -> None:
    text = (
        "SELECT 'a;b', \"c;d\", [e;f], `g;h` FROM t; -- trailing; comment\n"
        "INSERT INTO t VALUES ('it''s; fine');\n"
        "/* block; comment */ SELECT 2\n"
        "  ;\n"
    )
    assert stmts(text) == [
        "SELECT 'a;b', \"c;d\", [e;f], `g;h` FROM t;",
        "INSERT INTO t VALUES ('it''s; fine');",
        "SELECT 2\n  ;",
    ]


def test_several_statements_on_one_line_and_empty_ones() -> None:
    assert stmts("SELECT 1;; ;SELECT 2;\n") == ["SELECT 1;", "SELECT 2;"]


def test_multi_line_strings_keep_their_newlines() -> None:
    assert stmts("INSERT INTO t VALUES ('a;\nb;\nc');\n") == ["INSERT INTO t VALUES ('a;\nb;\nc');"]


def test_a_trigger_body_is_one_statement() -> None:
    trigger = (
        "CREATE TRIGGER log AFTER INSERT ON t BEGIN\n"
        "  INSERT INTO audit VALUES (new.id, 'a;b');\n"
        "  UPDATE t SET x = CASE WHEN new.x IS NULL THEN 0 ELSE new.x END WHERE id = new.id;\n"
        "END;"
    )
    text = f"CREATE TABLE t (x);\n{trigger}\nSELECT 1;\n"
    assert stmts(text) == ["CREATE TABLE t (x);", trigger, "SELECT 1;"]
    temp = "create temp trigger tr before delete on t begin select 1; select 2; end;"
    assert split_sql(temp + " select 3;") == ([temp, "select 3;"], "")
    assert not is_complete("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;")
    assert not is_complete("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")


def test_words_that_only_look_like_trigger_keywords() -> None:
    assert stmts("SELECT 'CREATE TRIGGER'; SELECT \"end\";\n") == [
        "SELECT 'CREATE TRIGGER';",
        'SELECT "end";',
    ]
    assert stmts("CREATE TABLE trigger_log (a);\n") == ["CREATE TABLE trigger_log (a);"]


def test_unfinished_input_and_dot_commands() -> None:
    assert is_complete("")
    assert is_complete("  -- just a comment")
    assert is_complete(".tables")
    assert is_complete("SELECT 1;")
    assert not is_complete("SELECT 1")
    assert not is_complete("SELECT 'a;")
    assert not is_complete("SELECT 1; /* open comment;")
    assert next_statement("SELECT [open;") is None
    # A dot-command counts only where a statement could start.
    assert stmts(".tables\nSELECT 1\n.5;\n.schema t\n") == [".tables", "SELECT 1\n.5;", ".schema t"]
    # Whatever is left at the end is sent anyway (the server says what is wrong with it).
    assert stmts("SELECT 1;\nSELEC 2\n-- note\n") == ["SELECT 1;", "SELEC 2\n-- note"]
    assert stmts("SELECT 1; -- only a comment after\n") == ["SELECT 1;"]


def test_leading_comments_are_not_part_of_the_statement() -> None:
    assert stmts("-- note\n/* more */ BEGIN;\n") == ["BEGIN;"]
    assert first_word("-- x\n  commit;") == "COMMIT"
    assert first_word("'text'") == ""


# --- result formatting --------------------------------------------------------------------

COLUMNS = ["id", "name", "note"]
ROWS: list[tuple[Any, ...]] = [
    (1, "apple", "x" * 200),
    (22, None, "short"),
    (3, "pear, ripe", b"\x00\xff"),
]


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_a_table_fits_the_terminal_width(width: int) -> None:
    out = format_table(COLUMNS, ROWS, width)
    lines = out.splitlines()
    assert all(display_width(line) <= width for line in lines), out
    assert len({display_width(line) for line in lines}) == 1  # a straight box
    assert "…" in out  # the long value was cut
    assert "|  1 |" in out and "| 22 |" in out  # the narrow id column stays whole
    assert "NULL" in out and "x'00ff'" in out


def test_without_a_width_nothing_is_cut() -> None:
    out = format_table(COLUMNS, ROWS, None)
    assert "x" * 200 in out and "…" not in out


def test_table_cells_stay_on_one_line_and_wide_characters_count_double() -> None:
    out = format_table(["v"], [("a\nb",), ("日本語",)], 80)
    assert "a\\nb" in out
    lines = out.splitlines()
    assert len(lines) == 6
    assert len({display_width(line) for line in lines}) == 1


def test_fit_widths_cuts_the_widest_columns_first() -> None:
    assert fit_widths([2, 50, 10], None) == [2, 50, 10]
    assert fit_widths([2, 50, 10], 100) == [2, 50, 10]
    widths = fit_widths([2, 50, 10], 40)
    assert widths[0] == 2 and widths[2] == 10 and sum(widths) + 3 * 3 + 1 == 40
    assert fit_widths([30, 30], 10) == [4, 4]  # never below the minimum


def test_csv_mode_quotes_properly() -> None:
    out = format_csv(["a", "b"], [("x,y", 'say "hi"'), (None, "two\nlines"), (1.5, b"\x01")])
    assert out.splitlines()[0] == "a,b"
    assert '"x,y","say ""hi"""' in out
    assert ',"two\nlines"' in out
    assert "1.5,x'01'" in out


def test_json_mode_is_valid_json() -> None:
    rows = [(1, "a", None, b"\x00"), (2, "b", math.inf, 0.5)]
    parsed = json.loads(format_json(["id", "s", "f", "v"], rows))
    assert parsed == [
        {"id": 1, "s": "a", "f": None, "v": "x'00'"},
        {"id": 2, "s": "b", "f": None, "v": 0.5},
    ]
    assert format_json(["x"], []) == "[]"


def test_line_mode() -> None:
    out = format_line(["id", "longname"], [(1, "a"), (2, None)])
    assert out == "      id = 1\nlongname = a\n\n      id = 2\nlongname = NULL"


# --- dump quoting and the dump itself -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (42, "42"),
        (-9223372036854775808, "-9223372036854775808"),
        (1.5, "1.5"),
        (1e300, "1e+300"),
        (math.inf, "1e999"),
        (-math.inf, "-1e999"),
        (math.nan, "NULL"),
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("two\nlines", "'two\nlines'"),
        ("nul\x00inside", "CAST(x'6e756c00696e73696465' AS TEXT)"),
        (b"\x00\xffA", "x'00ff41'"),
        (b"", "x''"),
    ],
)
def test_sql_literals(value: Any, literal: str) -> None:
    assert sql_literal(value) == literal


@pytest.mark.parametrize(
    "value", [0, -1, 2**63 - 1, 0.1, -0.0, 1e-300, "", "é ü 日本", "a\r\nb", "q'\"", b"\x00"]
)
def test_sql_literals_read_back_as_the_same_value_and_type(value: Any) -> None:
    con = sqlite3.connect(":memory:")
    got, kind = con.execute(f"SELECT {sql_literal(value)}, typeof({sql_literal(value)})").fetchone()
    assert got == value and type(got) is type(value)
    assert kind == {int: "integer", float: "real", str: "text", bytes: "blob"}[type(value)]


def test_quote_ident() -> None:
    assert quote_ident("people") == "people"
    assert quote_ident("order") == '"order"'
    assert quote_ident("two words") == '"two words"'
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("1st") == '"1st"'


def _db(path: Path | str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA foreign_keys = ON")
    return con


def test_dump_rebuilds_the_database() -> None:
    src = _db(":memory:")
    src.executescript(
        """
        CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id),
                            "odd name" TEXT);
        CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB, r REAL);
        CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE audit (n INTEGER);
        CREATE INDEX child_parent ON child(parent);
        CREATE TRIGGER child_audit AFTER INSERT ON child BEGIN
            INSERT INTO audit VALUES (new.id);
        END;
        CREATE VIEW v_child AS SELECT * FROM child;
        PRAGMA user_version = 7;
        """
    )
    src.execute("INSERT INTO parent (v, r) VALUES (x'00ff', 1.5), (NULL, -0.25)")
    src.execute("DELETE FROM parent WHERE id = 2")  # sqlite_sequence stays at 2
    src.executemany(
        'INSERT INTO child (id, parent, "odd name") VALUES (?, 1, ?)',
        [(k, f"row {k} it's;\n") for k in range(1, 2501)],
    )
    src.executemany("INSERT INTO kv VALUES (?, ?)", [("b", 2), ("a", None)])
    src.execute("INSERT INTO gen (a) VALUES (21)")
    before = src.execute("SELECT count(*) FROM audit").fetchone()[0]

    dump = list(dump_sql(sqlite_query(src), page=1000))
    text = "\n".join(dump)
    # Parents first, data before triggers, sequence and user_version kept.
    assert text.index("CREATE TABLE parent") < text.index("CREATE TABLE child")
    assert text.index("INSERT INTO child") < text.index("CREATE TRIGGER child_audit")
    assert "INSERT INTO gen(a) VALUES(21);" in text
    assert "INSERT INTO sqlite_sequence VALUES('parent',2);" in text
    assert text.rstrip().endswith("PRAGMA user_version = 7;")

    dst = _db(":memory:")
    statements, rest = split_sql(text)
    assert rest == "" and len(statements) == len(dump) - 1  # the header is a comment
    for stmt in statements:
        dst.execute(stmt)
    for table in ("parent", "child", "gen", "kv", "audit", "sqlite_sequence"):
        q = f"SELECT * FROM {table} ORDER BY 1"
        assert dst.execute(q).fetchall() == src.execute(q).fetchall(), table
    assert dst.execute("SELECT count(*) FROM audit").fetchone()[0] == before  # no double firing
    assert dst.execute("PRAGMA user_version").fetchone()[0] == 7
    assert list(dump_sql(sqlite_query(dst), page=1000)) == dump


def test_dump_of_one_table() -> None:
    con = _db(":memory:")
    con.executescript("CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO b VALUES (1);")
    dump = list(dump_sql(sqlite_query(con), ["B"]))
    assert dump[1:] == ["CREATE TABLE b (y);", "INSERT INTO b VALUES(1);"]


def test_restore_skips_what_a_replicated_replay_must_not_send() -> None:
    assert not restorable("BEGIN TRANSACTION;")
    assert not restorable("COMMIT;")
    assert not restorable("PRAGMA foreign_keys=OFF;")
    assert restorable("PRAGMA user_version = 3;")
    assert restorable("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;")
    assert restorable("INSERT INTO t VALUES ('BEGIN');")


def test_restore_sends_dumped_inserts_with_parameters() -> None:
    values = (None, 0, -5, 2**63 - 1, 1.5, -0.0, 1e300, math.inf, "it's;\n", "a\x00b", b"\x00\xff")
    stmt = 'INSERT INTO "my t"(a,b) VALUES(' + ",".join(sql_literal(v) for v in values) + ");"
    sql, params = parameterize(stmt)
    assert sql == 'INSERT INTO "my t"(a,b) VALUES(' + ",".join("?" * len(values)) + ")"
    assert params == values
    assert [type(p) for p in params] == [type(v) for v in values]
    assert math.copysign(1, params[5]) == -1
    # An integer literal beyond 64 bits is REAL in SQLite, so it must be a float here too.
    assert parameterize("INSERT INTO t VALUES(9223372036854775808);")[1] == (2.0**63,)
    for other in (
        "INSERT INTO t VALUES(1),(2);",
        "INSERT INTO t VALUES(random());",
        "INSERT INTO t VALUES(0x10);",
        "INSERT INTO t VALUES(1,);",
        "INSERT INTO t SELECT 1;",
        "INSERT OR REPLACE INTO t VALUES(1);",
        "INSERT INTO t VALUES(replace('a\\nb','\\n',char(10)));",
        "CREATE TABLE t (x);",
    ):
        assert parameterize(other) == (other, ())


# --- .import helpers, progress ------------------------------------------------------------


def test_csv_column_types_are_inferred() -> None:
    assert infer_type(["1", "-2", ""]) == "INTEGER"
    assert infer_type(["1", "2.5", "1e3"]) == "REAL"
    assert infer_type(["1", "x"]) == "TEXT"
    assert infer_type(["007", "12"]) == "TEXT"  # leading zeros would be lost
    assert infer_type(["", ""]) == "TEXT"
    assert infer_type([str(2**63)]) == "REAL"
    assert column_names(["a", "", "A", "b "]) == ["a", "c2", "A_2", "b"]


def test_read_csv_rejects_ragged_rows(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text('\ufeffa,b\n1,"x,y"\n\n2,z\n', encoding="utf-8")
    assert read_csv(good) == (["a", "b"], [["1", "x,y"], ["2", "z"]])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(Exception, match="line 3: 1 fields, but the header has 2"):
        read_csv(bad)


def test_progress_off_a_terminal_writes_whole_lines() -> None:
    out = io.StringIO()
    progress = Progress("import t", 3000, "rows", out)
    progress.update(1500)
    progress.update(3000)
    progress.close()
    assert out.getvalue().splitlines()[-1].startswith("import t: 3000/3000 rows (100%, ")
    assert "\r" not in out.getvalue()


# --- completion -------------------------------------------------------------------------


def complete(text: str) -> list[str]:
    schema = Schema()
    schema.tables = {"people": ["id", "name"], "order items": ["sku"]}
    completer = SqlCompleter(schema, [".tables", ".timer", ".help"])
    event = CompleteEvent(completion_requested=True)
    return [c.text for c in completer.get_completions(Document(text), event)]


def test_completion_of_keywords_tables_columns_and_commands() -> None:
    assert "SELECT" in complete("SEL")
    assert "select" in complete("sel")
    assert complete("SELECT * FROM pe") == ["people"]
    assert complete("SELECT * FROM people p WHERE p.") == ["id", "name"]
    assert '"order items"' in complete("SELECT * FROM ord")
    assert "name" in complete("SELECT * FROM people WHERE na")
    assert complete(".t") == [".tables", ".timer"]
    assert complete(".timer o") == ["on", "off"]
    assert complete(".schema p") == ["people"]


def test_the_shell_does_not_need_the_server_side() -> None:
    """Like the client, the shell must run without sqlglot and apsw (raftsql.sql)."""
    code = (
        "import sys, raftsql.shell, raftsql.shell.completion, raftsql.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlglot', 'apsw')"
        " or m.startswith(('raftsql.sql', 'raftsql.server'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
