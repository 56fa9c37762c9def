"""One running raftsql node: drives RaftCore with trio, persists, applies, serves.

This is the only place where the pieces meet. The event loop never waits for a disk
flush: the log append + fsync, snapshot installs and WAL checkpoints run in the disk worker
thread, while peer messages and ticks keep flowing into the core (a slow fsync must not
cost an election, etcd #7312). Proposals and messages that arrive during an fsync are
batched into the next one: that is the group commit. Committed entries are applied on the
loop itself (a WAL commit with synchronous=NORMAL does not fsync) under a time budget;
what runs longer is finished in the disk worker while the loop goes on. A leader applies
at once (writers wait for the results); a follower holds a few committed entries and
applies them in one batch, within a tick, or at once when a read needs them.

Use it as a library::

    async with open_node(config) as node:
        result = await node.write([("INSERT INTO t VALUES (?)", (1,))])
        rows = await node.read("SELECT * FROM t")

`raftsql node` is a thin wrapper around :func:`serve_node`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import trio

from raftsql import errors
from raftsql.net import codec
from raftsql.net.errors import ProtocolError
from raftsql.net.framing import FrameReader, encode_frame
from raftsql.raft import Config, NotLeader, ProposalDropped, RaftCore, Ready, Role
from raftsql.raft.messages import Entry, EntryKind, InstallSnapshot, Message, SnapshotMeta
from raftsql.server import gcpolicy
from raftsql.server.config import NodeConfig, format_address
from raftsql.server.forward import Forwarder
from raftsql.server.peers import PeerLink
from raftsql.server.worker import Worker
from raftsql.sql.command import CommandResult, Statement, StatementResult, WriteCommand
from raftsql.sql.machine import QueryOverBudget, StateMachine
from raftsql.sql.statements import check_params, classify
from raftsql.storage import open_storage, recover

log = logging.getLogger("raftsql.node")


_ANSWERS_PER_STEP = 128
"""Writes answered per scheduler step after a batch applied in the disk worker (~25 us
each: ~3 ms)."""


@dataclass(eq=False)
class _ReadSlot:
    """One query waiting for the read worker's next batch. ``on_done`` (if set) is called
    in the event loop when it ends: the client connections answer from it, no task."""

    sql: str
    params: Any
    done: trio.Event = field(default_factory=trio.Event)
    result: StatementResult | None = None
    error: Exception | None = None
    on_done: Callable[[_ReadSlot], None] | None = None
    started: float = 0.0
    deadline: float = 0.0
    ctx: bytes = b""
    retry_at: float = 0.0
    index: int = 0


@dataclass(eq=False, slots=True)
class WriteWaiter:
    """A proposed write until it is applied (``result``: the encoded CommandResult) or
    fails (``error``). ``on_done`` (if set) is called in the event loop when it ends;
    the client connections use it to answer without a task per request."""

    term: int
    deadline: float
    started: float
    on_done: Callable[[WriteWaiter], None] | None = None
    result: bytes | None = None
    error: errors.RaftsqlError | None = None
    ended: bool = False
    _event: trio.Event | None = None

    @property
    def done(self) -> trio.Event:
        """Set when the write ends. Made on first use: the client connections' callback
        path never needs one, and with thousands of writes in flight every object a write
        keeps alive lengthens the garbage collector's full passes."""
        if self._event is None:
            self._event = trio.Event()
            if self.ended:
                self._event.set()
        return self._event

    def end(self) -> None:
        self.ended = True
        if self._event is not None:
            self._event.set()


