"""The work one raftsql write must do, with every wait taken out.

``replication_floor`` measures the hops, the processes and the fsyncs a durable
single-caller write cannot avoid, with no work at all; ``paired_floor`` says how much
faster that floor is than PySyncObj's synchronous caller (the single-caller target). This
measures the other half: the CPU time raftsql's own components take for one write, run
back to back in one thread with nothing to wait for: no event loop, no worker threads,
no sockets, no fsync. Three real ``RaftCore``s (the leader, its quorum follower, the
spare), real frames (``encode_frame`` / ``FrameDecoder``, the node's CBOR codec), a real
``LogStore`` per node and a real ``StateMachine`` (an SQLite file, the node's settings),
one parameterized single-row INSERT per write as the load generator sends it.

Stages, in the order one write's critical path takes them (each timed on its own):

- ``leader_request``: decode the client's frame, check the statement, encode the command,
  propose, take the Ready, encode the AppendEntries frame;
- ``follower_append``: decode that frame, step it, take the Ready, append the entry to
  the log file (the write; its fdatasync is the floor's), encode the ack frame;
- ``leader_commit``: decode the ack, step it, take the commit, COMMIT the speculated
  transaction (``StateMachine.apply``), encode the answer frame.

Off the critical path (they overlap a wait, on the leader or another core) and reported
for the CPU they cost on average (means: the follower applies in batches): the leader's
own log append, its speculative run of the INSERT, the follower's ``advance`` and
(batched) apply, the spare's append at the next tick.

The summary sets the critical path against the room the single-caller target leaves
(PySyncObj's time per write minus a floor's, from ``paired_floor``): work longer than
the room cannot meet that target however well it is scheduled.

    python -m benchmarks.write_work [--writes 20000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql.net import codec
from raftsql.net.framing import FrameDecoder, encode_frame
from raftsql.raft import Config, RaftCore, Ready, Role
from raftsql.raft.messages import EntryKind, Message
from raftsql.server.clients import statements_from_wire
from raftsql.server.node import Node
from raftsql.sql.command import WriteCommand, results_to_wire
from raftsql.sql.machine import StateMachine
from raftsql.storage.logstore import LogStore

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, client INT, n INT, payload TEXT)"
INSERT = "INSERT INTO t (client, n, payload) VALUES (?, ?, ?)"
PAYLOAD = "x" * 100
"""As ``raftsql_load``'s ``insert_param``: one row, a 100-byte text."""
FOLLOWER_APPLY_BATCH = 64
"""The follower applies what it holds in batches (``NodeConfig.follower_apply_batch``)."""
CRITICAL = ("leader_request", "follower_append", "leader_commit")
OFF_PATH = ("leader_log_append", "leader_speculate", "follower_after_ack", "spare_append")
LEADER, FOLLOWER, SPARE = 1, 2, 3


class _Member:
    """One node's core, log file, frame decoder and (leader and follower) database."""

    def __init__(self, node_id: int, directory: Path, with_machine: bool) -> None:
        voters = frozenset({LEADER, FOLLOWER, SPARE})
        self.core = RaftCore(Config(node_id, voters, quorum_first=True), random.Random(node_id))
        self.log, _ = LogStore.open(directory / f"log{node_id}")
        self.machine = (
            StateMachine(str(directory / f"db{node_id}.sqlite")) if with_machine else None
        )
        self.frames = FrameDecoder()
        self.held: list[tuple[int, bytes | None]] = []

    def receive(self, frame: bytes) -> None:
        """Decode the frames and step each message, as the node's peer reader does."""
        for wire in self.frames.feed(frame):
            m = codec.from_wire(wire)
            assert isinstance(m, Message), m
            self.core.step(m)

    def close(self) -> None:
        self.log.close()
        if self.machine is not None:
            self.machine.close()


def _frames(messages: list[Message]) -> dict[int, bytes]:
    """Each recipient's messages as frames joined together (one socket write each, as
    the node sends them)."""
    out: dict[int, bytes] = {}
    for m in messages:
        out[m.to] = out.get(m.to, b"") + encode_frame(codec.to_wire(m))
    return out


