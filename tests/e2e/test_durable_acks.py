"""A follower acknowledges entries only once they are on its disk (PySyncObj #84: answering
before the log is synced loses acknowledged writes in a crash). The core's rule is tested
message by message in tests/unit; this checks the server keeps it: every successful
AppendEntriesResponse a follower sends, from its disk worker or from the loop, covers only
entries its log had fsynced before the send. Three nodes in one trio program, on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from raftsql.raft.messages import AppendEntriesResponse, Message
from raftsql.server.node import Node
from tests.e2e.in_process import three_nodes, wait_leader

pytestmark = pytest.mark.timeout(60)


class AckAudit:
    """Wraps one follower's log sync and its link to the leader: records the highest index
    fsynced so far and every acknowledged index, with any ack that got ahead of the disk."""

    def __init__(self, node: Node, leader_id: int) -> None:
        self.lock = threading.Lock()
        self.synced = node.storage.log.last_index  # recovered at open: on disk already
        self.acked: list[int] = []
        self.ahead: list[tuple[int, int]] = []
        log = node.storage.log
        real_sync = log.sync

        def sync() -> None:
            last = log.last_index
            real_sync()
            with self.lock:
                self.synced = max(self.synced, last)

        log.sync = sync  # type: ignore[method-assign]
        link = node.links[leader_id]
        link.send_from_thread = self._watch(link.send_from_thread)  # type: ignore[method-assign]
        link.send_batch = self._watch(link.send_batch)  # type: ignore[method-assign]

    def _watch(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def watched(messages: Sequence[Message], *args: Any) -> Any:
            with self.lock:
                for m in messages:
                    if isinstance(m, AppendEntriesResponse) and m.success:
                        self.acked.append(m.index)
                        if m.index > self.synced:
                            self.ahead.append((m.index, self.synced))
            return send(messages, *args)

        return watched


async def test_followers_acknowledge_only_what_their_log_has_fsynced(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as nodes:
        leader = await wait_leader(nodes)
        audits = [AckAudit(n, leader.config.id) for n in nodes if n is not leader]
        await leader.write([("CREATE TABLE t (x INTEGER)", ())])
        for x in range(40):
            await leader.write([("INSERT INTO t VALUES (?)", (x,))])
        for audit in audits:
            assert not audit.ahead, f"acks ahead of the disk (acked, synced): {audit.ahead}"
        # the audit saw the acks that committed these writes (else it proves nothing)
        assert max(max(a.acked, default=0) for a in audits) >= leader.core.commit - 1
        assert all(len(a.acked) >= 20 for a in audits)