class Node:
    """A node's state and its trio tasks. Build with :func:`open_node`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(data / "raft")
        self.machine = StateMachine(str(data / "db.sqlite"))
        recovered = recover(self.storage, applied=self.machine.applied_index)
        snap = recovered.restored.snapshot
        if snap.index > self.machine.applied_index and recovered.snapshot_path is not None:
            # crashed between installing a snapshot's file and loading it into SQLite
            self.machine.restore_from(str(recovered.snapshot_path))
            recovered = recover(self.storage, applied=self.machine.applied_index)
        for note in recovered.notes:
            log.warning("node %d recovery: %s", config.id, note)
        core_config = Config(
            id=config.id,
            voters=config.voters,
            election_ticks=config.election_ticks,
            heartbeat_ticks=config.heartbeat_ticks,
            quorum_first=config.quorum_first,
        )
        self.core = RaftCore(core_config, random.Random(), recovered.restored)
        self.links = {
            pid: PeerLink(config.id, pid, addr, self._read_chunk, config.max_frame)
            for pid, addr in config.peers.items()
            if pid != config.id
        }
        self._work = trio.Event()
        self._writes: dict[int, WriteWaiter] = {}
        self._write_order: deque[tuple[int, WriteWaiter]] = deque()
        """The writes of ``_writes`` in the order they were proposed (so by deadline), and
        ended ones not yet dropped from the front: the oldest waiting write and the
        expired ones are found at the front in O(1). (``next(iter(self._writes))`` is not
        O(1): a dict emptied from the front skips every deleted slot; with 10,000 writes in
        flight that and a scan of every write at each tick took ~13% of the leader.)"""
        self._machine_lock = trio.Lock()
        """Held while the writer connection is used outside the apply path (snapshots,
        digests) and while a snapshot is installed."""
        self._reader_lock = trio.Lock()
        """Held by each batch of reads on the reader connection; installing a snapshot
        (which reopens it) and starting one (a WAL checkpoint) take it too."""
        self._read_queue: list[_ReadSlot] = []
        self._fast_reads: dict[bytes, _ReadSlot] = {}
        """Callback reads waiting for their read index, by ReadIndex context."""
        self._reads_to_apply: list[_ReadSlot] = []
        """Callback reads with a read index, waiting for this node to apply up to it."""
        self._reads_running = False
        self._snapshot_lock = trio.Lock()
        self._snapshotting = False
        self._checkpointing = False
        self._to_apply: list[Entry] = []
        """Committed entries handed to the applier task, in log order."""
        self._held: list[Entry] = []
        """A follower's committed entries not applied yet (``follower_apply_batch``)."""
        self._held_since = 0.0
        self._apply_seconds = 0.0
        self._apply_entries = 0.0
        """Moving averages of an apply batch's seconds and entries: their ratio is the
        recent cost per entry, for the leader's admission control (``max_apply_backlog``).
        A ratio of averages, not an average of ratios: small batches carry a
        transaction's fixed cost and would make a deep backlog look slower than it is."""
        self._applier_running = False
        self._durable_entry = (0, 0)
        """(index, term) of the last entry the disk worker made durable: written by the
        worker right after its fsync, read by the loop (``_commit_while_persisting``)."""
        self._early_commits = False
        """A leader's Ready is out for its fsync, and what commits meanwhile may be
        applied at once: none of that Ready's own committed entries waits to go first."""
        self._speculated_seconds = 0.0
        """Time spent speculating since the last apply (``_speculate``)."""
        self.listen_port: int | None = None
        self.client_connections = 0
        """Client connections open now (each is a task: see ``clients.serve_client``)."""
        self.answering_batch = False
        """True while a batch of applied writes is being answered: a connection may hold
        its answers and send them together (one ``send`` for all of its writes in the
        batch, ~10 us each saved with many in flight), registering how in ``after_batch``,
        which runs at the batch's end."""
        self.after_batch: list[Callable[[], None]] = []
        self._forwarder: Forwarder | None = None
        self._nursery: trio.Nursery | None = None
        self.counters = {
            "writes": 0,
            "reads": 0,
            "snapshots_taken": 0,
            "snapshots_installed": 0,
            "applies_moved": 0,
            "commits_while_persisting": 0,
            "reads_moved": 0,
            "writes_refused": 0,
        }
        self._last_heard: dict[int, float] = {}
        """When each peer last sent us anything (monotonic): the leader's 'last ack' of a
        follower, a follower's 'last contact' with its leader."""
        self._latency: dict[str, deque[float]] = {
            "write": deque(maxlen=1000),
            "read": deque(maxlen=1000),
        }

    # === lifecycle ========================================================================

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._disk = Worker(f"raftsql-{self.config.id}-disk")
        self._reads_worker = Worker(f"raftsql-{self.config.id}-reads")
        try:
            await self._serve(task_status)
        finally:
            self._disk.close()
            self._reads_worker.close()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            host, port = self.config.address
            listeners = await trio.open_tcp_listeners(port, host=host)
            self.listen_port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, self._serve_connection, listeners)
            for link in self.links.values():
                nursery.start_soon(link.run)
            nursery.start_soon(self._ticker)
            self._nursery = nursery
            self._forwarder = Forwarder(nursery, self.config.max_frame, self.config.request_timeout)
            nursery.start_soon(self._ready_loop)
            log.info("node %d serving on %s", self.config.id, format_address(self.config.address))
            task_status.started()

    def close(self) -> None:
        self.machine.close()
        self.storage.close()

    def _kick(self) -> None:
        self._work.set()

    async def _ticker(self) -> None:
        period = self.config.tick_seconds
        deadline = trio.current_time()
        while True:
            deadline += period
            await trio.sleep_until(deadline)
            if trio.current_time() - deadline > period:
                # we were paused (CPU starved, stopped): do not replay the lost ticks in a
                # burst, which would time out elections that the paused peers never missed
                deadline = trio.current_time()
            self.core.tick()
            if (
                self._held
                and time.monotonic() - self._held_since >= self.config.follower_apply_delay
            ):
                self._apply_held()
            # while the Ready loop waits for the disk, heartbeats and their answers must
            # not (etcd #7312): the core hands out what needs nothing from the disk
            self._send(self.core.take_messages())
            self._kick()
            if self._writes:
                self._expire_writes()
            if self._fast_reads or self._reads_to_apply:
                self._expire_reads()

    # === the Ready loop ===================================================================

    async def _ready_loop(self) -> None:
        while True:
            await self._work.wait()
            self._work = trio.Event()
            while self.core.has_ready():
                await self._handle_ready(self.core.ready())

    def _step(self, m: Message) -> None:
        """Step a peer's message. On the leader, a Ready that needs no disk (an ack that
        moved the commit index, the heartbeat answers that confirm a read round) is
        handled right here when the Ready loop is idle: it commits, answers and releases
        reads without waking another task (a hop of ~35-50 us a write at one client).
        Anything else goes to the Ready loop, so proposals still gather into one append
        and one fsync, and reads into one heartbeat round. Not on followers: there the
        Ready loop takes the read-index answers that arrive together as one Ready, and
        taking them one by one cost 0.55x follower reads at 64 clients. (While the Ready
        loop holds a Ready, the core has none to give: it picks up what this step left
        when it is done with its own. A leader's ack may still commit meanwhile: see
        ``_commit_while_persisting``.)"""
        self.core.step(m)
        if self.core.role is Role.LEADER:
            if self.core.has_light_ready():
                rd = self.core.ready()
                self._send(rd.messages)
                self._handle_commit(rd)
                self._finish_ready(rd)
            else:
                self._commit_while_persisting()  # a no-op unless a Ready is out for its fsync
        if self.core.has_ready():
            self._kick()

    def _commit_while_persisting(self) -> None:
        """While a leader's Ready is out for its fsync: count its own copy as soon as the
        disk worker has it on disk, and apply (and answer) what commits, without waiting
        for the Ready loop to take the worker's answer and ``advance``.

        Runs after each ack stepped meanwhile and from the worker's completion callback.
        Why: at one writer the leader's fsync and a follower's ack finish within ~100 us
        of each other, and the worker's answer reached the loop 100-300 us after its
        fsync (a thread wake-up and two passes of trio's scheduler), so it was the last
        of the quorum in over half of the writes. An ack that arrives after the fsync
        but before the loop heard of it now commits the write by itself."""
        if not self._early_commits or self.core.role is not Role.LEADER:
            return
        self.core.persisted(*self._durable_entry)
        committed = self.core.take_committed()
        if committed:
            self.counters["commits_while_persisting"] += 1
            self._apply_committed(committed)

    async def _handle_ready(self, rd: Ready) -> None:
        """Persist, send what had to wait for it, apply.

        Anything that fsyncs (new entries, a new term or vote) runs in the disk worker,
        so a slow disk never stops ticks, and while the loop waits for it the ticker sends
        heartbeats and their answers itself (``RaftCore.take_messages``, etcd #7312).
        Applying runs here on the event loop: on the 2-core VMs we measure on, a
        cross-thread hand-off costs 50-150 us of wake-ups, more than applying a small
        batch, and a Ready no longer waits for the apply of the one before. The loop never
        waits for long SQL: an apply runs under a deadline and what is left goes to the
        applier task (see ``_apply_in_order``). Snapshot staging and installs run in the
        disk worker."""
        self._send(rd.messages)
        if rd.snapshot is not None or rd.snapshot_chunks:
            await self._handle_snapshot_ready(rd)
        else:
            if rd.entries or self._term_or_vote_changes(rd):
                # A leader applies the entries already durable while the new ones are
                # fsynced: it answers batch N during batch N+1's fsync. A follower does
                # not: its ack (sent by the disk worker after the fsync) is what the
                # leader waits for, and an apply here holds the GIL the worker needs to
                # write the entries, so the fsync started only after the apply (traced at
                # one writer: ~200 us later). Its apply follows the ack instead.
                early = (
                    self.core.role is Role.LEADER
                    and bool(rd.committed)
                    and (not rd.entries or rd.committed[-1].index < rd.entries[0].index)
                )
                persisting = self._disk.submit(
                    self._persist_and_send, rd, then=self._commit_while_persisting
                )
                handed_over = False
                try:
                    if early:
                        self._apply_committed(rd.committed)
                    handed_over = True
                    if rd.entries and self.core.role is Role.LEADER:
                        self._speculate(rd.entries)
                finally:
                    # later commits may be applied at once only behind this Ready's own
                    self._early_commits = (
                        self.core.role is Role.LEADER
                        and handed_over
                        and (early or not rd.committed)
                    )
                    try:
                        left = await self._disk.wait(persisting)
                    finally:
                        self._early_commits = False
                self._send(left)
                if rd.committed and not early:
                    self._apply_committed(rd.committed)
            else:
                self._handle_commit(rd)
        self._finish_ready(rd)

    def _handle_commit(self, rd: Ready) -> None:
        """The part of a Ready that needs no disk: commit hint, messages, apply."""
        if rd.hard_state is not None:
            # only the commit index moved: a hint, written without an fsync
            self.storage.hard_state.save(rd.hard_state, sync=False)
        self._send(rd.messages_after_persist)
        if rd.committed:
            self._apply_committed(rd.committed)

    def _finish_ready(self, rd: Ready) -> None:
        """Reads whose index is known, ``advance``, what waits for it."""
        for rs in rd.read_states:
            slot = self._fast_reads.pop(rs.ctx, None)
            if slot is not None:  # else the read was retried or gave up: forget the answer
                slot.index = rs.index
                self._reads_to_apply.append(slot)
        self.core.advance(rd)
        if self._reads_to_apply:
            self._apply_held()  # a read waits for these
            self._release_applied_reads()
        self._maybe_snapshot()

    def _send(self, messages: Sequence[Message]) -> None:
        """Hand messages to their links, grouped per peer (one socket write each)."""
        if not messages:
            return
        for peer, batch in _by_peer(messages).items():
            link = self.links.get(peer)
            if link is not None:
                link.send_batch(batch)

    async def _handle_snapshot_ready(self, rd: Ready) -> None:
        """A Ready that stages snapshot chunks or installs a snapshot: one disk worker
        job (persist, send what waited for it, apply)."""
        if rd.snapshot is not None:
            # held entries go first, in log order (those the snapshot covers are skipped)
            self._apply_held()
            # installing replaces the database file: no local copy, no reader open
            locks = [self._snapshot_lock, self._machine_lock, self._reader_lock]
            async with _all(locks):
                results = await self._disk.run(self._persist_and_apply, rd)
            self._finish_writes(rd.committed, results)
            # writes waiting below the snapshot point were decided elsewhere: let them retry
            for index in [i for i in self._writes if i <= rd.snapshot.index]:
                waiter = self._writes.pop(index)
                waiter.error = errors.NotLeaderError("state replaced by a snapshot; retry")
                self._end_write(waiter)
        else:
            await self._disk.run(self._persist, rd)
            self._send(rd.messages_after_persist)
            if rd.committed:
                self._apply_committed(rd.committed)

    def _apply_committed(self, committed: Sequence[Entry]) -> None:
        """Apply now on a leader (writers wait for the results); a follower holds them
        until it has ``follower_apply_batch`` (or the next tick, or a read needs them).

        Why a follower waits: with one writer it applied each entry right after its ack
        left, ~60-100 us of CPU on each follower at the very moment the leader needs a
        core to commit, apply and answer (2 cores, 3 nodes), and one transaction per
        entry. Held entries are committed and in the log: a crash loses nothing, and
        linearizable reads, stale reads and a new leader apply them first."""
        if self.core.role is Role.LEADER:
            if self._held:  # a follower a moment ago: what it held goes first, in order
                committed, self._held = [*self._held, *committed], []
            self._apply_in_order(committed)
            return
        if not self._held:
            self._held_since = time.monotonic()
        self._held.extend(committed)
        if len(self._held) >= self.config.follower_apply_batch or self._reads_to_apply:
            self._apply_held()

    def _apply_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._apply_in_order(held)

    def _speculate(self, entries: Sequence[Entry]) -> None:
        """On the leader, run its new entries while their AppendEntries are out, when
        everything before them is applied: after the quorum only their COMMIT is left
        (``StateMachine.speculate``). At one writer the apply (~60-120 us) then overlaps
        the followers' fsync instead of following it. Under a short budget
        (``speculate_budget``): a long statement is left to the ordinary apply."""
        if (
            not self.config.speculate_budget
            or entries[0].index != self.machine.applied_index + 1  # earlier ones not applied
            or self._to_apply
            or self._held
            or self._applier_running
            or self._machine_lock.locked()
        ):
            return
        batch = self._batch_to_apply(entries)
        started = time.perf_counter()
        self.machine.speculate(batch, started + self.config.speculate_budget)
        # the work counts towards the apply that commits it (admission control's cost)
        self._speculated_seconds += time.perf_counter() - started

    def _apply_in_order(self, committed: Sequence[Entry]) -> None:
        """Apply committed entries, in log order, without making the Ready loop wait.

        Usually right here, on the loop, within ``apply_budget`` seconds. When the budget
        runs out (a long statement), or the machine is busy (a snapshot starting, a
        digest), or earlier entries are still queued, the entries go to the applier task,
        which applies them in the disk worker: meanwhile the loop goes on persisting,
        sending heartbeats and answering, so a statement that runs for seconds does not
        cost the leader its leadership. (The core counts entries handed over here as
        applied: what is really in SQLite is ``machine.applied_index``.)
        """
        self._to_apply.extend(committed)
        if self._applier_running or self._machine_lock.locked():
            self._start_applier()
            return
        entries, self._to_apply = self._to_apply, []
        batch = self._batch_to_apply(entries)
        deadline = time.perf_counter() + self.config.apply_budget
        results = self._timed_apply(batch, deadline) if batch else []
        applied = self.machine.applied_index
        self._finish_writes(
            [e for e in entries if e.index <= applied],
            {index: result for (index, _), result in zip(batch, results, strict=False)},  # a prefix
        )
        left = [e for e in entries if e.index > applied]
        if left:
            self.counters["applies_moved"] += 1
            self._to_apply[:0] = left
            self._start_applier()
        self._after_apply()

    def _start_applier(self) -> None:
        if not self._applier_running:
            self._applier_running = True
            assert self._nursery is not None
            self._nursery.start_soon(self._applier)

    async def _applier(self) -> None:
        """Apply the queued entries in the disk worker, batch after batch, until none
        are left (each batch takes whatever was queued while the last one ran)."""
        try:
            while self._to_apply:
                async with self._machine_lock:
                    entries, self._to_apply = self._to_apply, []
                    batch = self._batch_to_apply(entries)
                    results = await self._disk.run(self._timed_apply, batch) if batch else []
                by_index = {
                    index: result for (index, _), result in zip(batch, results, strict=True)
                }
                # A batch here can hold thousands of writes (all that queued while the
                # last one ran); answering them all in one step stopped the loop for
                # ~0.2 s with 10,000 writes in flight. In order, a slice per step.
                for start in range(0, len(entries), _ANSWERS_PER_STEP):
                    if start:
                        await trio.lowlevel.checkpoint()
                    self._finish_writes(entries[start : start + _ANSWERS_PER_STEP], by_index)
                self._after_apply()
        finally:
            self._applier_running = False

    def _after_apply(self) -> None:
        if self._reads_to_apply:
            self._release_applied_reads()
        if self.machine.checkpoint_due and not self._checkpointing:
            self._checkpointing = True
            assert self._nursery is not None
            self._nursery.start_soon(self._checkpoint)

    def _batch_to_apply(self, committed: Sequence[Entry]) -> list[tuple[int, bytes | None]]:
        applied = self.machine.applied_index
        return [
            (e.index, e.data if e.kind is EntryKind.NORMAL else None)
            for e in committed
            if e.index > applied
        ]

    async def _checkpoint(self) -> None:
        """Move the WAL's pages into the database file, in the disk worker (it fsyncs);
        applies go on meanwhile."""
        try:
            await self._disk.run(self.machine.checkpoint)
        except Exception:
            log.exception("node %d: WAL checkpoint failed", self.config.id)
        finally:
            self._checkpointing = False

    def _term_or_vote_changes(self, rd: Ready) -> bool:
        hs, durable = rd.hard_state, self.storage.hard_state.durable
        return hs is not None and (hs.term, hs.vote) != (durable.term, durable.vote)

    def _persist(self, rd: Ready) -> None:
        """In the disk worker: make ``rd`` durable, in the order ``Ready`` prescribes."""
        snaps = self.storage.snapshots
        for chunk in rd.snapshot_chunks:
            snaps.stage_chunk(chunk.meta, chunk.offset, chunk.data)
        if rd.snapshot is not None:
            snaps.finish_staged(rd.snapshot)
            self.storage.log.reset(rd.snapshot.index + 1)
        if rd.entries:
            self.storage.log.append(rd.entries)
            self.storage.log.sync()
            last = rd.entries[-1]
            self._durable_entry = (last.index, last.term)
        if rd.hard_state is not None:
            # the store always syncs a changed term or vote (promises to peers); a commit
            # index alone is a hint that recovery recomputes, so it need not cost an fsync
            self.storage.hard_state.save(rd.hard_state, sync=False)

    def _persist_and_send(self, rd: Ready) -> list[Message]:
        """In the disk worker: persist, then write the messages that promised it (a
        follower's acks, votes) straight to their peers' sockets from this thread, so
        they leave without waiting for the loop to wake. Returns those the links could
        not take now (busy or down), for the loop to send."""
        self._persist(rd)
        left: list[Message] = []
        for peer, batch in _by_peer(rd.messages_after_persist).items():
            link = self.links.get(peer)
            if link is not None and not link.send_from_thread(batch):
                left.extend(batch)
        return left

    def _persist_and_apply(self, rd: Ready) -> dict[int, bytes | None]:
        """In the disk worker, for a Ready that installs a snapshot: persist, hand the
        after-persist messages to the loop, apply."""
        self._persist(rd)
        if rd.messages_after_persist:
            # Wait (briefly) until the loop has sent them: applying holds the GIL in
            # bursts, and a follower's ack queued behind its apply reached the leader
            # ~0.7 ms late in a trace of one writer.
            sent = threading.Event()
            self._disk.call_soon_in_loop(self._send_and_signal, rd.messages_after_persist, sent)
            sent.wait(0.1)
        return self._apply(rd)

    def _send_and_signal(self, messages: Sequence[Message], sent: threading.Event) -> None:
        self._send(messages)
        sent.set()

    def _apply(self, rd: Ready) -> dict[int, bytes | None]:
        """In a worker thread: load an installed snapshot, then apply committed entries in
        one SQLite transaction."""
        if rd.snapshot is not None:
            # counted first: the loop answers status while this thread restores, and a
            # status must not show the snapshot's applied index without its install
            # (benchmarks/catchup.py once read exactly that, and called it "no snapshot")
            self.counters["snapshots_installed"] += 1
            self.machine.restore_from(str(self.storage.snapshots.data_path(rd.snapshot)))
        batch = self._batch_to_apply(rd.committed)
        results = self.machine.apply(batch) if batch else []
        return {index: result for (index, _), result in zip(batch, results, strict=True)}

    def _finish_writes(self, entries: Sequence[Entry], by_index: dict[int, bytes | None]) -> None:
        self.answering_batch = True
        try:
            for e in entries:
                waiter = self._writes.pop(e.index, None)
                if waiter is None:
                    continue
                if e.term != waiter.term:
                    waiter.error = _leadership_changed()
                elif e.index not in by_index:  # applied before, from a snapshot
                    waiter.error = errors.NotLeaderError("state replaced by a snapshot; retry")
                else:
                    waiter.result = by_index[e.index]
                self._end_write(waiter)
        finally:
            self.answering_batch = False
            flushes, self.after_batch = self.after_batch, []
            for flush in flushes:
                try:
                    flush()
                except Exception:
                    log.exception("node %d: sending a batch's answers failed", self.config.id)

    def _end_write(self, waiter: WriteWaiter) -> None:
        if waiter.error is None:
            self.counters["writes"] += 1
            self._latency["write"].append(time.monotonic() - waiter.started)
        waiter.end()
        if waiter.on_done is not None:
            try:
                waiter.on_done(waiter)
            except Exception:
                log.exception("node %d: a write's completion callback failed", self.config.id)

    def _expire_writes(self) -> None:
        """Fail the writes that waited longer than the request timeout (the ticker calls
        this): their client gets an answer even if this node lost its quorum."""
        now = time.monotonic()
        while (oldest := self._oldest_write()) is not None and oldest[1].deadline <= now:
            index, waiter = self._write_order.popleft()
            del self._writes[index]
            if index <= self.core.commit:
                why = (
                    "write committed but not applied within "
                    f"{self.config.request_timeout}s (the leader is busy applying earlier "
                    "writes): it will take effect; retrying with the same session and seq "
                    "returns its result"
                )
            else:
                why = (
                    f"write not committed within {self.config.request_timeout}s (no "
                    "quorum?); retrying with the same session and seq is safe"
                )
            waiter.error = errors.RequestTimeout(why)
            self._end_write(waiter)

    # === snapshots ========================================================================

    def _maybe_snapshot(self) -> None:
        cfg = self.config
        if self._snapshotting or self.core.applied - self.core.snapshot_meta.index < (
            cfg.snapshot_every
        ):
            return
        self._snapshotting = True
        assert self._nursery is not None
        self._nursery.start_soon(self._take_snapshot)

    async def _take_snapshot(self) -> None:
        try:
            await self.snapshot_now()
        except Exception:
            log.exception("node %d: snapshot failed", self.config.id)
        finally:
            self._snapshotting = False

    async def snapshot_now(self) -> SnapshotMeta:
        """Snapshot the state machine at its applied index and compact the log behind it.

        Only freezing the state holds up applying (a checkpoint and a read transaction);
        the page copy runs in a worker thread while new writes go on into SQLite's WAL
        (rqlite's users complain that its snapshots block writes: ours do not).
        """
        async with self._snapshot_lock:
            async with self._machine_lock, self._reader_lock:
                frozen = await self._disk.run(self.machine.begin_snapshot)
            try:
                index = frozen.index
                term = self.core.term_at(index)
                if term is None:  # nothing applied since the last snapshot
                    return self.core.snapshot_meta
                meta = SnapshotMeta(index, term, self.core.voters, 0)
                path = self.storage.snapshots.begin_write(meta)
                await trio.to_thread.run_sync(frozen.write_to, str(path))
                stored, _ = await trio.to_thread.run_sync(self.storage.snapshots.commit, meta)
            finally:
                frozen.close()
        meta = self.core.compact(index, stored.size, self.config.snapshot_retain)
        upto = self.core.first_index - 1
        await trio.to_thread.run_sync(self.storage.log.truncate_prefix, upto)
        self.counters["snapshots_taken"] += 1
        log.info("node %d: snapshot at %d (%d bytes)", self.config.id, index, stored.size)
        return meta

    def _read_chunk(self, m: InstallSnapshot) -> bytes:
        return self.storage.snapshots.read_chunk(m.meta, m.offset, m.length)

    # === the public API (also what client requests call) ==================================

    def leader_address(self) -> str | None:
        lead = self.core.leader_id
        return format_address(self.config.peers[lead]) if lead in self.config.peers else None

    def _not_leader(self) -> errors.NotLeaderError:
        return errors.NotLeaderError(
            f"node {self.config.id} is not the leader",
            leader_id=self.core.leader_id,
            leader_addr=self.leader_address(),
        )

    async def write(
        self,
        stmts: Sequence[tuple[str, Any]],
        atomic: bool = True,
        session: bytes = b"",
        seq: int = 0,
        forwarded: bool = False,
    ) -> CommandResult:
        """Replicate a write request; returns its result once applied here.

        On a follower the request is forwarded to the leader (same session and seq, so
        retries stay exactly-once), unless it was forwarded already: then, or with no
        leader known, ``NotLeaderError`` tells the client where to go.
        """
        statements = self.check_statements(stmts)
        if self.core.role is not Role.LEADER:
            return await self._forward_write(statements, atomic, session, seq, forwarded)
        waiter = self.submit_write(statements, atomic, session, seq)
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return CommandResult.decode(waiter.result)

    @staticmethod
    def check_statements(stmts: Sequence[tuple[str, Any]]) -> list[Statement]:
        if not stmts:
            raise errors.ParameterError("a write needs at least one statement")
        return [Statement(sql, check_params(classify(sql), params)) for sql, params in stmts]

    def submit_write(
        self,
        statements: Sequence[Statement],
        atomic: bool,
        session: bytes,
        seq: int,
        on_done: Callable[[WriteWaiter], None] | None = None,
    ) -> WriteWaiter:
        """Propose a checked write on the leader; the waiter ends when it is applied here,
        fails, or times out (``request_timeout``). Raises NotLeaderError/UnavailableError
        at once when it cannot even be proposed."""
        self._admit_write()
        cmd = WriteCommand(
            session=session or os.urandom(16),
            seq=seq,
            stmts=tuple(statements),
            atomic=atomic,
            time_ns=time.time_ns(),
            seed=random.getrandbits(63),
        )
        try:
            index = self.core.propose(cmd.encode())
        except NotLeader:
            raise self._not_leader() from None
        except ProposalDropped as exc:
            raise errors.UnavailableError(str(exc)) from None
        now = time.monotonic()
        waiter = WriteWaiter(self.core.term, now + self.config.request_timeout, now, on_done)
        replaced = self._writes.pop(index, None)
        if replaced is not None:
            # a write this node proposed at this index in an earlier term, whose entry a
            # leader since truncated: it will never commit, and its waiter must not be lost
            replaced.error = _leadership_changed()
            self._end_write(replaced)
        self._writes[index] = waiter
        self._write_order.append((index, waiter))
        self._kick()
        return waiter

    def _admit_write(self) -> None:
        """Refuse a new write while the leader is overloaded (see
        ``NodeConfig.max_pending_writes`` / ``max_apply_backlog``): the client is told at
        once, before anything is proposed, instead of waiting for a timeout."""
        why = self._overloaded()
        if why is not None:
            self.counters["writes_refused"] += 1
            raise errors.UnavailableError(
                f"overloaded: {why}; this write was not proposed, retry later", overloaded=True
            )

    def _overloaded(self) -> str | None:
        """Why the leader takes no more writes now, or None."""
        cfg = self.config
        pending = len(self._writes)
        if pending >= cfg.max_pending_writes:
            return (
                f"{pending} writes are waiting for their answer on the leader "
                f"(max_pending_writes {cfg.max_pending_writes})"
            )
        backlog = self.core.last_index - self.machine.applied_index
        work = backlog * self._apply_seconds / self._apply_entries if self._apply_entries else 0.0
        if work > cfg.max_apply_backlog:
            return (
                f"{backlog} entries, about {work:.1f}s of work, wait to be applied on the "
                f"leader (max_apply_backlog {cfg.max_apply_backlog}s)"
            )
        if pending:
            # What the estimate cannot foresee (a burst of writes costlier than the ones
            # measured, a lost quorum) shows as the oldest write's wait.
            oldest = self._oldest_write()
            waited = time.monotonic() - oldest[1].started if oldest else 0.0
            if waited > cfg.max_apply_backlog:
                return (
                    f"the oldest of {pending} writes waiting on the leader has waited "
                    f"{waited:.1f}s (max_apply_backlog {cfg.max_apply_backlog}s: too much "
                    "work queued, or no quorum)"
                )
        return None

    def _oldest_write(self) -> tuple[int, WriteWaiter] | None:
        """(index, waiter) of the longest-waiting write, left at the front of
        ``_write_order`` (the ended ones before it are dropped), or None."""
        order = self._write_order
        while order and self._writes.get(order[0][0]) is not order[0][1]:
            order.popleft()
        return order[0] if order else None

    def _note_apply_cost(self, seconds: float, entries: int) -> None:
        """Fold one apply batch into the averages."""
        self._apply_seconds = 0.8 * self._apply_seconds + 0.2 * seconds
        self._apply_entries = 0.8 * self._apply_entries + 0.2 * entries

    def _timed_apply(
        self, batch: list[tuple[int, bytes | None]], deadline: float | None = None
    ) -> list[bytes | None]:
        """Apply ``batch`` (on the loop under ``deadline``, or in the disk worker) and note
        its cost: its own time, not the time it queued behind fsyncs; a batch cut off by
        the deadline counts against the entries it finished."""
        started = time.perf_counter()
        results = self.machine.apply(batch, deadline=deadline)
        seconds, self._speculated_seconds = self._speculated_seconds, 0.0
        self._note_apply_cost(time.perf_counter() - started + seconds, len(results))
        return results

    async def _forward_write(
        self,
        statements: Sequence[Statement],
        atomic: bool,
        session: bytes,
        seq: int,
        forwarded: bool,
    ) -> CommandResult:
        leader = self.leader_address()
        if forwarded or leader is None or self._forwarder is None:
            raise self._not_leader()
        reply = await self._forwarder.call(
            leader,
            {
                "op": "write",
                "stmts": [[st.sql, st.params] for st in statements],
                "atomic": atomic,
                "session": session,
                "seq": seq,
            },
        )
        return CommandResult(tuple(_result_from_wire(r) for r in reply["results"]))

    async def read(
        self,
        sql: str,
        params: Any = (),
        consistency: str = "linearizable",
        max_lag: int | None = None,
    ) -> Any:
        """Run a read-only query: linearizable (ReadIndex, on any node) or stale (local).

        The library's way in to :meth:`start_read`; while no leader is known (an
        election), it keeps asking until the request timeout."""
        deadline = trio.current_time() + self.config.request_timeout
        while True:
            try:
                slot = self.start_read(sql, params, consistency, max_lag=max_lag)
                await slot.done.wait()
                error = slot.error
            except errors.NotLeaderError as exc:
                error = exc
            if not isinstance(error, errors.NotLeaderError):
                break
            if trio.current_time() >= deadline:
                raise errors.RequestTimeout("no read index within the timeout (no quorum?)")
            await trio.sleep(self.config.tick_seconds)
        if error is not None:
            raise error
        return slot.result

    def start_read(
        self,
        sql: str,
        params: Any,
        consistency: str,
        on_done: Callable[[_ReadSlot], None] | None = None,
        max_lag: int | None = None,
    ) -> _ReadSlot:
        """Start a read; its slot's ``done`` is set, and ``on_done`` called in the loop,
        when it ends (result or error on the slot). The client connections call this
        directly, with no task, cancel scope or event wait per read.
        Raises at once for a statement that cannot be read, or when no read index can
        even be asked for (no leader known)."""
        c = classify(sql)
        if c.is_write:
            raise errors.ParameterError("this statement writes: send it as a write")
        now = time.monotonic()
        slot = _ReadSlot(sql, check_params(c, params), on_done=on_done, started=now)
        slot.deadline = now + self.config.request_timeout
        if consistency == "stale":
            self._apply_held()  # as fresh as this node can be without asking the leader
            lag = self.core.commit - self.machine.applied_index
            if max_lag is not None and lag > max_lag:
                raise errors.UnavailableError(
                    f"node {self.config.id} lags {lag} entries behind its commit index "
                    f"(max_lag={max_lag})"
                )
            self._enqueue_query(slot)
            return slot
        if consistency != "linearizable":
            raise errors.ParameterError(
                f"unknown consistency {consistency!r}: use 'linearizable' or 'stale'"
            )
        self._ask_read_index(slot)
        return slot

    def _ask_read_index(self, slot: _ReadSlot) -> None:
        """A fresh context per attempt (etcd #20418): an answer to an older attempt that
        arrives late is simply not found."""
        slot.ctx = os.urandom(16)
        try:
            self.core.read_index(slot.ctx)
        except NotLeader:
            raise self._not_leader() from None
        slot.retry_at = time.monotonic() + self.config.tick_seconds * self.config.election_ticks * 2
        self._fast_reads[slot.ctx] = slot
        self._kick()

    def _release_applied_reads(self) -> None:
        applied = self.machine.applied_index
        waiting = []
        for slot in self._reads_to_apply:
            if slot.index <= applied:
                self._enqueue_query(slot)
            else:
                waiting.append(slot)
        self._reads_to_apply = waiting

    def _expire_reads(self) -> None:
        """The ticker's sweep: retry a read index that got no answer (leader change, lost
        message) with a new context; fail what waited past the request timeout."""
        now = time.monotonic()
        for ctx, slot in list(self._fast_reads.items()):
            if slot.retry_at > now:
                continue
            del self._fast_reads[ctx]
            if slot.deadline <= now:
                self._end_read(slot, errors.RequestTimeout("no read index within the timeout"))
                continue
            try:
                self._ask_read_index(slot)
            except errors.RaftsqlError as exc:
                self._end_read(slot, exc)
        late = [s for s in self._reads_to_apply if s.deadline <= now]
        if late:
            self._reads_to_apply = [s for s in self._reads_to_apply if s.deadline > now]
            for slot in late:
                self._end_read(
                    slot, errors.RequestTimeout(f"did not apply up to the read index {slot.index}")
                )

    def _end_read(self, slot: _ReadSlot, error: Exception | None = None) -> None:
        if error is not None:
            slot.error = error
        elif slot.error is None:
            self.counters["reads"] += 1
            self._latency["read"].append(time.monotonic() - slot.started)
        slot.done.set()
        if slot.on_done is not None:
            try:
                slot.on_done(slot)
            except Exception:
                log.exception("node %d: a read's completion callback failed", self.config.id)

    def _enqueue_query(self, slot: _ReadSlot) -> None:
        """Run a read now, on the loop, when the reader connection is free and the read
        is quick (``read_budget``): two thread hand-offs cost more than a point query.
        Reads past the budget, or arriving while a batch runs, go to the read worker."""
        if not self._reads_running and not self._reader_lock.locked():
            deadline = time.perf_counter() + self.config.read_budget
            try:
                slot.result = self.machine.query(
                    slot.sql, slot.params, self.config.max_read_rows, deadline=deadline
                )
            except QueryOverBudget:
                self.counters["reads_moved"] += 1
            except Exception as exc:
                self._end_read(slot, exc)
                return
            else:
                self._end_read(slot)
                return
        self._read_queue.append(slot)
        if not self._reads_running:
            self._reads_running = True
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_reads)

    async def _serve_reads(self) -> None:
        try:
            while self._read_queue:
                batch, self._read_queue = self._read_queue, []
                async with self._reader_lock:
                    await self._reads_worker.run(self._run_queries, batch)
                for slot in batch:
                    self._end_read(slot)
        finally:
            self._reads_running = False

    def _run_queries(self, batch: list[_ReadSlot]) -> None:
        """In the read worker: each query's result or error goes to its own slot."""
        for slot in batch:
            try:
                slot.result = self.machine.query(slot.sql, slot.params, self.config.max_read_rows)
            except Exception as exc:
                slot.error = exc

    async def digest(self) -> dict[str, Any]:
        """The applied index and a SHA-256 of the serialized database at that index."""
        async with self._machine_lock:
            applied = self.machine.applied_index
            digest = await trio.to_thread.run_sync(self.machine.content_digest)
        return {"applied": applied, "sha256": digest}

    def status(self) -> dict[str, Any]:
        core = self.core
        progress = {}
        if core.role is Role.LEADER:
            spares = core.spares()
            for pid, pr in core.progress.items():
                if pid != core.id:
                    progress[str(pid)] = {
                        "match": pr.match,
                        "next": pr.next,
                        "state": pr.state.value,
                        "lag": core.last_index - pr.match,
                        "active": pr.recent_active,
                        "connected": self.links[pid].connected,
                        "spare": pid in spares,
                        "last_ack": self._since(pid),
                    }
        return {
            "id": core.id,
            "address": format_address(self.config.address),
            "role": core.role.value,
            "term": core.term,
            "leader": core.leader_id,
            "leader_address": self.leader_address(),
            "commit": core.commit,
            "applied": self.machine.applied_index,
            "held": len(self._held),
            "first_index": core.first_index,
            "last_index": core.last_index,
            "snapshot_index": core.snapshot_meta.index,
            "voters": sorted(core.voters),
            "peers": {str(k): format_address(v) for k, v in self.config.peers.items()},
            "progress": progress,
            "uptime": time.monotonic() - self.started,
            "last_contact": 0.0 if core.role is Role.LEADER else self._since(core.leader_id),
            "latency_ms": {kind: _percentiles(v) for kind, v in self._latency.items()},
            "counters": {
                **self.counters,
                **{f"speculations_{k}": v for k, v in self.machine.speculations.items()},
            },
            "gc": gcpolicy.describe(),
        }

    def _since(self, peer: int | None) -> float | None:
        """Seconds since ``peer`` last sent this node anything (None: never, or no peer)."""
        heard = self._last_heard.get(peer) if peer is not None else None
        return None if heard is None else time.monotonic() - heard

    def transfer_leader(self, target: int) -> None:
        try:
            self.core.transfer_leader(target)
        except NotLeader:
            raise self._not_leader() from None
        self._kick()

    # === connections ======================================================================

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(stream, self.config.max_frame)
        try:
            hello = await reader.receive()
        except (EOFError, ProtocolError, trio.BrokenResourceError):
            return
        if isinstance(hello, dict) and hello.get("hello") == "peer":
            await self._serve_peer(reader, hello.get("id"))
        elif isinstance(hello, dict) and hello.get("hello") == "client":
            from raftsql.server.clients import serve_client

            await serve_client(self, stream, reader)
        else:
            err = errors.ProtocolError("the first frame must be a hello (peer or client)")
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(encode_frame({"id": None, "error": err.to_wire()}))

    async def _serve_peer(self, reader: FrameReader, peer_id: object) -> None:
        if peer_id not in self.links:
            log.warning("node %d: refused a peer link from unknown id %r", self.config.id, peer_id)
            return
        while True:
            try:
                frame = await reader.receive()
                m = codec.from_wire(frame)
            except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except ProtocolError as exc:
                log.warning("node %d: bad frame from peer %s: %s", self.config.id, peer_id, exc)
                return
            if not isinstance(m, Message) or m.frm != peer_id:
                log.warning(
                    "node %d: peer %s sent a message for someone else", self.config.id, peer_id
                )
                return
            self._last_heard[m.frm] = time.monotonic()
            self._step(m)


