"""The leader's classifier: read or write, parameters, and refusal (with a message that names
the problem) of everything that cannot be replicated. The lexer is checked against SQLite
itself, and the cache is checked to really be used."""

from __future__ import annotations

import enum
import time

import apsw
import apsw.ext
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsql.errors import ForbiddenSQL, NonDeterministicSQL, ParameterError, SQLError
from raftsql.sql import lexer, statements
from raftsql.sql.statements import ParamStyle, check_params, classify, split_script

# --- reads and writes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "verb", "is_write"),
    [
        ("SELECT 1", "SELECT", False),
        ("select a, b from t where a > 1 order by b", "SELECT", False),
        ("VALUES (1), (2)", "VALUES", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "SELECT", False),
        (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c) SELECT n FROM c",
            "SELECT",
            False,
        ),
        ("WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM x", "INSERT", True),
        ("WITH d AS (SELECT id FROM t) DELETE FROM t WHERE id IN d", "DELETE", True),
        ("WITH u(v) AS (VALUES (1)) UPDATE t SET a = (SELECT v FROM u)", "UPDATE", True),
        ("INSERT INTO t VALUES (1, 2) RETURNING *", "INSERT", True),
        ("INSERT INTO t SELECT * FROM u WHERE u.a > 0", "INSERT", True),
        ("REPLACE INTO t VALUES (1)", "REPLACE", True),
        ("INSERT OR REPLACE INTO t VALUES (1)", "INSERT", True),
        (
            "INSERT INTO t(a, b) VALUES (1, 2) ON CONFLICT(a) DO UPDATE SET b = excluded.b",
            "INSERT",
            True,
        ),
        ("INSERT INTO t(a) VALUES (1) ON CONFLICT DO NOTHING", "INSERT", True),
        ("UPDATE t SET a = a + 1 RETURNING a", "UPDATE", True),
        ("DELETE FROM t RETURNING *", "DELETE", True),
        ("CREATE TABLE t(a INT PRIMARY KEY, b TEXT) STRICT", "CREATE", True),
        ("CREATE TABLE t(a) WITHOUT ROWID", "CREATE", True),
        ("CREATE INDEX i ON t(a)", "CREATE", True),
        ("CREATE VIEW v AS SELECT * FROM t", "CREATE", True),
        ("CREATE VIRTUAL TABLE f USING fts5(body)", "CREATE", True),
        ("DROP TABLE IF EXISTS t", "DROP", True),
        ("ALTER TABLE t ADD COLUMN c", "ALTER", True),
        ("ALTER TABLE t RENAME TO u", "ALTER", True),
        ("ANALYZE", "ANALYZE", True),
        ("REINDEX", "REINDEX", True),
        ("PRAGMA table_info(t)", "PRAGMA", False),
        ("PRAGMA main.index_list('t')", "PRAGMA", False),
        ("PRAGMA user_version", "PRAGMA", False),
        ("PRAGMA user_version = 7", "PRAGMA", True),
        ("PRAGMA foreign_key_check", "PRAGMA", False),
        ("EXPLAIN QUERY PLAN SELECT * FROM t", "EXPLAIN", False),
        ("EXPLAIN INSERT INTO t VALUES (1)", "EXPLAIN", False),
        ("  -- leading comment\n /* and another */ SELECT 1 ;  ", "SELECT", False),
        ("SELECT * FROM pragma_table_info('t')", "SELECT", False),
        ("SELECT value FROM json_each('[1,2]')", "SELECT", False),
    ],
)
def test_reads_and_writes(sql: str, verb: str, is_write: bool) -> None:
    c = classify(sql)
    assert (c.verb, c.is_write) == (verb, is_write)
    assert c.sql == sql  # the original text, never regenerated


def test_time_and_randomness_are_allowed_because_the_machine_pins_them() -> None:
    c = classify(
        "INSERT INTO t VALUES (random(), randomblob(8), datetime('now'), CURRENT_TIMESTAMP)"
    )
    assert c.is_write
    assert {"random", "randomblob", "datetime"} <= c.functions
    c = classify("SELECT random(), date('now'), CURRENT_DATE")
    assert c.analyzed_by == "sqlite"  # SQLite itself resolved the whole statement
    assert {"random", "date", "current_date"} <= c.functions


