"""Where the TUI's data comes from: a real cluster (``ClusterSource``) or a script
(``FakeSource``, for deterministic tests and screenshots).

Both are blocking and are only ever called from a worker thread, never from the UI loop,
so a slow or dead node can cost a poll its timeout but never freezes the screen.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from raftsql.client.client import Client, parse_hosts
from tui.model import NodePoll, Poll


class Source(Protocol):
    """What the app needs from a cluster."""

    def addresses(self) -> list[str]: ...

    def poll(self) -> Poll | None:
        """Every node's status once; ``None`` means "nothing new" (fakes that ran out)."""
        ...

    def transfer_leader(self, target: int) -> str: ...

    def snapshot(self, address: str) -> str: ...

    def close(self) -> None: ...


class ClusterSource:
    """Polls every node of a real cluster in parallel, each with a short timeout.

    Nodes named in any status's ``peers`` are added to the polled set, so giving one
    address is enough to watch the whole cluster.
    """

    def __init__(self, hosts: str | Iterable[str], timeout: float = 0.7) -> None:
        self.timeout = timeout
        self._addresses = [f"{h}:{p}" for h, p in parse_hosts(hosts)]
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._addresses)

    def _client(self, address: str) -> Client:
        # One long-lived client per node: it reconnects by itself after a failure, and
        # saves a TCP handshake per node per poll. Only the poll thread uses these.
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = Client([address], timeout=self.timeout)
        return client

    def _poll_one(self, address: str) -> NodePoll:
        try:
            return NodePoll(address, self._client(address).status())
        except Exception as exc:
            self._clients.pop(address, None)
            with contextlib.suppress(Exception):
                self._client(address).close()
            return NodePoll(address, None, _short_error(exc))

    def poll(self) -> Poll:
        addresses = self.addresses()
        at = time.time()
        with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:
            nodes = list(pool.map(self._poll_one, addresses))
        known = set(addresses)
        for node in nodes:
            for addr in ((node.status or {}).get("peers") or {}).values():
                if str(addr) not in known:
                    known.add(str(addr))
                    with self._lock:
                        self._addresses.append(str(addr))
        return Poll(at, tuple(nodes))

    def transfer_leader(self, target: int) -> str:
        with Client(self.addresses(), timeout=5.0) as client:
            client.transfer_leader(target)
        return f"asked the leader to transfer leadership to node {target}"

    def snapshot(self, address: str) -> str:
        with Client([address], timeout=10.0) as client:
            reply = client.snapshot()
        index = reply.get("index", reply.get("snapshot_index"))
        return f"snapshot taken on {address}" + (f" at index {index}" if index else "")

    def close(self) -> None:
        for client in list(self._clients.values()):
            client.close()
        self._clients.clear()


def _short_error(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


class FakeSource:
    """Returns scripted polls one by one, then ``None`` forever (so the screen settles on
    the last one), and records the actions asked of it instead of performing them."""

    def __init__(self, script: Sequence[Poll]) -> None:
        self.script = list(script)
        self.actions: list[tuple[str, Any]] = []
        self._next = 0

    def addresses(self) -> list[str]:
        return [n.address for n in self.script[0].nodes] if self.script else []

    def poll(self) -> Poll | None:
        if self._next >= len(self.script):
            return None
        self._next += 1
        return self.script[self._next - 1]

    def transfer_leader(self, target: int) -> str:
        self.actions.append(("transfer", target))
        return f"asked the leader to transfer leadership to node {target}"

    def snapshot(self, address: str) -> str:
        self.actions.append(("snapshot", address))
        return f"snapshot taken on {address}"

    def close(self) -> None:
        pass


def fake_status(
    node_id: int,
    n: int = 3,
    leader: int | None = 1,
    term: int = 3,
    commit: int = 120,
    applied: int | None = None,
    first_index: int = 1,
    last_index: int | None = None,
    snapshot_index: int = 0,
    uptime: float = 3723.0,
    match: dict[int, int] | None = None,
    spares: tuple[int, ...] = (),
    role: str | None = None,
    writes: int = 0,
    reads: int = 0,
    refused: int = 0,
    base_port: int = 7001,
) -> dict[str, Any]:
    """A status dict shaped like a real node's, for fakes and tests."""
    peers = {str(i): f"127.0.0.1:{base_port + i - 1}" for i in range(1, n + 1)}
    is_leader = leader == node_id
    last = commit if last_index is None else last_index
    progress: dict[str, Any] = {}
    if is_leader:
        for i in range(1, n + 1):
            if i == node_id:
                continue
            m = (match or {}).get(i, last)
            progress[str(i)] = {
                "match": m,
                "next": m + 1,
                "state": "replicate",
                "lag": last - m,
                "active": True,
                "connected": True,
                "spare": i in spares,
                "last_ack": 0.05,
            }
    return {
        "id": node_id,
        "address": peers[str(node_id)],
        "role": role or ("leader" if is_leader else "follower"),
        "term": term,
        "leader": leader,
        "leader_address": peers.get(str(leader)) if leader else None,
        "commit": commit,
        "applied": commit if applied is None else applied,
        "first_index": first_index,
        "last_index": last,
        "snapshot_index": snapshot_index,
        "voters": list(range(1, n + 1)),
        "peers": peers,
        "progress": progress,
        "uptime": uptime,
        "last_contact": 0.0 if is_leader else 0.04,
        "latency_ms": {
            "write": {"n": writes, "p50": 2.5, "p99": 9.5} if writes else {"n": 0},
            "read": {"n": reads, "p50": 0.8, "p99": 3.0} if reads else {"n": 0},
        },
        "counters": {
            "writes": writes,
            "reads": reads,
            "snapshots_taken": 0,
            "snapshots_installed": 0,
            "writes_refused": refused,
        },
    }


def fake_poll(at: float, statuses: Sequence[dict[str, Any] | None], base_port: int = 7001) -> Poll:
    """A poll of nodes 1..n at consecutive ports; ``None`` marks a node that is down."""
    return Poll(
        at,
        tuple(
            NodePoll(
                f"127.0.0.1:{base_port + i}",
                st,
                None if st is not None else "no answer within 0.7s (connection refused)",
            )
            for i, st in enumerate(statuses)
        ),
    )
