"""The log payload and the result format round-trip exactly, stay compact, and reject
malformed input with a ProtocolError (a follower must never crash on a bad entry); errors
round-trip through their wire form."""

from __future__ import annotations

import pickle

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftsql import errors
from raftsql.errors import (
    ConstraintError,
    ForbiddenSQL,
    NotLeaderError,
    ProtocolError,
    RaftsqlError,
    SQLError,
    error_from_wire,
)
from raftsql.sql.command import (
    CommandResult,
    Statement,
    StatementResult,
    WriteCommand,
    results_to_wire,
    statement,
)

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
params = st.one_of(
    st.lists(values, max_size=5).map(tuple),
    st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=5),
)
commands = st.builds(
    WriteCommand,
    session=st.one_of(st.binary(max_size=16), st.text(max_size=16)),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    stmts=st.lists(st.builds(Statement, st.text(max_size=40), params), min_size=1, max_size=4).map(
        tuple
    ),
    atomic=st.booleans(),
    time_ns=st.integers(min_value=0, max_value=2**63 - 1),
    seed=st.integers(min_value=-(2**63), max_value=2**64 - 1),
)


@given(commands)
def test_write_command_round_trips(cmd: WriteCommand) -> None:
    assert WriteCommand.decode(cmd.encode()) == cmd


def test_write_command_is_a_flat_compact_array() -> None:
    cmd = WriteCommand(b"sess", 7, (Statement("INSERT INTO t VALUES (?)", (1,)),), True, 5, 9)
    data = cmd.encode()
    assert cbor2.loads(data) == [1, b"sess", 7, True, 5, 9, "INSERT INTO t VALUES (?)", [1]]
    assert len(data) < 50  # no field names on the hot path


def test_stamped_fills_in_leader_time_and_seed() -> None:
    cmd = WriteCommand("s", 1, (Statement("SELECT 1"),))
    stamped = cmd.stamped(123, 456)
    assert (stamped.time_ns, stamped.seed) == (123, 456)
    assert (cmd.time_ns, cmd.seed) == (0, 0)


def test_statement_helper_accepts_loose_shapes() -> None:
    assert statement("SELECT ?", [1]) == Statement("SELECT ?", (1,))
    assert statement("SELECT :a", {"a": 1}) == Statement("SELECT :a", {"a": 1})
    assert statement("SELECT 1") == Statement("SELECT 1", ())


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\xff\xff", "undecodable"),
        (cbor2.dumps({"a": 1}), "not a command array"),
        (cbor2.dumps([2, b"s", 1, True, 0, 0, "SELECT 1", []]), "format"),
        (cbor2.dumps([1, 5, 1, True, 0, 0, "SELECT 1", []]), "session"),
        (cbor2.dumps([1, b"s", "1", True, 0, 0, "SELECT 1", []]), "seq"),
        (cbor2.dumps([1, b"s", 1, 1, 0, 0, "SELECT 1", []]), "atomic"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0]), "pairs"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0, "SELECT 1"]), "pairs"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0, b"SELECT 1", []]), "SQL must be a string"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0, "SELECT ?", [[1]]]), "parameter of type list"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0, "SELECT ?", 5]), "array or a map"),
        (cbor2.dumps([1, b"s", 1, True, 0, 0, "SELECT :a", {1: 2}]), "names must be strings"),
    ],
)
def test_malformed_commands_are_protocol_errors(payload: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        WriteCommand.decode(payload)


def test_tagged_cbor_values_are_rejected() -> None:
    import datetime

    payload = cbor2.dumps(
        [1, b"s", 1, True, 0, 0, "SELECT ?", [datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)]]
    )
    with pytest.raises(ProtocolError, match="datetime"):
        WriteCommand.decode(payload)


results = st.builds(
    StatementResult,
    rows=st.lists(st.lists(values, max_size=3).map(tuple), max_size=4),
    columns=st.lists(st.text(max_size=5), max_size=3),
    rowcount=st.integers(min_value=-1, max_value=1000),
    lastrowid=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    truncated=st.booleans(),
)


