"""The DB-API 2.0 driver (``import raftsql``) against one real local cluster.

One cluster serves the whole module (starting one costs a second or two); every test
works on tables of its own, so the tests do not see each other's data.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import raftsql
from raftsql import cluster as cluster_module
from raftsql import errors
from raftsql.cluster import LocalCluster, free_ports
from raftsql.dbapi.sqltext import Kind
from raftsql.dbapi.sqltext import classify as client_classify
from raftsql.sql.statements import classify as server_classify

pytestmark = pytest.mark.timeout(60)

_names = itertools.count(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(directory=tmp_path_factory.mktemp("dbapi") / "local", n=3)
    try:
        local.start(timeout=30)
        yield local
    finally:
        local.stop()


@pytest.fixture
def conn(cluster: LocalCluster) -> Iterator[raftsql.Connection]:
    """A connection in the default mode (writes held until commit())."""
    connection = raftsql.connect(cluster.addresses())
    yield connection
    connection.close()


@pytest.fixture
def auto(cluster: LocalCluster) -> Iterator[raftsql.Connection]:
    """An autocommit connection: every statement is sent at once."""
    connection = raftsql.connect(cluster.addresses(), autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def table(auto: raftsql.Connection) -> str:
    """A fresh table ``(id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)``."""
    name = f"t{next(_names)}"
    auto.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
    return name


class Requests:
    """Records the requests a connection's client sends (wraps Client._call)."""

    def __init__(self, connection: raftsql.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[dict[str, Any]] = []
        client = connection.client
        original = client._call

        def call(request: dict[str, Any], to_leader: bool) -> dict[str, Any]:
            self.sent.append(dict(request))
            return original(request, to_leader)

        monkeypatch.setattr(client, "_call", call)

    def ops(self) -> list[str]:
        return [r["op"] for r in self.sent]


def count(auto: raftsql.Connection, table: str) -> int:
    return int(auto.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


# === module globals ===========================================================================


def test_module_globals_and_exception_hierarchy(conn: raftsql.Connection) -> None:
    assert raftsql.apilevel == "2.0"
    assert raftsql.threadsafety == 1
    assert raftsql.paramstyle == "qmark"
    assert issubclass(raftsql.Warning, Exception)
    assert issubclass(raftsql.Error, Exception)
    assert not issubclass(raftsql.Warning, raftsql.Error)
    assert issubclass(raftsql.InterfaceError, raftsql.Error)
    assert issubclass(raftsql.DatabaseError, raftsql.Error)
    for name in (
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
    ):
        cls = getattr(raftsql, name)
        assert issubclass(cls, raftsql.DatabaseError)
        assert getattr(conn, name) is cls  # the optional connection attributes
    assert conn.Error is raftsql.Error and conn.Warning is raftsql.Warning


def test_type_objects_and_constructors() -> None:
    assert raftsql.Date(2024, 5, 1) == datetime.date(2024, 5, 1)
    assert raftsql.Time(12, 30, 5) == datetime.time(12, 30, 5)
    assert raftsql.Timestamp(2024, 5, 1, 12, 30) == datetime.datetime(2024, 5, 1, 12, 30)
    ticks = 1_714_566_605.0
    local = datetime.datetime.fromtimestamp(ticks)
    assert raftsql.DateFromTicks(ticks) == local.date()
    assert raftsql.TimeFromTicks(ticks) == local.time().replace(microsecond=0)
    assert raftsql.TimestampFromTicks(ticks) == local.replace(microsecond=0)
    assert raftsql.Binary(b"\x00\xff") == b"\x00\xff"
    kinds: list[type] = [str, bytes, int, float, datetime.date, datetime.datetime, datetime.time]
    expected: dict[str, set[type]] = {
        "STRING": {str},
        "BINARY": {bytes},
        "NUMBER": {int, float},
        "ROWID": {int},
        "DATETIME": {datetime.date, datetime.datetime, datetime.time},
    }
    for name, codes in expected.items():
        type_object = getattr(raftsql, name)
        for kind in kinds:
            assert (type_object == kind) is (kind in codes), (name, kind)
            assert (kind == type_object) is (kind in codes), (name, kind)  # reflected


# === connect ==================================================================================


def test_connect_forms(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = cluster.addresses()
    host, port = addresses[0].rsplit(":", 1)
    forms: list[tuple[Any, dict[str, Any]]] = [
        (addresses, {}),
        (",".join(addresses), {}),
        (cluster.url(), {}),
        ([(host, int(port))], {}),
        (None, {"hosts": addresses}),
    ]
    for dsn, kwargs in forms:
        with raftsql.connect(dsn, **kwargs) as c:
            assert c.execute("SELECT 1 + 1").fetchone() == (2,)
        c.close()

    c = raftsql.connect(cluster.url() + "/?consistency=stale&timeout=5&autocommit=true")
    assert (c.consistency, c.client.timeout, c.autocommit) == ("stale", 5.0, True)
    c.close()
    # Keywords win over URL options.
    c = raftsql.connect(
        cluster.url() + "?consistency=stale&autocommit=1", consistency="linearizable"
    )
    assert (c.consistency, c.autocommit) == ("linearizable", True)
    c.close()

    # No DSN: the local cluster in DEFAULT_DIR, started or (here) reused as it runs.
    monkeypatch.setattr(cluster_module, "DEFAULT_DIR", cluster.directory)
    for dsn in (None, "raftsql://?consistency=stale"):
        c = raftsql.connect(dsn)
        assert sorted(f"{h}:{p}" for h, p in c.client.hosts) == sorted(addresses)
        assert c.execute("SELECT 40 + 2").fetchone() == (42,)
        c.close()


def test_connect_refuses_bad_arguments(cluster: LocalCluster) -> None:
    bad: list[tuple[Any, dict[str, Any]]] = [
        (cluster.url() + "?colour=blue", {}),
        (cluster.url() + "?timeout=soon", {}),
        (cluster.url() + "?autocommit=maybe", {}),
        ("postgres://127.0.0.1:5432", {}),
        (cluster.url() + "/db", {}),
        ("no-port-here", {}),
        ([], {}),
        (cluster.addresses(), {"hosts": cluster.addresses()}),
        (cluster.addresses(), {"consistency": "eventual"}),
        (cluster.addresses(), {"timeout": 0}),
    ]
    for dsn, kwargs in bad:
        with pytest.raises(raftsql.ProgrammingError):
            raftsql.connect(dsn, **kwargs)


def test_connect_to_nothing_is_an_operational_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(raftsql.OperationalError) as err:
        raftsql.connect(f"127.0.0.1:{port}", timeout=0.3)
    assert isinstance(err.value.raftsql_error, errors.RequestTimeout)


# === cursors: execute, fetch, description, rowcount, lastrowid =================================


def test_execute_fetch_and_iterate(auto: raftsql.Connection, table: str) -> None:
    cur = auto.cursor()
    cur.executemany(
        f"INSERT INTO {table} (name, n) VALUES (?, ?)", [(f"r{i}", i) for i in range(1, 8)]
    )
    assert cur.execute(f"SELECT name, n FROM {table} ORDER BY n") is cur
    assert cur.rowcount == 7  # a query's rowcount: the rows it returned
    assert cur.fetchone() == ("r1", 1)
    assert cur.fetchmany(2) == [("r2", 2), ("r3", 3)]
    assert cur.arraysize == 1
    assert cur.fetchmany() == [("r4", 4)]
    cur.arraysize = 2
    assert cur.fetchmany() == [("r5", 5), ("r6", 6)]
    assert cur.fetchall() == [("r7", 7)]
    assert cur.fetchone() is None and cur.fetchmany() == [] and cur.fetchall() == []

    cur.execute(f"SELECT n FROM {table} WHERE n <= :top ORDER BY n", {"top": 3})
    assert [row for row in cur] == [(1,), (2,), (3,)]
    assert list(auto.execute(f"SELECT n FROM {table} WHERE n > ?", (6,))) == [(7,)]
    assert cur.nextset() is None
    cur.setinputsizes([10])
    cur.setoutputsize(10, 0)


def test_description_and_type_codes(auto: raftsql.Connection) -> None:
    cur = auto.execute("SELECT 1 AS i, 2.5 AS f, 'x' AS s, x'00' AS b, NULL AS z")
    assert [d[0] for d in cur.description] == ["i", "f", "s", "b", "z"]  # type: ignore[union-attr]
    assert all(len(d) == 7 and d[2:] == (None,) * 5 for d in cur.description)  # type: ignore[union-attr]
    codes = [d[1] for d in cur.description]  # type: ignore[union-attr]
    assert codes == [int, float, str, bytes, None]
    assert codes[0] == raftsql.NUMBER and codes[0] == raftsql.ROWID
    assert codes[1] == raftsql.NUMBER and codes[2] == raftsql.STRING
    assert codes[3] == raftsql.BINARY

    empty = auto.execute("SELECT 1 AS one WHERE 0")
    assert empty.description is not None and empty.description[0][:2] == ("one", None)
    assert empty.rowcount == 0 and empty.fetchall() == []


def test_rowcount_and_lastrowid_in_autocommit(auto: raftsql.Connection, table: str) -> None:
    cur = auto.cursor()
    assert cur.rowcount == -1 and cur.lastrowid is None and cur.description is None
    cur.execute(f"INSERT INTO {table} (name, n) VALUES ('a', 1)")
    first = cur.lastrowid
    assert cur.rowcount == 1 and isinstance(first, int) and cur.description is None
    cur.execute(f"INSERT INTO {table} (name, n) VALUES ('b', 2)")
    assert cur.lastrowid == first + 1
    cur.execute(f"UPDATE {table} SET n = n + 10")
    assert cur.rowcount == 2 and cur.lastrowid is None
    cur.execute(f"DELETE FROM {table} WHERE name = 'zzz'")
    assert cur.rowcount == 0
    cur.execute(f"CREATE INDEX {table}_n ON {table} (n)")
    assert cur.rowcount == -1 and cur.description is None
    with pytest.raises(raftsql.ProgrammingError, match="no result set"):
        cur.fetchone()

    cur.execute(f"INSERT INTO {table} (name, n) VALUES ('c', 3) RETURNING id, name")
    assert cur.fetchall() == [(first + 2, "c")]
    assert cur.rowcount == 1 and cur.lastrowid == first + 2
    assert [d[0] for d in cur.description] == ["id", "name"]  # type: ignore[union-attr]


def test_fetch_before_execute_is_an_error(auto: raftsql.Connection) -> None:
    with pytest.raises(raftsql.ProgrammingError):
        auto.cursor().fetchall()


# === executemany ==============================================================================


def test_executemany_is_one_atomic_request(
    auto: raftsql.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = Requests(auto, monkeypatch)
    cur = auto.cursor()
    cur.executemany(
        f"INSERT INTO {table} (name, n) VALUES (?, ?)", ((f"r{i}", i) for i in range(200))
    )
    assert requests.ops() == ["write"]
    assert len(requests.sent[0]["stmts"]) == 200 and requests.sent[0]["atomic"] is True
    assert cur.rowcount == 200 and isinstance(cur.lastrowid, int)

    # One duplicate in the middle: none of the rows is applied.
    rows = [("fresh1", 1), ("r5", 2), ("fresh2", 3)]
    with pytest.raises(raftsql.IntegrityError):
        cur.executemany(f"INSERT INTO {table} (name, n) VALUES (?, ?)", rows)
    assert count(auto, table) == 200

    cur.executemany(f"UPDATE {table} SET n = :n WHERE name = :name", [{"n": -1, "name": "r1"}])
    assert cur.rowcount == 1
    cur.executemany(f"INSERT INTO {table} (name) VALUES (?) RETURNING name", [("x",), ("y",)])
    assert cur.fetchall() == [("x",), ("y",)]

    sent = len(requests.sent)
    cur.executemany(f"INSERT INTO {table} (name) VALUES (?)", [])
    assert cur.rowcount == 0 and len(requests.sent) == sent  # nothing to send
    with pytest.raises(raftsql.ProgrammingError, match="executemany"):
        cur.executemany(f"SELECT * FROM {table} WHERE n = ?", [(1,)])


# === transactions =============================================================================


def test_commit_sends_held_writes_as_one_request(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = Requests(conn, monkeypatch)
    cur, other = conn.cursor(), conn.cursor()
    assert not conn.autocommit and not conn.in_transaction
    cur.execute(f"INSERT INTO {table} (name, n) VALUES (?, ?)", ("a", 1))
    assert cur.rowcount == -1 and cur.lastrowid is None  # not applied yet
    other.executemany(f"INSERT INTO {table} (name, n) VALUES (?, ?)", [("b", 2), ("c", 3)])
    cur.execute(f"UPDATE {table} SET n = n * 10 WHERE name = :name", {"name": "a"})
    assert requests.sent == [] and conn.in_transaction
    assert count(auto, table) == 0  # nobody sees held writes

    conn.commit()
    assert requests.ops() == ["write"] and len(requests.sent[0]["stmts"]) == 4
    assert not conn.in_transaction
    assert auto.execute(f"SELECT name, n FROM {table} ORDER BY name").fetchall() == [
        ("a", 10),
        ("b", 2),
        ("c", 3),
    ]
    # After commit() each cursor shows the result of the last writes it issued.
    assert cur.rowcount == 1 and cur.lastrowid is None  # the UPDATE
    assert other.rowcount == 2 and isinstance(other.lastrowid, int)  # both INSERTs
    conn.commit()  # nothing held: nothing sent
    assert len(requests.sent) == 1


def test_rollback_and_close_drop_held_writes(
    cluster: LocalCluster, conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    conn.execute(f"INSERT INTO {table} (name) VALUES ('gone')")
    conn.rollback()
    assert not conn.in_transaction
    conn.commit()
    assert count(auto, table) == 0

    closing = raftsql.connect(cluster.addresses())
    closing.execute(f"INSERT INTO {table} (name) VALUES ('gone too')")
    closing.close()  # an implicit rollback
    assert count(auto, table) == 0


def test_with_block_commits_or_rolls_back(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    with conn:
        conn.execute(f"INSERT INTO {table} (name) VALUES ('kept')")
    assert count(auto, table) == 1

    with pytest.raises(ZeroDivisionError), conn:
        conn.execute(f"INSERT INTO {table} (name) VALUES ('dropped')")
        _ = 1 / 0
    assert count(auto, table) == 1 and not conn.in_transaction
    assert not conn.closed  # like sqlite3, the block does not close the connection


def test_a_failing_statement_fails_the_whole_commit(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    auto.execute(f"INSERT INTO {table} (name) VALUES ('taken')")
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} (name) VALUES ('new')")
    cur.execute(f"UPDATE {table} SET n = 7")
    cur.execute(f"INSERT INTO {table} (name) VALUES ('taken')")
    with pytest.raises(raftsql.IntegrityError, match="UNIQUE") as err:
        conn.commit()
    assert "statement 3 of 3" in str(err.value)
    assert isinstance(err.value.raftsql_error, errors.ConstraintError)
    assert err.value.__cause__ is err.value.raftsql_error
    assert auto.execute(f"SELECT name, n FROM {table}").fetchall() == [("taken", None)]
    assert not conn.in_transaction  # the transaction is over; nothing was applied
    conn.execute(f"INSERT INTO {table} (name) VALUES ('next')")
    conn.commit()
    assert count(auto, table) == 2


def test_reads_in_a_transaction_do_not_see_its_held_writes(
    conn: raftsql.Connection, table: str
) -> None:
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} (name) VALUES ('held')")
    assert cur.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)  # documented
    assert conn.in_transaction  # the read did not end the transaction
    conn.commit()
    assert cur.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_returning_inside_a_transaction_is_not_supported(
    conn: raftsql.Connection, table: str
) -> None:
    with pytest.raises(raftsql.NotSupportedError, match="autocommit"):
        conn.execute(f"INSERT INTO {table} (name) VALUES ('x') RETURNING id")
    with pytest.raises(raftsql.NotSupportedError):
        conn.executemany(f"DELETE FROM {table} WHERE id = ? RETURNING *", [(1,)])
    assert not conn.in_transaction


def test_switching_to_autocommit_commits_held_writes(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    conn.execute(f"INSERT INTO {table} (name) VALUES ('a')")
    conn.autocommit = True
    assert count(auto, table) == 1 and not conn.in_transaction
    cur = conn.execute(f"INSERT INTO {table} (name) VALUES ('b')")  # sent at once now
    assert cur.rowcount == 1 and count(auto, table) == 2
    conn.autocommit = False
    conn.execute(f"INSERT INTO {table} (name) VALUES ('c')")
    assert count(auto, table) == 2
    conn.rollback()


def test_a_timed_out_commit_is_retried_exactly_once(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commit is applied but its answer is lost; commit() again must not apply it
    twice: it resends the same request under the same session seq."""
    client = conn.client
    original = client._call
    seqs: list[int] = []

    def lose_first_answer(request: dict[str, Any], to_leader: bool) -> dict[str, Any]:
        reply = original(request, to_leader)
        if request["op"] == "write":
            seqs.append(request["seq"])
            if len(seqs) == 1:
                raise errors.RequestTimeout("no answer within 10s (simulated)")
        return reply

    monkeypatch.setattr(client, "_call", lose_first_answer)
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} (name) VALUES ('once')")
    with pytest.raises(raftsql.OperationalError, match="outcome is unknown"):
        conn.commit()
    assert conn.in_transaction
    with pytest.raises(raftsql.OperationalError, match="commit"):
        conn.execute(f"INSERT INTO {table} (name) VALUES ('more')")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)  # reads still work
    conn.commit()  # learns the first outcome instead of applying again
    assert seqs[0] == seqs[1]
    assert count(auto, table) == 1 and cur.rowcount == 1 and not conn.in_transaction


# === consistency ==============================================================================


def test_per_query_and_per_connection_consistency(
    conn: raftsql.Connection, auto: raftsql.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in (conn, auto):
        requests = Requests(c, monkeypatch)
        assert c.consistency == "linearizable"
        c.execute("SELECT 1")
        c.execute("SELECT 2", consistency="stale")
        c.consistency = "stale"
        c.execute("SELECT 3")
        c.execute("SELECT 4", consistency="linearizable")
        levels = [r["consistency"] for r in requests.sent]
        assert levels == ["linearizable", "stale", "stale", "linearizable"]
        with pytest.raises(raftsql.ProgrammingError):
            c.execute("SELECT 5", consistency="eventual")
        with pytest.raises(raftsql.ProgrammingError):
            c.consistency = "sometimes"
        c.consistency = "linearizable"


# === bad input ================================================================================


def test_parameter_mistakes_are_programming_errors(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    insert = f"INSERT INTO {table} (name, n) VALUES (?, ?)"
    for c in (auto, conn):  # in a transaction too: at execute(), not at commit()
        with pytest.raises(raftsql.ProgrammingError, match="2 parameters, 1 given"):
            c.execute(insert, ("a",))
        with pytest.raises(raftsql.ProgrammingError, match="2 parameters, 3 given"):
            c.executemany(insert, [("a", 1), ("b", 2, 3)])
        with pytest.raises(raftsql.ProgrammingError, match=":n"):
            c.execute(f"UPDATE {table} SET n = :n WHERE name = :name", {"name": "a"})
        with pytest.raises(raftsql.ProgrammingError, match="mapping"):
            c.execute(f"UPDATE {table} SET n = :n", (1,))
        with pytest.raises(raftsql.ProgrammingError, match="unsupported type object"):
            c.execute(insert, ("a", object()))
        with pytest.raises(raftsql.ProgrammingError, match="unsupported type complex"):
            c.execute(insert, {"x": 1j})
        with pytest.raises(raftsql.ProgrammingError, match="not str"):
            c.execute(insert, "ab")
        with pytest.raises(raftsql.ProgrammingError, match="not set"):
            c.execute(insert, {"a", "b"})
        with pytest.raises(raftsql.DataError, match="64-bit"):
            c.execute(insert, ("a", 2**70))
        with pytest.raises(raftsql.ProgrammingError):
            c.execute(42)  # type: ignore[arg-type]
        assert not conn.in_transaction
    with pytest.raises(raftsql.ProgrammingError, match="1 parameter, 0 given"):
        auto.execute("SELECT ?")
    assert count(auto, table) == 0


def test_closed_cursor_and_connection(cluster: LocalCluster) -> None:
    c = raftsql.connect(cluster.addresses())
    cur = c.cursor()
    cur.execute("SELECT 1")
    cur.close()
    cur.close()  # twice is fine
    assert cur.closed
    for use in (
        lambda: cur.execute("SELECT 1"),
        lambda: cur.executemany("INSERT INTO x VALUES (?)", [(1,)]),
        cur.fetchone,
        cur.fetchall,
        lambda: cur.callproc("p"),
    ):
        with pytest.raises(raftsql.ProgrammingError, match="closed cursor"):
            use()

    live = c.cursor()
    c.close()
    c.close()  # twice is fine
    assert c.closed
    uses: list[Callable[[], object]] = [
        c.cursor,
        c.commit,
        c.rollback,
        lambda: c.execute("SELECT 1"),
        lambda: live.execute("SELECT 1"),
        live.fetchall,
        lambda: setattr(c, "autocommit", True),
        lambda: c.__enter__(),
    ]
    for use in uses:
        with pytest.raises(raftsql.ProgrammingError, match="closed connection"):
            use()


def test_callproc_is_not_supported(auto: raftsql.Connection) -> None:
    with pytest.raises(raftsql.NotSupportedError):
        auto.cursor().callproc("anything", (1,))


def test_forbidden_sql_is_not_supported(
    conn: raftsql.Connection, auto: raftsql.Connection, table: str
) -> None:
    forbidden = [
        "ATTACH DATABASE 'other.db' AS other",
        "BEGIN",
        "PRAGMA journal_mode = DELETE",
        "SELECT 1; SELECT 2",
    ]
    for c in (auto, conn):  # in a transaction: rejected at once, not at commit()
        for sql in forbidden:
            with pytest.raises(raftsql.NotSupportedError) as err:
                c.execute(sql)
            assert isinstance(err.value.raftsql_error, errors.ForbiddenSQL), sql
        assert not conn.in_transaction
    with pytest.raises(raftsql.NotSupportedError) as err:
        auto.execute(f"INSERT INTO {table} (n) VALUES (changes())")
    assert isinstance(err.value.raftsql_error, errors.NonDeterministicSQL)
    with pytest.raises(raftsql.NotSupportedError):
        auto.execute("CREATE TEMP TABLE scratch (x)")
    # Writes are held in a transaction, so a forbidden write is refused at commit().
    for sql in ("CREATE TEMP TABLE scratch (x)", f"UPDATE {table} SET n = last_insert_rowid()"):
        conn.execute(sql)
        with pytest.raises(raftsql.NotSupportedError):
            conn.commit()
        assert not conn.in_transaction


def test_error_mapping(conn: raftsql.Connection, auto: raftsql.Connection, table: str) -> None:
    auto.execute(f"INSERT INTO {table} (name) VALUES ('dup')")
    with pytest.raises(raftsql.IntegrityError) as integrity:
        auto.execute(f"INSERT INTO {table} (name) VALUES ('dup')")
    assert isinstance(integrity.value, raftsql.DatabaseError)
    assert isinstance(integrity.value.raftsql_error, errors.ConstraintError)
    assert integrity.value.__cause__ is integrity.value.raftsql_error

    for c in (auto, conn):
        for sql in ("SELEC 1", "SELECT * FROM no_such_table", f"SELECT nope FROM {table}"):
            with pytest.raises(raftsql.OperationalError) as err:
                c.execute(sql)
            assert isinstance(err.value.raftsql_error, errors.SQLError), sql
    with pytest.raises(raftsql.OperationalError, match="no such table"):
        auto.execute("INSERT INTO no_such_table VALUES (1)")
    conn.execute("INSERT INTO no_such_table VALUES (1)")  # needs the schema: at commit()
    with pytest.raises(raftsql.OperationalError, match="no such table"):
        conn.commit()


# === parameter types ==========================================================================


class Colour(enum.IntEnum):
    RED = 1


def test_parameter_types_round_trip(auto: raftsql.Connection) -> None:
    name = f"t{next(_names)}"
    auto.execute(f"CREATE TABLE {name} (d, dt, tm, dec, flag, blob, colour)")
    day = datetime.date(2024, 2, 29)
    moment = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
    aware = datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.UTC)
    clock = datetime.time(7, 8, 9)
    exact = decimal.Decimal("12345678901234567890.0123456789")
    cur = auto.cursor()
    cur.execute(
        f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?, ?, ?)",
        (day, moment, clock, exact, True, bytearray(b"\x01\x02"), Colour.RED),
    )
    named = {"dt": aware, "flag": False, "blob": memoryview(b"\x03")}
    cur.execute(f"INSERT INTO {name} (dt, flag, blob) VALUES (:dt, :flag, :blob)", named)
    rows = cur.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
    assert rows[0] == (
        "2024-02-29",
        "2024-02-29 23:59:58.123456",
        "07:08:09",
        str(exact),
        1,
        b"\x01\x02",
        1,
    )
    assert datetime.date.fromisoformat(rows[0][0]) == day
    assert datetime.datetime.fromisoformat(rows[0][1]) == moment
    assert datetime.time.fromisoformat(rows[0][2]) == clock
    assert decimal.Decimal(rows[0][3]) == exact  # exact: no float rounding
    assert datetime.datetime.fromisoformat(rows[1][1]) == aware and rows[1][4] == 0
    assert rows[1][5] == b"\x03"
    # SQLite's date functions understand the stored text.
    assert auto.execute("SELECT date(?, '+1 day'), time(?)", (day, moment)).fetchone() == (
        "2024-03-01",
        "23:59:58",
    )
    hit = auto.execute(f"SELECT count(*) FROM {name} WHERE d = ?", (raftsql.Date(2024, 2, 29),))
    assert hit.fetchone() == (1,)


# === the driver's statement classifier agrees with the server's ===============================


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT 1;;",
        "INSERT INTO t VALUES (1);",
        "  -- a comment\n /* another */ select * from t",
        "VALUES (1), (2)",
        "EXPLAIN QUERY PLAN SELECT * FROM t",
        "EXPLAIN INSERT INTO t VALUES (1)",
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "WITH a(x) AS (VALUES (1)) INSERT INTO t SELECT x FROM a",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) "
        "DELETE FROM t WHERE x IN c",
        "INSERT INTO t VALUES (?, ?)",
        "insert or replace into t values (:a, @b, $c)",
        "REPLACE INTO t VALUES (?3)",
        "UPDATE t SET x = 'it''s; a (string' WHERE y = \"odd;col\"",
        "DELETE FROM t RETURNING *",
        "CREATE TABLE t2 (x INTEGER PRIMARY KEY, y TEXT DEFAULT 'a;b')",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; DELETE FROM t; END",
        "CREATE VIEW v AS SELECT 1",
        "CREATE INDEX i ON t (x)",
        "DROP TABLE t",
        "ALTER TABLE t ADD COLUMN z",
        "ANALYZE",
        "REINDEX",
        "PRAGMA table_info(t)",
        "PRAGMA main.table_info('t')",
        "PRAGMA user_version",
        "PRAGMA user_version = 7",
        "PRAGMA main.application_id = 3",
    ],
)
def test_the_driver_routes_statements_as_the_server_does(sql: str) -> None:
    server = server_classify(sql)
    mine = client_classify(sql)
    assert mine.kind is (Kind.WRITE if server.is_write else Kind.READ)
    assert mine.verb == server.verb
    assert mine.param_style == server.param_style.value
    assert mine.param_count == server.param_count
    assert mine.param_names == server.param_names


@pytest.mark.parametrize(
    "sql",
    [
        "BEGIN",
        "COMMIT",
        "ATTACH 'x' AS y",
        "VACUUM",
        "SELEC 1",
        "SELECT 'open",
        "SELECT 1; SELECT 2",
    ],
)
def test_the_driver_leaves_what_it_cannot_place_to_the_server(sql: str) -> None:
    assert client_classify(sql).kind is Kind.UNKNOWN
    with pytest.raises(errors.RaftsqlError):
        server_classify(sql)