@pytest.mark.parametrize(
    ("sql", "layer"),
    [
        # SQLite can compile it without the schema: its view is complete.
        ("SELECT random(), ?2, ?", "sqlite"),
        ("SELECT datetime(:when), @n", "sqlite"),
        ("CREATE TABLE t(a DEFAULT (random()), b CHECK (b > 0))", "sqlite"),
        # Needs the real schema: sqlglot's parse tree says which names are calls.
        ("INSERT INTO t VALUES (?, abs(?))", "sqlglot"),
        ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", "sqlglot"),
        # sqlglot cannot parse it: statement-level checks only, the authorizer does the rest.
        ("ALTER TABLE t ADD COLUMN c", "tokens"),
        ("REINDEX t", "tokens"),
    ],
)
def test_each_layer_is_used_where_it_can_see(sql: str, layer: str) -> None:
    assert classify(sql).analyzed_by == layer


def test_trigger_with_case_end_in_its_body_is_one_statement() -> None:
    sql = (
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
        "UPDATE t SET a = CASE WHEN new.a > 0 THEN random() ELSE 0 END WHERE rowid = new.rowid; "
        "INSERT INTO log VALUES (datetime('now')); END"
    )
    c = classify(sql)
    assert c.is_write and c.verb == "CREATE"
    assert {"random", "datetime"} <= c.functions


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error", "needle"),
    [
        ("ATTACH DATABASE 'other.db' AS o", ForbiddenSQL, "ATTACH is not allowed"),
        ("DETACH o", ForbiddenSQL, "DETACH is not allowed"),
        ("SELECT load_extension('evil')", ForbiddenSQL, "load_extension() is not allowed"),
        ("INSERT INTO t VALUES (load_extension('evil'))", ForbiddenSQL, "load_extension()"),
        ("CREATE TEMP TABLE x(a)", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TEMPORARY TABLE x(a)", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TEMP VIEW v AS SELECT 1", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", ForbiddenSQL, "TEMP"),
        ("CREATE TABLE temp.x(a)", ForbiddenSQL, "TEMP objects are not allowed"),
        ("CREATE TABLE other.x(a)", ForbiddenSQL, "only the main database"),
        ("PRAGMA journal_mode = DELETE", ForbiddenSQL, "PRAGMA journal_mode is not allowed"),
        ("PRAGMA synchronous", ForbiddenSQL, "PRAGMA synchronous is not allowed"),
        ("PRAGMA foreign_keys = OFF", ForbiddenSQL, "PRAGMA foreign_keys is not allowed"),
        ("PRAGMA writable_schema = 1", ForbiddenSQL, "PRAGMA writable_schema"),
        ("PRAGMA page_size = 512", ForbiddenSQL, "PRAGMA page_size is not allowed"),
        ("PRAGMA temp.table_info(t)", ForbiddenSQL, "only the main database"),
        ("SELECT * FROM pragma_journal_mode", ForbiddenSQL, "PRAGMA journal_mode"),
        ("SELECT * FROM t JOIN pragma_database_list", ForbiddenSQL, "PRAGMA database_list"),
        ("VACUUM", ForbiddenSQL, "VACUUM is not allowed"),
        ("VACUUM INTO '/tmp/copy.db'", ForbiddenSQL, "VACUUM INTO is not allowed"),
        ("BEGIN", ForbiddenSQL, "BEGIN is not allowed"),
        ("BEGIN IMMEDIATE TRANSACTION", ForbiddenSQL, "BEGIN is not allowed"),
        ("COMMIT", ForbiddenSQL, "COMMIT is not allowed"),
        ("END", ForbiddenSQL, "END is not allowed"),
        ("ROLLBACK", ForbiddenSQL, "ROLLBACK is not allowed"),
        ("SAVEPOINT sp", ForbiddenSQL, "SAVEPOINT is not allowed"),
        ("RELEASE sp", ForbiddenSQL, "RELEASE is not allowed"),
        ("ROLLBACK TO sp", ForbiddenSQL, "ROLLBACK is not allowed"),
        ("SELECT changes()", NonDeterministicSQL, "changes() is not allowed"),
        ("SELECT total_changes()", NonDeterministicSQL, "total_changes() is not allowed"),
        ("INSERT INTO t VALUES (last_insert_rowid())", NonDeterministicSQL, "last_insert_rowid()"),
        ("UPDATE t SET a = changes() WHERE b = 1", NonDeterministicSQL, "changes()"),
        ("INSERT INTO t VALUES (sqlite_version())", NonDeterministicSQL, "sqlite_version()"),
        ("INSERT INTO t SELECT sqlite_source_id() FROM u", NonDeterministicSQL, "sqlite_source_id"),
        ("SELECT sqlite_log(1, 'x')", ForbiddenSQL, "sqlite_log()"),
        ("SELECT my_udf(1)", ForbiddenSQL, "unknown function my_udf()"),
        ("SELECT my_udf(a) FROM t", ForbiddenSQL, "unknown function my_udf()"),
        ("INSERT INTO t VALUES (my_udf(1))", ForbiddenSQL, "unknown function my_udf()"),
        ("CREATE TABLE t(a DEFAULT (changes()))", NonDeterministicSQL, "changes()"),
        ("CREATE TABLE t(a CHECK (a > total_changes()))", NonDeterministicSQL, "total_changes()"),
        (
            "CREATE VIEW v AS SELECT last_insert_rowid() AS x",
            NonDeterministicSQL,
            "last_insert_rowid",
        ),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (changes()); END",
            NonDeterministicSQL,
            "changes()",
        ),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t WHEN sqlite_version() > '3' BEGIN SELECT 1; END",
            NonDeterministicSQL,
            "sqlite_version()",
        ),
        (
            "CREATE TRIGGER tr BEFORE DELETE ON t BEGIN SELECT 1; "
            "UPDATE u SET x = load_extension('e'); END",
            ForbiddenSQL,
            "load_extension()",
        ),
        ("CREATE VIRTUAL TABLE s USING dbstat", ForbiddenSQL, "virtual table module 'dbstat'"),
        ("INSERT INTO _raftsql_meta VALUES (1, 2, 3)", ForbiddenSQL, "_raftsql_meta is internal"),
        ("UPDATE _raftsql_sessions SET seq = 0", ForbiddenSQL, "_raftsql_sessions is internal"),
        ('DELETE FROM "_raftsql_sessions"', ForbiddenSQL, "is internal"),
        ("DROP TABLE _raftsql_meta", ForbiddenSQL, "is internal"),
        ("CREATE TABLE _raftsql_mine(a)", ForbiddenSQL, "is internal"),
        ("SELECT 1; SELECT 2", ForbiddenSQL, "exactly one statement, this one holds 2"),
        ("INSERT INTO t VALUES (1); DELETE FROM t", ForbiddenSQL, "exactly one statement"),
        ("", SQLError, "no SQL statement"),
        ("  ;  -- nothing\n", SQLError, "no SQL statement"),
        ("SELEC 1", SQLError, "syntax error"),
        ("SELECT * FROM", SQLError, "incomplete input"),
        ("INSERT INTO t VALUES (1,", SQLError, "incomplete input"),
        ("SELECT 'unterminated", SQLError, "unterminated string"),
        ("SELECT ?, :a", ParameterError, "mixes positional"),
    ],
)
def test_refusals_name_the_problem(sql: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        classify(sql)
    assert type(info.value) is error
    assert needle in str(info.value)


def test_internal_tables_may_be_read() -> None:
    assert not classify("SELECT applied_index FROM _raftsql_meta").is_write


def test_sqlite_version_is_fine_in_a_read() -> None:
    assert not classify("SELECT sqlite_version()").is_write


def test_table_named_like_a_forbidden_function_is_fine() -> None:
    # "changes(" here is a table with a column list, not a call.
    assert classify("INSERT INTO changes(a, b) VALUES (1, 2)").is_write


# --- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "style", "count", "names"),
    [
        ("SELECT 1", ParamStyle.NONE, 0, ()),
        ("SELECT ?, ?", ParamStyle.QMARK, 2, ()),
        ("SELECT ?2, ?1", ParamStyle.QMARK, 2, ()),
        ("SELECT ?1, ?3", ParamStyle.QMARK, 3, ()),
        ("SELECT ?5, ?", ParamStyle.QMARK, 6, ()),
        ("SELECT :a, :b, :a", ParamStyle.NAMED, 2, ("a", "b")),
        ("SELECT @x, $y, :z", ParamStyle.NAMED, 3, ("x", "y", "z")),
        ("SELECT '?', \":a\", ? -- :b ?\n /* ? */", ParamStyle.QMARK, 1, ()),
        ("INSERT INTO t VALUES (:id, :name) RETURNING id", ParamStyle.NAMED, 2, ("id", "name")),
    ],
)
def test_parameter_styles_and_counts(
    sql: str, style: ParamStyle, count: int, names: tuple[str, ...]
) -> None:
    c = classify(sql)
    assert (c.param_style, c.param_count, c.param_names) == (style, count, names)


