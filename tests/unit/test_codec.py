"""The wire: message codec round trips, hostile input, frame splitting, trio streams."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import tracemalloc
import typing
from functools import partial
from typing import Any

import cbor2
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsql.net import codec
from raftsql.net.errors import FrameTooLarge, MalformedFrame, ProtocolError
from raftsql.net.framing import (
    FrameDecoder,
    decode_payload,
    encode_frame,
    read_frames,
    send_frame,
)
from raftsql.raft import messages
from raftsql.raft.messages import (
    AppendEntries,
    Entry,
    EntryKind,
    Heartbeat,
    InstallSnapshot,
    Message,
    SnapshotMeta,
)

U64 = st.integers(0, 2**64 - 1)
IDS = st.one_of(st.integers(0, 9), st.integers(-(2**63), 2**63 - 1))
ENTRIES = st.builds(
    Entry,
    term=U64,
    index=U64,
    data=st.binary(max_size=64),
    kind=st.sampled_from(EntryKind),
)
METAS = st.builds(
    SnapshotMeta, index=U64, term=U64, voters=st.frozensets(IDS, max_size=7), size=U64
)
ID_FIELDS = {"frm", "to", "vote", "voters"}


def _strategy_for(name: str, hint: Any) -> st.SearchStrategy[Any]:
    if hint is int:
        return IDS if name in ID_FIELDS else U64
    if hint == (int | None):
        return st.none() | IDS
    if hint is bool:
        return st.booleans()
    if hint is bytes:
        return st.binary(max_size=64)
    if hint is EntryKind:
        return st.sampled_from(EntryKind)
    if hint == tuple[Entry, ...]:
        return st.lists(ENTRIES, max_size=8).map(tuple)
    if hint is SnapshotMeta:
        return METAS
    if hint == frozenset[int]:
        return st.frozensets(IDS, max_size=7)
    raise AssertionError(f"test has no strategy for {name}: {hint}")


def _builds(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls, **{f.name: _strategy_for(f.name, hints[f.name]) for f in dataclasses.fields(cls)}
    )


ALL_WIRE_TYPES = sorted(codec.TAGS, key=lambda c: codec.TAGS[c])
ANY_MESSAGE = st.one_of([_builds(cls) for cls in ALL_WIRE_TYPES])


# ---------------------------------------------------------------------- registry


def test_every_dataclass_in_messages_has_a_tag() -> None:
    classes = {
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj is not Message
    }
    assert classes == set(codec.TAGS)


def test_tags_are_stable() -> None:
    """The tag registry is the wire format: changing a number breaks mixed-version clusters."""
    assert {cls.__name__: tag for cls, tag in codec.TAGS.items()} == {
        "Entry": 1,
        "HardState": 2,
        "SnapshotMeta": 3,
        "ReadState": 4,
        "SnapshotChunk": 5,
        "RequestVote": 8,
        "RequestVoteResponse": 9,
        "AppendEntries": 10,
        "AppendEntriesResponse": 11,
        "Heartbeat": 12,
        "HeartbeatResponse": 13,
        "ReadIndexRequest": 14,
        "ReadIndexResponse": 15,
        "TimeoutNow": 16,
        "InstallSnapshot": 17,
        "InstallSnapshotResponse": 18,
    }


def test_heartbeat_golden_bytes() -> None:
    """A 5-field heartbeat is 7 bytes: array header, tag, five small ints."""
    assert codec.encode(Heartbeat(1, 2, 3, commit=4, round=5)) == bytes.fromhex("860c0102030405")


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", ALL_WIRE_TYPES, ids=lambda c: c.__name__)
def test_round_trip_each_type(cls: type) -> None:
    @settings(max_examples=60, deadline=None)
    @given(_builds(cls))
    def check(obj: Any) -> None:
        assert codec.decode(codec.encode(obj)) == obj
        assert codec.from_wire(codec.to_wire(obj)) == obj
        got = FrameDecoder().feed(encode_frame(codec.to_wire(obj)))
        assert [codec.from_wire(x) for x in got] == [obj]

    check()


def test_large_append_entries_round_trip() -> None:
    entries = tuple(
        Entry(7, 1000 + i, bytes([i % 256]) * (i % 300), EntryKind(i % 3)) for i in range(3000)
    )
    msg = AppendEntries(1, 2, 7, prev_index=999, prev_term=6, entries=entries, commit=1500)
    out = codec.decode(codec.encode(msg))
    assert out == msg
    assert all(type(e.kind) is EntryKind for e in out.entries)


def test_decoded_values_have_exact_types() -> None:
    msg = InstallSnapshot(
        1, 2, 3, meta=SnapshotMeta(9, 3, frozenset({1, 2}), 10), offset=4, data=b"x", done=True
    )
    out = codec.decode(codec.encode(msg))
    assert type(out.meta.voters) is frozenset
    assert out.done is True


# ---------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        ([99, 1, 2], "unknown message type tag 99"),
        (["x"], "unknown message type tag 'x'"),
        ([], "non-empty array"),
        ({"tag": 12}, "non-empty array"),
        ([12, 1, 2, 3, 4], "Heartbeat: expected 5 fields, got 4"),
        ([12, 1, 2, 3, 4, 5, 6], "expected 5 fields, got 6"),
        ([12, 1, 2, "3", 4, 5], r"Heartbeat.term: expected an unsigned"),
        ([12, 1, 2, True, 4, 5], r"Heartbeat.term"),
        ([12, 1, 2, -1, 4, 5], r"Heartbeat.term"),
        ([12, 1, 2, 2**64, 4, 5], r"Heartbeat.term"),
        ([12, 1.5, 2, 3, 4, 5], r"Heartbeat.frm: expected a node id"),
        ([12, 2**63, 2, 3, 4, 5], r"Heartbeat.frm"),
        ([8, 1, 2, 3, 4, 5, 1, 0], r"RequestVote.pre: expected a boolean"),
        ([14, 1, 2, 3, "ctx"], r"ReadIndexRequest.ctx: expected a byte string"),
        ([10, 1, 2, 3, 4, 5, [[1, 2, b"", 0]], 6], r"AppendEntries.entries: expected a byte"),
        ([10, 1, 2, 3, 4, 5, b"\x00" * 10, 6], r"entries\[0\]: truncated entry header"),
        (
            [10, 1, 2, 3, 4, 5, struct.pack(">QQBI", 1, 2, 0, 50) + b"abc", 6],
            r"entries\[0\]: data runs past the end",
        ),
        (
            [10, 1, 2, 3, 4, 5, struct.pack(">QQBI", 1, 2, 9, 0), 6],
            r"entries\[0\]\.kind: unknown entry kind 9",
        ),
        ([17, 1, 2, 3, [1, 2, [1], 4, 5], 0, 0, b"", False], r"InstallSnapshot.meta: expected"),
        ([17, 1, 2, 3, [1, 2, ["a"], 4], 0, 0, b"", False], r"meta.voters\[0\]"),
        ([2, 1, "me", 3], r"HardState.vote"),
        ([1, 1, 2, b"", 3], r"Entry.kind: expected an entry kind"),
    ],
)
def test_bad_messages_get_a_clear_error(wire: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        codec.from_wire(wire)
    with pytest.raises(ProtocolError, match=match):
        codec.decode(cbor2.dumps(wire))


def test_decode_rejects_bad_cbor_and_trailing_bytes() -> None:
    with pytest.raises(MalformedFrame):
        codec.decode(b"\x9f")  # indefinite array, never closed
    with pytest.raises(MalformedFrame, match="trailing"):
        codec.decode(codec.encode(Heartbeat(1, 2, 3)) + b"\x00")
    with pytest.raises(MalformedFrame):
        codec.decode(b"")


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.binary(max_size=30)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20), st.lists(JSONISH, max_size=9))
def test_from_wire_on_arbitrary_structures_only_raises_protocol_error(
    tag: int, fields: list[Any]
) -> None:
    try:
        obj = codec.from_wire([tag, *fields])
    except ProtocolError:
        return
    assert type(obj) in codec.TAGS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode(data)


# ---------------------------------------------------------------------- framing

SAMPLE_OBJECTS: list[Any] = [
    {"id": 1, "session": "abc", "seq": 7, "stmts": [["INSERT INTO t VALUES (?)", [1]]]},
    [],
    None,
    b"\x00" * 300,
    codec.to_wire(Heartbeat(1, 2, 3, 4, 5)),
    "é" * 40,
    [1.5, -2, True, {"nested": [b"x", None]}],
]


def test_frames_split_at_every_byte_boundary_decode_the_same() -> None:
    stream = b"".join(encode_frame(o) for o in SAMPLE_OBJECTS)
    for cut in range(len(stream) + 1):
        dec = FrameDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert got == SAMPLE_OBJECTS, cut
        assert dec.buffered == 0


def test_byte_at_a_time() -> None:
    stream = b"".join(encode_frame(o) for o in SAMPLE_OBJECTS)
    dec = FrameDecoder()
    got: list[Any] = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert got == SAMPLE_OBJECTS


@settings(max_examples=200, deadline=None)
@given(st.lists(JSONISH, max_size=6), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_objects_random_splits(objs: list[Any], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(o) for o in objs)
    points = sorted({min(c, len(stream)) for c in cuts})
    dec = FrameDecoder()
    got: list[Any] = []
    prev = 0
    for p in [*points, len(stream)]:
        got += dec.feed(stream[prev:p])
        prev = p
    assert got == objs


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_only_raise_declared_errors(data: bytes, cuts: list[int]) -> None:
    dec = FrameDecoder(max_size=128)
    points = sorted({min(c, len(data)) for c in cuts})
    prev = 0
    for p in [*points, len(data)]:
        chunk = data[prev:p]
        prev = p
        while True:
            try:
                dec.feed(chunk)
                break
            except (FrameTooLarge, MalformedFrame) as exc:
                assert isinstance(exc, ValueError)
                chunk = b""  # keep draining what is buffered behind the error


def test_oversize_prefix_rejected_before_body_is_buffered() -> None:
    dec = FrameDecoder(max_size=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            dec.feed(struct.pack(">I", 3 << 30) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size == 3 << 30
    assert info.value.max_size == 1 << 20
    assert peak < 64 << 10


def test_oversize_frame_is_skipped_and_the_stream_continues() -> None:
    dec = FrameDecoder(max_size=1000)
    big = struct.pack(">I", 5000) + b"\xff" * 5000
    stream = encode_frame("before") + big + encode_frame("after")
    got: list[Any] = []
    errors = 0
    for i in range(0, len(stream), 333):
        chunk = stream[i : i + 333]
        try:
            got += dec.feed(chunk)
        except FrameTooLarge as exc:
            errors += 1
            got += exc.decoded
            got += dec.feed(b"")
    assert errors == 1
    assert got == ["before", "after"]
    assert dec.buffered == 0


def test_malformed_frame_keeps_earlier_and_later_frames() -> None:
    bad = struct.pack(">I", 2) + b"\xff\xff"
    stream = encode_frame(1) + bad + encode_frame(2) + encode_frame(3)
    dec = FrameDecoder()
    with pytest.raises(MalformedFrame) as info:
        dec.feed(stream)
    assert info.value.decoded == [1]
    assert dec.feed(b"") == [2, 3]


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x18", b"\x5a\xff\xff\xff\xff", b"\x81", b"\x01\x02", b"\x9b" + b"\xff" * 8],
)
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(MalformedFrame):
        FrameDecoder().feed(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(MalformedFrame):
        decode_payload(payload)


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    payload = b"\x81" * 100_000 + b"\x01"
    with pytest.raises(MalformedFrame):
        FrameDecoder(max_size=1 << 20).feed(struct.pack(">I", len(payload)) + payload)


def test_encode_frame_refuses_oversize() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 2000, max_size=1000)
    with pytest.raises(ValueError):
        FrameDecoder(max_size=0)


# ---------------------------------------------------------------------- trio streams


async def test_memory_stream_send_and_read() -> None:
    left, right = trio.testing.memory_stream_pair()
    msgs = [Heartbeat(1, 2, i, commit=i) for i in range(50)]

    async def sender() -> None:
        for m in msgs:
            await send_frame(left, codec.to_wire(m))
        await left.aclose()

    got: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        async for obj in read_frames(right):
            got.append(codec.from_wire(obj))
    assert got == msgs


async def test_reader_survives_a_malformed_frame() -> None:
    left, right = trio.testing.memory_stream_pair()
    bad = struct.pack(">I", 1) + b"\xff"
    await left.send_all(encode_frame("a") + bad + encode_frame("b"))
    await left.aclose()
    reader = read_frames(right)
    got: list[Any] = []
    errors: list[ProtocolError] = []
    while True:
        try:
            async for obj in reader:
                got.append(obj)
            break
        except MalformedFrame as exc:
            errors.append(exc)
    assert got == ["a", "b"]
    assert len(errors) == 1


async def test_stream_closed_mid_frame_is_malformed() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(encode_frame("complete") + encode_frame("cut")[:-1])
    await left.aclose()
    reader = read_frames(right)
    assert await reader.receive() == "complete"
    with pytest.raises(MalformedFrame, match="inside a frame"):
        await reader.receive()
    with pytest.raises(EOFError):
        await reader.receive()


async def test_real_tcp_loopback_echo() -> None:
    """Frames over a real socket: large AppendEntries arrive in many TCP segments."""
    big = AppendEntries(
        1,
        2,
        5,
        prev_index=0,
        prev_term=0,
        entries=tuple(Entry(5, i + 1, b"%d" % i * 20) for i in range(5000)),
        commit=3,
    )
    msgs = [Heartbeat(1, 2, 5, commit=i) for i in range(20)] + [big, messages.TimeoutNow(3, 1, 9)]

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            async for obj in read_frames(stream):
                await send_frame(stream, obj)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        got: list[Any] = []
        async with client:
            reader = read_frames(client)
            for m in msgs:
                await send_frame(client, codec.to_wire(m))
            for _ in msgs:
                got.append(codec.from_wire(await reader.receive()))
        nursery.cancel_scope.cancel()
    assert got == msgs