def _settle(members: dict[int, _Member]) -> None:
    """Run the cluster with instant delivery until nobody has anything to do: used to
    elect the leader and commit its no-op and the schema, outside the timed loop."""
    busy = True
    while busy:
        busy = False
        for member in members.values():
            core = member.core
            if not core.has_ready():
                continue
            busy = True
            rd = core.ready()
            if rd.entries:
                member.log.append(rd.entries)
            if member.machine is not None and rd.committed:
                member.machine.apply(_batch(rd))
            core.advance(rd)
            for m in [*rd.messages, *rd.messages_after_persist]:
                members[m.to].core.step(m)


def _batch(rd: Ready) -> list[tuple[int, bytes | None]]:
    return [(e.index, e.data if e.kind is EntryKind.NORMAL else None) for e in rd.committed]


class WritePath:
    """One write at a time through the three members, each stage timed."""

    def __init__(self, directory: Path) -> None:
        self.members = {
            LEADER: _Member(LEADER, directory, with_machine=True),
            FOLLOWER: _Member(FOLLOWER, directory, with_machine=True),
            SPARE: _Member(SPARE, directory, with_machine=False),
        }
        leader = self.members[LEADER].core
        while leader.role is not Role.LEADER:
            leader.tick()
            _settle(self.members)
        schema = Node.check_statements([(SCHEMA, ())])
        leader.propose(WriteCommand(b"", 0, tuple(schema)).encode())
        _settle(self.members)
        self.session = os.urandom(16)
        self.seq = 0
        self.timings: dict[str, list[float]] = {stage: [] for stage in (*CRITICAL, *OFF_PATH)}

    def _timed(self, stage: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = work()
        self.timings[stage].append(time.perf_counter() - started)
        return out

    def one_write(self) -> None:
        self.seq += 1
        request = encode_frame(
            {
                "op": "write",
                "id": self.seq,
                "stmts": [[INSERT, [1, self.seq, PAYLOAD]]],
                "session": self.session,
                "seq": self.seq,
            }
        )
        leader = self.members[LEADER]
        rd, append = self._timed("leader_request", lambda: self._leader_request(request))
        self._timed("leader_log_append", lambda: leader.log.append(rd.entries))
        self._timed("leader_speculate", lambda: self._speculate(rd))
        ack, frd = self._timed("follower_append", lambda: self._follower_append(append))
        self._timed("follower_after_ack", lambda: self._follower_after_ack(frd))
        leader.core.advance(rd)  # its own copy is on disk by now, as it usually is
        answer = self._timed("leader_commit", lambda: self._leader_commit(ack))
        assert answer, "the write was not answered"
        if self.seq % 10 == 0:  # the spare hears of the entries at the leader's next tick
            self._timed("spare_append", self._spare_tick)

    def _leader_request(self, request: bytes) -> tuple[Ready, bytes]:
        leader = self.members[LEADER]
        (req,) = leader.frames.feed(request)
        statements = Node.check_statements(statements_from_wire(req["stmts"]))
        cmd = WriteCommand(
            req["session"],
            req["seq"],
            tuple(statements),
            True,
            time.time_ns(),
            random.getrandbits(63),
        )
        leader.core.propose(cmd.encode())
        rd = leader.core.ready()
        return rd, _frames(rd.messages)[FOLLOWER]

    def _speculate(self, rd: Ready) -> None:
        machine = self.members[LEADER].machine
        assert machine is not None
        batch = [(e.index, e.data) for e in rd.entries]
        machine.speculate(batch, time.perf_counter() + 0.002)

    def _follower_append(self, frame: bytes) -> tuple[bytes, Ready]:
        follower = self.members[FOLLOWER]
        follower.receive(frame)
        rd = follower.core.ready()
        follower.log.append(rd.entries)
        return _frames(rd.messages_after_persist)[LEADER], rd

    def _follower_after_ack(self, rd: Ready) -> None:
        follower = self.members[FOLLOWER]
        follower.core.advance(rd)
        follower.held.extend(_batch(rd))
        if len(follower.held) >= FOLLOWER_APPLY_BATCH:
            assert follower.machine is not None
            follower.machine.apply(follower.held)
            follower.held = []

    def _leader_commit(self, frame: bytes) -> bytes:
        leader = self.members[LEADER]
        leader.receive(frame)
        assert leader.core.has_light_ready()
        rd = leader.core.ready()
        assert leader.machine is not None
        (result,) = leader.machine.apply(_batch(rd))
        assert result is not None
        leader.core.advance(rd)
        return encode_frame({"id": self.seq, "ok": True, "results": results_to_wire(result)})

    def _spare_tick(self) -> None:
        """The leader's tick sends the spare what it missed; the spare appends it and
        acks; the leader steps the ack (the spare's share of one write: a tenth here)."""
        leader, spare = self.members[LEADER], self.members[SPARE]
        leader.core.tick()
        rd = leader.core.ready()
        leader.core.advance(rd)
        frame = _frames(rd.messages).get(SPARE)
        if frame is None:
            return
        spare.receive(frame)
        srd = spare.core.ready()
        spare.log.append(srd.entries)
        spare.core.advance(srd)
        ack = _frames(srd.messages_after_persist).get(LEADER)
        if ack is not None:
            leader.receive(ack)

    def close(self) -> None:
        for member in self.members.values():
            member.close()


def run(quick: bool = False, writes: int = 20_000) -> dict[str, Any]:
    """Time ``writes`` writes (300 if ``quick``) after a warm-up; save the stages'
    medians and the critical path's sum."""
    if quick:
        writes = 300
    directory = Path(tempfile.mkdtemp(prefix="raftsql-write-work-", dir=tempfile.gettempdir()))
    try:
        path = WritePath(directory)
        try:
            warmup = min(1000, writes // 4)
            for i in range(writes + warmup):
                if i == warmup:
                    path.timings = {stage: [] for stage in path.timings}
                path.one_write()
                if (i + 1) % 5000 == 0:
                    common.progress(f"{i + 1:,} writes")
            leader_db = path.members[LEADER].machine
            assert leader_db is not None
            rows = leader_db.query("SELECT count(*) FROM t").rows[0][0]
            assert rows == writes + warmup, (rows, writes + warmup)
        finally:
            path.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stages: dict[str, dict[str, float]] = {}
    for stage, samples in path.timings.items():
        ordered = sorted(samples)
        # the spare runs once per ten writes: its cost per write is a tenth of a run
        share = 0.1 if stage == "spare_append" else 1.0
        stages[stage] = {
            "median_us": round(statistics.median(ordered) * 1e6 * share, 1),
            "p90_us": round(common.quantile(ordered, 0.9) * 1e6 * share, 1),
            "mean_us": round(statistics.fmean(ordered) * 1e6 * share, 1),
        }
    # the critical path of a typical write: medians; the work beside it as CPU per write
    # on average: means (the follower applies a batch every FOLLOWER_APPLY_BATCH writes:
    # its median is the writes that apply nothing)
    critical = round(sum(stages[s]["median_us"] for s in CRITICAL), 1)
    off_path = round(sum(stages[s]["mean_us"] for s in OFF_PATH), 1)
    data = {
        "writes": writes,
        "stages": stages,
        "critical_path_us": critical,
        "off_path_us": off_path,
    }
    for stage, s in stages.items():
        where = "critical" if stage in CRITICAL else "off-path"
        common.progress(
            f"{stage:<20} {where:<8} median {s['median_us']:6.1f} us  p90 {s['p90_us']:6.1f} us"
        )
    common.progress(
        f"critical path {critical:.1f} us of work per write (medians); off it {off_path:.1f} "
        "us on average (means)"
    )
    common.save("write_work", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--writes", type=int, default=20_000)
    p.add_argument("--quick", action="store_true", help="smoke run: 300 writes")
    args = p.parse_args()
    run(args.quick, args.writes)


if __name__ == "__main__":
    main()