def test_check_params_positional() -> None:
    c = classify("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)")
    assert check_params(c, [None, 1, 1.5, "s", b"b", True]) == (None, 1, 1.5, "s", b"b", 1)
    assert check_params(c, (1, 2, 3, 4, bytearray(b"x"), memoryview(b"y"))) == (
        1,
        2,
        3,
        4,
        b"x",
        b"y",
    )


def test_check_params_named_keeps_only_the_statements_names() -> None:
    c = classify("SELECT :a, @b")
    assert check_params(c, {"a": 1, "b": "x", "unused": 3}) == {"a": 1, "b": "x"}


def test_check_params_none_and_empty() -> None:
    c = classify("SELECT 1")
    assert check_params(c, None) == ()
    assert check_params(c, ()) == ()
    assert check_params(c, {}) == ()


class Color(enum.IntEnum):
    RED = 1


class Name(enum.StrEnum):
    ADA = "ada"


def test_check_params_unwraps_enum_subclasses() -> None:
    c = classify("SELECT ?, ?")
    assert check_params(c, [Color.RED, Name.ADA]) == (1, "ada")
    assert type(check_params(c, [Color.RED, Name.ADA])[1]) is str


@pytest.mark.parametrize(
    ("sql", "params", "needle"),
    [
        ("SELECT ?, ?", (1,), "takes 2 parameters, 1 given"),
        ("SELECT ?", (1, 2), "takes 1 parameter, 2 given"),
        ("SELECT 1", (1,), "takes 0 parameters, 1 given"),
        ("SELECT ?1, ?3", (1, 2), "takes 3 parameters, 2 given"),
        ("SELECT ?", {"a": 1}, "pass a sequence, not a mapping"),
        ("SELECT 1", {"a": 1}, "takes no parameters"),
        ("SELECT :a", (1,), "named parameters (:a): pass a mapping"),
        ("SELECT :a, :b", {"a": 1}, "missing value for named parameter :b"),
        ("SELECT ?", "x", "sequence or a mapping, not str"),
        ("SELECT ?", 5, "sequence or a mapping, not int"),
        ("SELECT ?", (object(),), "parameter #1 has unsupported type object"),
        ("SELECT ?, ?", (1, [1]), "parameter #2 has unsupported type list"),
        ("SELECT :d", {"d": {}}, "parameter :d has unsupported type dict"),
        ("SELECT ?", (2**63,), "does not fit in SQLite's 64-bit integer"),
        ("SELECT ?", (-(2**63) - 1,), "does not fit"),
        ("SELECT ?", ("\ud800",), "not valid Unicode"),
    ],
)
def test_check_params_errors(sql: str, params: object, needle: str) -> None:
    with pytest.raises(ParameterError) as info:
        check_params(classify(sql), params)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_out_of_range_numbered_parameter() -> None:
    with pytest.raises(ParameterError, match="out of range"):
        classify("SELECT ?0")


