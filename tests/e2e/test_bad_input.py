"""Bad bytes and bad requests on a node's port: an error for that request alone, the node
keeps serving, and nothing acknowledged is lost."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import pytest

from raftsql import errors
from raftsql.cluster import LocalCluster
from raftsql.net.framing import FrameDecoder, encode_frame

pytestmark = pytest.mark.timeout(120)

MakeCluster = Callable[..., LocalCluster]


class Raw:
    """A hand-driven client connection that can send anything at all."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.decoder = FrameDecoder()
        self.pending: list[object] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)  # type: ignore[return-value]

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def hello(address: str) -> Raw:
    raw = Raw(address)
    raw.send(encode_frame({"hello": "client"}))
    return raw


def test_bad_requests_are_answered_one_by_one(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE t (x INTEGER NOT NULL)")
        c.execute("INSERT INTO t VALUES (1)")
    leader = cluster.wait_for_leader()
    raw = hello(cluster.address(leader))
    cases = [
        ({"id": 1, "op": "fly"}, "protocol"),
        ({"id": 2}, "protocol"),
        (["not", "a", "map"], "protocol"),
        ({"id": 3, "op": "write", "stmts": "nope"}, "protocol"),
        ({"id": 4, "op": "write", "stmts": [["INSERT INTO t VALUES (?)", [[1]]]]}, "parameter"),
        ({"id": 5, "op": "write", "stmts": [["INSERT INTO t VALUES (NULL)", []]]}, "constraint"),
        ({"id": 6, "op": "read", "sql": "SELECT * FROM missing"}, "sql_error"),
        ({"id": 7, "op": "read", "sql": "SELECT 1", "consistency": "psychic"}, "parameter"),
        ({"id": 8, "op": "read", "sql": "PRAGMA journal_mode = DELETE"}, "forbidden_sql"),
        ({"id": 9, "op": "write", "stmts": [["SELECT load_extension('x')", []]]}, "forbidden_sql"),
    ]
    for request, code in cases:
        raw.send(encode_frame(request))
        answer = raw.reply()
        assert answer["ok"] is False and answer["error"]["code"] == code, (request, answer)
    raw.send(encode_frame({"id": 10, "op": "read", "sql": "SELECT x FROM t"}))
    assert raw.reply() == {
        "id": 10,
        "ok": True,
        "columns": ["x"],
        "rows": [[1]],
        "rowcount": -1,
        "lastrowid": None,
        "truncated": False,
    }


def test_malformed_and_oversized_frames(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    with cluster.client() as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES ('kept')")
    address = cluster.address(cluster.wait_for_leader())

    # a frame longer than the limit: refused from its header, the connection goes on
    raw = hello(address)
    raw.send(struct.pack(">I", 0xFFFFFFF0))
    answer = raw.reply()
    assert answer["ok"] is False and answer["error"]["code"] == "protocol"
    assert "exceeds the maximum" in answer["error"]["message"]
    raw.sock.close()

    # invalid CBOR: an error, then the connection is closed (the stream is out of step)
    raw = hello(address)
    raw.send(struct.pack(">I", 3) + b"\xff\xff\xff")
    answer = raw.reply()
    assert answer["ok"] is False and answer["error"]["code"] == "protocol"
    assert raw.closed_by_peer()

    # no hello at all, garbage, a peer hello with an unknown id, and a half frame
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n",
        encode_frame({"hello": "peer", "id": 99}) + b"x",
        encode_frame([1, 2, 3]),
        struct.pack(">I", 100) + b"abc",
    ]:
        raw = Raw(address)
        raw.send(junk)
        raw.sock.close()

    # a peer link sending an unknown message type is dropped; the node stays healthy
    peer = Raw(address)
    peer.send(encode_frame({"hello": "peer", "id": 2}))
    peer.send(encode_frame([250, 1, 2, 3]))
    peer.sock.close()

    time.sleep(0.3)
    with cluster.client() as c:
        c.execute("INSERT INTO t VALUES ('after')")
        assert c.query("SELECT x FROM t ORDER BY rowid").rows == [("kept",), ("after",)]
        assert c.status()["role"] in ("leader", "follower")


def test_request_to_a_node_that_is_down_fails_clearly(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    dead = cluster.address(1)
    cluster.kill(1)
    from raftsql.client import Client

    with Client([dead], timeout=1.0) as c, pytest.raises(errors.RequestTimeout) as err:
        c.query("SELECT 1")
    assert "refused" in str(err.value).lower() or "connect" in str(err.value).lower()
    # the rest of the cluster carries on
    others = [cluster.address(i) for i in (2, 3)]
    with Client(others) as c:
        c.execute("CREATE TABLE alive (x)")
        assert c.query("SELECT count(*) FROM alive").rows == [(0,)]