def _leadership_changed() -> errors.NotLeaderError:
    """The answer to a write whose entry was replaced by another leader's."""
    return errors.NotLeaderError(
        "leadership changed before the write committed; retry (it will not be applied twice)"
    )


def _by_peer(messages: Sequence[Message]) -> dict[int, list[Message]]:
    """Messages grouped by destination, in order (one socket write per peer)."""
    grouped: dict[int, list[Message]] = {}
    for m in messages:
        grouped.setdefault(m.to, []).append(m)
    return grouped


@asynccontextmanager
async def _all(locks: Sequence[trio.Lock]) -> AsyncIterator[None]:
    """Hold every lock of ``locks``, taken in the order given (always the same order:
    snapshot, machine, reader, so two takers cannot deadlock)."""
    async with AsyncExitStack() as stack:
        for lock in locks:
            await stack.enter_async_context(lock)
        yield


def _percentiles(samples: deque[float]) -> dict[str, float | int]:
    """p50/p99 in milliseconds of the last requests this node served (for status/tui)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def ms(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50": ms(0.50), "p99": ms(0.99)}


def _result_from_wire(d: dict[str, Any]) -> StatementResult:
    return StatementResult(
        [tuple(row) for row in d.get("rows") or []],
        list(d.get("columns") or []),
        d.get("rowcount", -1),
        d.get("lastrowid"),
        bool(d.get("truncated")),
    )


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Run a node inside the caller's trio program for the duration of the block."""
    node = await trio.to_thread.run_sync(Node, config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            yield node
            nursery.cancel_scope.cancel()
    finally:
        node.close()


async def serve_node(config: NodeConfig) -> None:
    """Run a node until cancelled (what `raftsql node` does)."""
    async with open_node(config):
        await trio.sleep_forever()