# --- the lexer agrees with SQLite -----------------------------------------------------------

_param = st.one_of(
    st.just("?"),
    st.integers(min_value=1, max_value=12).map(lambda n: f"?{n}"),
)
_named = st.tuples(st.sampled_from(":@$"), st.sampled_from(["a", "b", "c1", "x_y"])).map("".join)
_noise = st.sampled_from(["1", "'?'", "':a'", '1 AS "x?"', "x'00'", "/* ? */ 2", "1 AS [?]"])


def _cols(items: list[str]) -> str:
    return "SELECT " + ", ".join(items)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_param, _noise), min_size=1, max_size=8))
def test_positional_parameters_match_sqlite(items: list[str]) -> None:
    sql = _cols(items)
    info = apsw.ext.query_info(apsw.Connection(":memory:"), sql)
    params = lexer.parameters(lexer.tokenize(sql))
    assert params.count == info.bindings_count


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_named, _noise), min_size=1, max_size=8))
def test_named_parameters_match_sqlite(items: list[str]) -> None:
    sql = _cols(items)
    info = apsw.ext.query_info(apsw.Connection(":memory:"), sql)
    count, names = info.bindings_count, info.bindings_names
    params = lexer.parameters(lexer.tokenize(sql))
    assert params.count == count
    expected: list[str] = []
    for name in names:  # apsw reports them without the prefix, as it binds them
        assert name is not None
        if name not in expected:
            expected.append(name)
    assert list(params.names) == expected