@given(st.lists(results, max_size=4).map(tuple))
def test_command_result_round_trips(rs: tuple[StatementResult, ...]) -> None:
    decoded = CommandResult.decode(CommandResult(rs).encode())
    assert decoded == CommandResult(rs)
    assert decoded.ok
    assert decoded.unwrap() == rs


def test_error_result_round_trips_and_unwrap_raises() -> None:
    result = CommandResult(error=ConstraintError("UNIQUE constraint failed: t.a", statement=1))
    decoded = CommandResult.decode(result.encode())
    assert decoded == result
    assert not decoded.ok
    with pytest.raises(ConstraintError, match="UNIQUE") as info:
        decoded.unwrap()
    assert info.value.details == {"statement": 1}


@pytest.mark.parametrize(
    "payload", [b"\x00", cbor2.dumps([]), cbor2.dumps([0, [], []]), cbor2.dumps([7, {}])]
)
def test_malformed_results_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        CommandResult.decode(payload)


# --- errors ---------------------------------------------------------------------------------

ALL_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, RaftsqlError) and cls is not RaftsqlError
]


def test_every_error_class_has_a_unique_code() -> None:
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert {"sql_error", "constraint", "forbidden_sql", "parameter", "not_leader"} <= set(codes)


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_errors_round_trip_through_the_wire(cls: type[RaftsqlError]) -> None:
    err = cls("something went wrong", statement=2)
    wire = err.to_wire()
    assert wire == {"code": cls.code, "message": "something went wrong", "statement": 2}
    assert cbor2.loads(cbor2.dumps(wire)) == wire  # plain values only
    back = error_from_wire(wire)
    assert type(back) is cls
    assert back == err
    assert str(back) == "something went wrong"


def test_error_hierarchy_matches_the_pep249_mapping_plan() -> None:
    assert issubclass(ConstraintError, SQLError)
    assert issubclass(errors.NonDeterministicSQL, ForbiddenSQL)
    assert issubclass(errors.StaleRequest, ProtocolError)


def test_not_leader_carries_the_leader_hint() -> None:
    err = error_from_wire(NotLeaderError("ask node 2", leader_id=2, leader_addr="h:1").to_wire())
    assert isinstance(err, NotLeaderError)
    assert (err.leader_id, err.leader_addr) == (2, "h:1")
    assert NotLeaderError("unknown").leader_id is None


def test_unknown_codes_survive_as_base_errors() -> None:
    err = error_from_wire({"code": "from_the_future", "message": "hi", "x": 1})
    assert type(err) is RaftsqlError
    assert err.code == "from_the_future"
    assert err.to_wire() == {"code": "from_the_future", "message": "hi", "x": 1}


@pytest.mark.parametrize("wire", [None, {"message": "m"}, {"code": 1, "message": "m"}, {1: 2}])
def test_malformed_wire_errors_become_protocol_errors(wire: object) -> None:
    assert isinstance(error_from_wire(wire), ProtocolError)  # type: ignore[arg-type]


def test_errors_pickle_with_their_details() -> None:
    err = NotLeaderError("elsewhere", leader_id=3)
    back = pickle.loads(pickle.dumps(err))
    assert back == err
    assert back.leader_id == 3


def test_a_subclass_must_pick_a_fresh_code() -> None:
    with pytest.raises(TypeError):

        class Dup(SQLError):  # type: ignore[misc]
            code = "constraint"

    with pytest.raises(TypeError):

        class NoCode(SQLError):
            pass


def test_results_to_wire_matches_decoding_then_converting() -> None:
    """The leader's shortcut from an encoded result to the wire gives what the long way
    (decode, then convert each StatementResult) gives, and raises the same errors."""
    from raftsql.server.clients import result_to_wire

    ok = CommandResult(
        (
            StatementResult([(1, "a"), (2, None)], ["id", "name"], -1, None, False),
            StatementResult([], [], 1, 7, False),
        )
    ).encode()
    assert results_to_wire(ok) == [result_to_wire(r) for r in CommandResult.decode(ok).unwrap()]
    failed = CommandResult(error=ConstraintError("UNIQUE constraint failed: t.id")).encode()
    with pytest.raises(ConstraintError, match="UNIQUE"):
        results_to_wire(failed)
