"""A tiny hand-driven cluster of RaftCores for scenario tests, message by message.

Unlike the simulator (tests/sim), nothing happens here unless the test says so: a test
ticks a node, delivers exactly the messages it wants, and reads the outcome. Each node
persists to an in-memory "disk" exactly as a real node would, so crash/restart scenarios
can be written too. ``trace`` lines read like etcd raft's interaction-test transcripts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable

from raftsql.raft import Config, RaftCore, Ready, Restored
from raftsql.raft.messages import (
    AppendEntries,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    ReadState,
    SnapshotMeta,
)


def describe(m: Message) -> str:
    """A one-line, human-readable form of a message, for traces and failure output."""
    name = type(m).__name__
    fields = {
        f.name: getattr(m, f.name)
        for f in dataclasses.fields(m)
        if f.name not in ("frm", "to", "term")
    }
    if isinstance(m, AppendEntries):
        ents = ",".join(f"{e.index}/{e.term}" for e in m.entries)
        return (
            f"{m.frm}->{m.to} {name} term={m.term} prev={m.prev_index}/{m.prev_term} "
            f"entries=[{ents}] commit={m.commit}"
        )
    if isinstance(m, InstallSnapshot):
        return (
            f"{m.frm}->{m.to} {name} term={m.term} snap={m.meta.index}/{m.meta.term} "
            f"offset={m.offset} len={m.length} done={m.done}"
        )
    detail = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{m.frm}->{m.to} {name} term={m.term} {detail}".rstrip()


class Disk:
    """What survives a crash: hard state, the stored log, the snapshot and its blob."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []
        self.snapshot = SnapshotMeta()
        self.blob = b""
        self.previous: tuple[SnapshotMeta, bytes] = (SnapshotMeta(), b"")
        """The snapshot before the latest: kept, as the core's contract asks."""
        self.staging: dict[SnapshotMeta, bytearray] = {}

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        keep = first - self.snapshot.index - 1
        del self.entries[max(0, keep) :]
        self.entries.extend(entries)


class Node:
    """A RaftCore plus its disk and a list-of-payloads state machine."""

    def __init__(self, config: Config, seed: int, disk: Disk | None = None) -> None:
        self.config = config
        self.disk = disk or Disk()
        self.applied_data: list[bytes] = list(_decode_blob(self.disk.blob))
        restored = Restored(
            self.disk.hard_state,
            self.disk.snapshot,
            tuple(self.disk.entries),
            self.disk.snapshot.index,
        )
        self.core = RaftCore(config, random.Random(seed), restored)
        self.read_states: list[ReadState] = []

    def process(self, persist: bool = True) -> list[Message]:
        """Run one Ready through persistence and apply; returns messages to deliver."""
        out: list[Message] = []
        while self.core.has_ready():
            rd: Ready = self.core.ready()
            out.extend(self._hydrate(m) for m in rd.messages)
            if not persist:
                return out  # crashed before the fsync: nothing else happens
            for c in rd.snapshot_chunks:
                if c.offset == 0:
                    self.disk.staging[c.meta] = bytearray()
                self.disk.staging[c.meta][c.offset : c.offset + len(c.data)] = c.data
            if rd.snapshot is not None:
                self.disk.previous = (self.disk.snapshot, self.disk.blob)
                self.disk.blob = bytes(self.disk.staging.pop(rd.snapshot))
                self.disk.snapshot = rd.snapshot
                self.disk.entries = []
                self.applied_data = list(_decode_blob(self.disk.blob))
            self.disk.append(rd.entries)
            if rd.hard_state is not None:
                self.disk.hard_state = rd.hard_state
            out.extend(rd.messages_after_persist)
            for e in rd.committed:
                if e.kind is EntryKind.NORMAL:
                    self.applied_data.append(e.data)
            self.read_states.extend(rd.read_states)
            self.core.advance(rd)
        return out

    def _hydrate(self, m: Message) -> Message:
        if isinstance(m, InstallSnapshot):
            d = self.disk
            blob = d.blob if m.meta == d.snapshot else dict([d.previous])[m.meta]
            return dataclasses.replace(m, data=blob[m.offset : m.offset + m.length])
        return m

    def take_snapshot(self, retain: int = 0) -> SnapshotMeta:
        blob = _encode_blob(self.applied_data)
        meta = self.core.compact(self.core.applied, len(blob), retain)
        self.disk.previous = (self.disk.snapshot, self.disk.blob)
        self.disk.snapshot, self.disk.blob = meta, blob
        self.disk.entries = [e for e in self.disk.entries if e.index > meta.index - retain]
        self.disk.entries = [e for e in self.disk.entries if e.index > self.core.log.offset]
        return meta


def _encode_blob(items: list[bytes]) -> bytes:
    return b"".join(len(x).to_bytes(4, "big") + x for x in items)


def _decode_blob(blob: bytes) -> Iterable[bytes]:
    i = 0
    while i < len(blob):
        n = int.from_bytes(blob[i : i + 4], "big")
        yield blob[i + 4 : i + 4 + n]
        i += 4 + n


class Cluster:
    """Nodes 1..n joined by a network the test controls completely."""

    def __init__(self, n: int = 3, seed: int = 0, **config: object) -> None:
        self.voters = frozenset(range(1, n + 1))
        self.seed = seed
        self.extra = config
        self.nodes = {i: Node(self._config(i), seed * 100 + i) for i in self.voters}
        self.queue: list[Message] = []
        self.trace: list[str] = []
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()

    def _config(self, i: int) -> Config:
        return Config(id=i, voters=self.voters, **self.extra)  # type: ignore[arg-type]

    def core(self, i: int) -> RaftCore:
        return self.nodes[i].core

    def pump(self, i: int) -> None:
        if i not in self.down:
            self.queue.extend(self.nodes[i].process())

    def deliver(self, keep: Callable[[Message], bool] = lambda m: True, limit: int = 10_000) -> int:
        """Deliver queued messages (and what they cause) until none is left; returns count."""
        count = 0
        while self.queue and count < limit:
            m = self.queue.pop(0)
            if m.to in self.down or (m.frm, m.to) in self.cut or not keep(m):
                self.trace.append("drop " + describe(m))
                continue
            self.trace.append(describe(m))
            self.nodes[m.to].core.step(m)
            self.pump(m.to)
            count += 1
        return count

    def tick(self, i: int, times: int = 1) -> None:
        for _ in range(times):
            self.nodes[i].core.tick()
        self.pump(i)

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for i in sorted(self.voters - self.down):
                self.tick(i)
            self.deliver()

    def elect(self, i: int) -> None:
        """Make node ``i`` campaign now and deliver everything."""
        core = self.core(i)
        for _ in range(core._randomized_timeout + 1):
            core.tick()
            if core.role.value != "follower":
                break
        self.pump(i)
        self.deliver()

    def propose(self, i: int, data: bytes) -> int:
        index = self.core(i).propose(data)
        self.pump(i)
        return index

    def isolate(self, i: int) -> None:
        for j in self.voters:
            if j != i:
                self.cut |= {(i, j), (j, i)}

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, i: int) -> None:
        """Stop node ``i``; messages in flight to or from it are lost with it."""
        self.down.add(i)
        self.queue = [m for m in self.queue if i not in (m.frm, m.to)]

    def restart(self, i: int) -> None:
        self.down.discard(i)
        self.nodes[i] = Node(self._config(i), self.seed * 100 + i + 7, self.nodes[i].disk)

    def leader(self) -> int | None:
        leaders = [i for i in self.voters - self.down if self.core(i).role.value == "leader"]
        return max(leaders, key=lambda i: self.core(i).term) if leaders else None