@pytest.mark.parametrize(
    ("script", "count"),
    [
        ("SELECT 1; SELECT 2;", 2),
        (
            "CREATE TABLE t(a); "
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; SELECT 3",
            3,
        ),
        ("SELECT ';'; SELECT \";\" -- ;\n; /* ; */ SELECT 4", 3),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
            "SELECT CASE WHEN 1 THEN 2 END; SELECT 3; END;",
            1,
        ),
    ],
)
def test_split_script_gives_statements_sqlite_sees_as_complete(script: str, count: int) -> None:
    pieces = split_script(script)
    assert len(pieces) == count
    for piece in pieces:
        assert apsw.complete(piece + ";")
        assert piece in script  # original text, sliced, never rewritten


def test_split_script_keeps_trigger_bodies_whole() -> None:
    script = (
        "CREATE TABLE t(a);"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
        "SELECT CASE WHEN new.a THEN 1 END; INSERT INTO t VALUES (2); END;"
        "INSERT INTO t VALUES (1)"
    )
    pieces = split_script(script)
    assert len(pieces) == 3
    assert pieces[1].startswith("CREATE TRIGGER") and pieces[1].endswith("END")
    conn = apsw.Connection(":memory:")
    for piece in pieces:
        conn.execute(piece)
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_leading_verb_sees_through_with_and_comments() -> None:
    assert lexer.leading_verb("/* c */ with x as (select 1) update t set a = 1") == "UPDATE"
    assert lexer.leading_verb("WITH a(b) AS (SELECT (1)) , c AS (SELECT 2) SELECT 1") == "SELECT"
    assert lexer.leading_verb('WITH "insert" AS (SELECT 1) DELETE FROM t') == "DELETE"


# --- the cache --------------------------------------------------------------------------


def test_classification_is_cached_by_text() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c = 'cache-test-1'"
    before = statements.cache_info()
    first = classify(sql)
    second = classify(sql)
    after = statements.cache_info()
    assert first is second
    assert after.hits >= before.hits + 1


def test_rejections_are_cached_too() -> None:
    sql = "SELECT changes() -- cache-test-2"
    for _ in range(2):
        with pytest.raises(NonDeterministicSQL):
            classify(sql)
    before = statements.cache_info()
    with pytest.raises(NonDeterministicSQL):
        classify(sql)
    assert statements.cache_info().hits == before.hits + 1


def test_cache_hit_is_much_cheaper_than_a_miss() -> None:
    sql = "INSERT INTO t(a, b) SELECT x, random() FROM u WHERE y > ? -- cache-test-3"
    start = time.perf_counter()
    classify(sql)
    miss = time.perf_counter() - start
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        classify(sql)
    hit = (time.perf_counter() - start) / n
    assert hit < 20e-6, f"cache hit took {hit * 1e6:.1f} us"
    assert hit * 10 < miss


def test_literal_sql_is_analysed_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values written into the SQL text (no parameters) still hit a cache: one analysis
    per shape, while each Classification keeps its own, unchanged text."""
    calls: list[str] = []
    real = statements._analyze

    def counting(sql: str) -> statements.Classification:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(statements, "_analyze", counting)
    texts = [f"INSERT INTO shape_t (a, b) VALUES ({n}, 'text {n}')" for n in range(50)]
    results = [statements.classify(sql) for sql in texts]
    assert len(calls) == 1
    assert [r.sql for r in results] == texts
    assert all(r.is_write and r.param_count == 0 for r in results)
    other = statements.classify("INSERT INTO shape_t (a, b) VALUES (?, 'x')")
    assert other.param_count == 1 and len(calls) == 2  # another shape: its own analysis


def test_a_refusal_is_never_generalised_to_its_shape() -> None:
    for n in range(3):
        with pytest.raises(ForbiddenSQL):
            statements.classify(f"SELECT load_extension('lib{n}')")
    ok = statements.classify("SELECT upper('fine')")
    assert not ok.is_write
