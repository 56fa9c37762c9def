"""The SQLAlchemy dialect (``raftsql.sqlalchemy``) against one real local cluster.

One cluster serves the whole module; every test works on tables of its own.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import uuid
import warnings
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import registry
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import raftsql
from raftsql.cluster import LocalCluster
from raftsql.sqlalchemy import RaftsqlDialect, create_engine, make_url

registry.register("raftsql", "raftsql.sqlalchemy", "RaftsqlDialect")

pytestmark = pytest.mark.timeout(60)

_names = itertools.count(1)


def fresh(prefix: str = "t") -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(directory=tmp_path_factory.mktemp("sa") / "local", n=3)
    try:
        local.start(timeout=30)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def engine(cluster: LocalCluster) -> Iterator[sa.Engine]:
    eng = sa.create_engine("raftsql:///?hosts=" + ",".join(cluster.addresses()))
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def auto_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    eng = engine.execution_options(isolation_level="AUTOCOMMIT")
    yield eng


def make_table(name: str, metadata: sa.MetaData | None = None) -> sa.Table:
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False, unique=True),
        sa.Column("n", sa.Integer, server_default="0"),
        sa.Column("day", sa.Date),
        sa.Column("price", sa.Numeric(10, 2)),
    )


# --- Core ---------------------------------------------------------------------------------


def test_dialect_basics(engine: sa.Engine) -> None:
    assert engine.dialect.name == "raftsql"
    assert engine.dialect.driver == "raftsql"
    assert isinstance(engine.dialect, RaftsqlDialect)
    assert RaftsqlDialect.import_dbapi() is raftsql
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1 + 1")).scalar() == 2
        assert conn.get_isolation_level() == "SERIALIZABLE"
        assert engine.dialect.server_version_info >= (3, 35)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert conn.get_isolation_level() == "AUTOCOMMIT"
        assert conn.connection.dbapi_connection.autocommit is True
    # The pool resets the level: the next checkout is transactional again.
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False


def test_core_round_trip(engine: sa.Engine) -> None:
    table = make_table(fresh())
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"name": "a", "day": datetime.date(2024, 5, 1), "price": decimal.Decimal("1.50")},
                {"name": "b", "day": None, "price": None},
            ],
        )
        conn.execute(table.insert().values(name="c", n=7))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
    assert [(r.name, r.n, r.day, r.price) for r in rows] == [
        ("a", 0, datetime.date(2024, 5, 1), decimal.Decimal("1.50")),
        ("b", 0, None, None),
        ("c", 7, None, None),
    ]
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.name == "b").values(n=table.c.n + 5))
        conn.execute(table.delete().where(table.c.name == "c"))
    with engine.connect() as conn:
        got = conn.execute(
            sa.text(f"SELECT name, n FROM {table.name} WHERE n >= :low ORDER BY name"),
            {"low": 0},
        ).all()
        assert [tuple(r) for r in got] == [("a", 0), ("b", 5)]
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 2


def test_begin_block_is_atomic(engine: sa.Engine) -> None:
    table = make_table(fresh())
    table.metadata.create_all(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(table.insert().values(name="x"))
        conn.execute(table.insert().values(name="x"))  # UNIQUE: fails at commit
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    # A rolled-back block sends nothing.
    with engine.connect() as conn:
        conn.execute(table.insert().values(name="y"))
        conn.rollback()
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_autocommit_returning_and_lastrowid(auto_engine: sa.Engine) -> None:
    table = make_table(fresh())
    table.metadata.create_all(auto_engine)
    with auto_engine.connect() as conn:
        result = conn.execute(table.insert().values(name="a"))
        assert result.inserted_primary_key == (1,)
        got = conn.execute(table.insert().values(name="b").returning(table.c.id, table.c.n))
        assert tuple(got.one()) == (2, 0)


def test_savepoints_are_refused(engine: sa.Engine) -> None:
    with engine.connect() as conn, pytest.raises(NotImplementedError, match="SAVEPOINT"):
        conn.begin_nested()


# --- Reflection ---------------------------------------------------------------------------


def test_reflection(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    parent = make_table(fresh("parent"), metadata)
    child = sa.Table(
        fresh("child"),
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey(f"{parent.name}.id"), index=True),
    )
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    names = inspector.get_table_names()
    assert {parent.name, child.name} <= set(names)
    assert not [n for n in names if n.startswith("_raftsql_")]
    assert inspector.has_table(parent.name)
    assert not inspector.has_table("no_such_table")
    columns = {c["name"]: c for c in inspector.get_columns(parent.name)}
    assert list(columns) == ["id", "name", "n", "day", "price"]
    assert isinstance(columns["name"]["type"], sa.String)
    assert columns["name"]["nullable"] is False
    assert columns["n"]["default"] == "'0'"
    assert inspector.get_pk_constraint(parent.name)["constrained_columns"] == ["id"]
    assert inspector.get_unique_constraints(parent.name)[0]["column_names"] == ["name"]
    [fk] = inspector.get_foreign_keys(child.name)
    assert (fk["referred_table"], fk["constrained_columns"]) == (parent.name, ["parent_id"])
    assert [i["column_names"] for i in inspector.get_indexes(child.name)] == [["parent_id"]]
    assert inspector.get_schema_names() == ["main"]

    reflected = sa.MetaData()
    reflected.reflect(engine, only=[parent.name, child.name])
    assert set(reflected.tables[child.name].c.keys()) == {"id", "parent_id"}
    auto = sa.Table(parent.name, sa.MetaData(), autoload_with=engine)
    assert auto.c.id.primary_key


# --- ORM ----------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "orm_users"
    id: Mapped[int] = mapped_column(primary_key=True)  # autoincrement
    name: Mapped[str] = mapped_column(sa.String(40))
    age: Mapped[int | None]


class Note(Base):
    __tablename__ = "orm_notes"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: uuid4hex())
    body: Mapped[str]


def uuid4hex() -> str:
    return uuid.uuid4().hex


def test_orm_autoincrement_with_autocommit_engine(cluster: LocalCluster) -> None:
    """Recipe 1: autoincrement keys need an AUTOCOMMIT engine for the Session."""
    eng = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        Base.metadata.create_all(eng, tables=[User.__table__])
        with Session(eng) as session:
            ada = User(name="ada", age=36)
            session.add_all([ada, User(name="bob"), User(name="cy", age=3)])
            session.commit()
            assert ada.id is not None
            ada_id = ada.id
        with Session(eng) as session:
            got = session.scalars(sa.select(User).order_by(User.id)).all()
            assert [(u.name, u.age) for u in got] == [("ada", 36), ("bob", None), ("cy", 3)]
            ada = session.get(User, ada_id)
            assert ada is not None
            ada.age = 37
            session.delete(got[1])
            session.commit()
        with Session(eng) as session:
            got = session.scalars(sa.select(User).order_by(User.id)).all()
            assert [(u.name, u.age) for u in got] == [("ada", 37), ("cy", 3)]
    finally:
        eng.dispose()


def test_orm_client_side_keys_are_atomic(engine: sa.Engine) -> None:
    """Recipe 2: keys chosen on the client let a transactional Session commit atomically."""
    Base.metadata.create_all(engine, tables=[Note.__table__])
    with Session(engine) as session:
        session.add_all([Note(body="one"), Note(id="fixed", body="two")])
        session.commit()
    with Session(engine) as session:
        notes = session.scalars(sa.select(Note).order_by(Note.body)).all()
        assert [n.body for n in notes] == ["one", "two"]
        assert len(notes[0].id) == 32
        notes[0].body = "uno"
        session.delete(notes[1])
        session.commit()
    with Session(engine) as session:
        assert [(n.id == "fixed", n.body) for n in session.scalars(sa.select(Note))] == [
            (False, "uno")
        ]
    # A failing flush applies nothing: the duplicate key fails the one atomic commit.
    with Session(engine) as session:
        session.add_all([Note(id="k", body="new"), Note(id="k2", body="x")])
        session.flush()
        session.add(Note(id="k", body="dup"))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Note)) == 1


# --- pandas -------------------------------------------------------------------------------


def test_pandas_read_sql_and_to_sql(engine: sa.Engine) -> None:
    name = fresh("frame")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, None, 2.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df.to_sql(name, engine, index=False, if_exists="fail")
        back = pd.read_sql(f"SELECT a, b, c FROM {name} ORDER BY a", engine)
        pd.testing.assert_frame_equal(back, df)

        df.to_sql(name, engine, index=False, if_exists="append")
        assert pd.read_sql(f"SELECT count(*) AS n FROM {name}", engine)["n"][0] == 6

        other = pd.DataFrame({"k": ["p", "q"], "v": [10, 20]})
        other.to_sql(name, engine, index=False, if_exists="replace")
        back = pd.read_sql(sa.text(f"SELECT * FROM {name} ORDER BY k"), engine)
        pd.testing.assert_frame_equal(back, other)
        assert [c["name"] for c in sa.inspect(engine).get_columns(name)] == ["k", "v"]

        params = pd.read_sql(
            sa.text(f"SELECT v FROM {name} WHERE k = :k"), engine, params={"k": "q"}
        )
        assert params["v"].tolist() == [20]
        table = pd.read_sql_table(name, engine)
        assert table["k"].tolist() == ["p", "q"]
    with pytest.raises(ValueError, match="already exists"):
        other.to_sql(name, engine, index=False)


# --- URLs ---------------------------------------------------------------------------------


def connect_args(url: str | sa.URL) -> tuple[list[object], dict[str, object]]:
    return RaftsqlDialect().create_connect_args(make_url(url))


def test_url_forms() -> None:
    assert connect_args("raftsql://") == ([], {})
    assert connect_args("raftsql://h1:7001") == (["h1:7001"], {})
    assert connect_args("raftsql:///?hosts=h1:1,h2:2&consistency=stale&timeout=5") == (
        ["h1:1,h2:2"],
        {"consistency": "stale", "timeout": 5.0},
    )
    assert connect_args("raftsql://h1:1/?hosts=h2:2,h3:3&autocommit=true") == (
        ["h1:1,h2:2,h3:3"],
        {"autocommit": True},
    )
    # The comma form that sqlalchemy.engine.make_url cannot parse, through our make_url.
    assert connect_args("raftsql://h1:1,h2:2/?consistency=stale&timeout=5") == (
        ["h1:1,h2:2"],
        {"consistency": "stale", "timeout": 5.0},
    )
    assert connect_args("raftsql://h1:1,h2:2") == (["h1:1,h2:2"], {})
    assert connect_args(sa.URL.create("raftsql", host="h1:1,h2:2")) == (["h1:1,h2:2"], {})
    with pytest.raises(sa.exc.ArgumentError, match="unknown raftsql URL option"):
        connect_args("raftsql:///?hosts=h:1&colour=red")
    with pytest.raises(sa.exc.ArgumentError, match="no database path"):
        connect_args("raftsql://h:1/somedb")


def test_url_forms_connect(cluster: LocalCluster) -> None:
    one, *rest = cluster.addresses()
    urls = [
        cluster.url() + "?consistency=stale&timeout=5",
        f"raftsql://{one}",
        f"raftsql://{one}/?hosts={','.join(rest)}",
    ]
    for url in urls:
        eng = create_engine(url)
        try:
            with eng.connect() as conn:
                assert conn.execute(sa.text("SELECT 42")).scalar() == 42
        finally:
            eng.dispose()
    eng = sa.create_engine(f"raftsql:///?hosts={one}&consistency=stale")
    try:
        with eng.connect() as conn:
            assert conn.connection.dbapi_connection.consistency == "stale"
    finally:
        eng.dispose()
