"""RaftCore: one Raft node as a pure, deterministic state machine.

Inputs are method calls (``tick``, ``step``, ``propose``, ``read_index``,
``transfer_leader``, ``compact``); outputs accumulate until the caller takes them with
``ready()`` and acknowledges them with ``advance()``. Nothing here reads a clock, touches a
file or a socket, or uses randomness other than the ``random.Random`` it is given, so one
seed replays one run exactly (tests/sim relies on that).

Features, with where they come from: elections with randomized timeouts, PreVote and
CheckQuorum (Ongaro's thesis §9.6, §6.2), fast log backtracking with conflict hints,
pipelined replication with a bounded in-flight window, the current-term commit rule (§5.4.2,
Figure 8), a no-op entry on election (§8), ReadIndex reads sharing heartbeat rounds (§6.4),
leadership transfer (§3.10), and snapshots streamed in resumable chunks (§5).

A few hook methods (``_may_commit_at``, ``_log_is_up_to_date``,
``_vote_response_waits_for_persist``, ``_read_index_ready``) hold single safety rules each,
so tests can subclass the core with one rule broken and show the simulator catches it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from raftsql.raft import quorum
from raftsql.raft.config import Config, Restored
from raftsql.raft.errors import NotLeader, ProposalDropped
from raftsql.raft.log import RaftLog
from raftsql.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    RequestVote,
    RequestVoteResponse,
    SnapshotChunk,
    SnapshotMeta,
    TimeoutNow,
)
from raftsql.raft.progress import Progress, ProgressState
from raftsql.raft.ready import Ready


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class _PendingRead:
    ctx: bytes
    requester: int
    index: int = 0
    round: int = 0


@dataclass(slots=True)
class _IncomingSnapshot:
    meta: SnapshotMeta
    next_offset: int = 0


_FROM_LEADER = (AppendEntries, Heartbeat, InstallSnapshot)


class RaftCore:
    def __init__(
        self, config: Config, rng: random.Random, restored: Restored | None = None
    ) -> None:
        if config.id not in config.voters:
            raise ValueError(f"node {config.id} is not among the voters {set(config.voters)}")
        self.config = config
        self.id = config.id
        self._rng = rng
        r = restored or Restored()
        snap = r.snapshot
        if snap.index == 0 or not snap.voters:
            snap = SnapshotMeta(snap.index, snap.term, config.voters, snap.size)
        self.voters: frozenset[int] = snap.voters
        self.snapshot_meta: SnapshotMeta = snap
        self.log = RaftLog(snap.index, snap.term, r.entries)
        hs = r.hard_state
        self.term: int = hs.term
        self.vote: int | None = hs.vote
        self.applied: int = max(r.applied, snap.index)
        self.commit: int = max(hs.commit, self.applied)
        if self.commit > self.log.last_index:
            raise ValueError(
                f"commit {self.commit} beyond the last log index {self.log.last_index}"
            )
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None

        self._applying = self.applied  # last index handed out in Ready.committed
        self._prev_hs = HardState(self.term, self.vote, self.commit)
        self._durable_term = self.term
        """The term on disk: the restored one, then each advanced Ready's."""
        self._outstanding = False
        self._msgs: list[Message] = []
        self._msgs_after_persist: list[Message] = []
        self._read_states: list[ReadState] = []
        self._chunks: list[SnapshotChunk] = []
        self._installed: SnapshotMeta | None = None
        self._incoming: _IncomingSnapshot | None = None

        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._reset_randomized_timeout()
        self._votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}
        self._needs_flush = False
        self._reads_waiting_noop: list[_PendingRead] = []
        self._pending_reads: list[_PendingRead] = []
        self._read_round = 0
        self._read_round_needed = False
        self.lead_transferee: int | None = None
        self._uncommitted_bytes = 0
        self._flush_spares = False
        """``quorum_first``: the next flush sends to the spare followers too (a tick)."""
        self._flush_to: set[int] = set()
        """``quorum_first``: spares the next flush sends to anyway (they asked to read)."""

    # === read-only views ===================================================================

    @property
    def first_index(self) -> int:
        return self.log.first_index

    @property
    def last_index(self) -> int:
        return self.log.last_index

    def term_at(self, index: int) -> int | None:
        return self.log.term_at(index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.log.slice(lo, hi)

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    # === inputs ============================================================================

    def tick(self) -> None:
        """One unit of logical time: drives election timeouts and heartbeats."""
        self._election_elapsed += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        elif self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._campaign(transfer=False)

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a new entry; returns its index (commit is announced later).

        The caller matches the index *and* term of the entry it later applies: a leader
        change can replace an unacknowledged proposal with another entry at the same index.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self.lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        entry = Entry(self.term, self.log.last_index + 1, data, EntryKind.NORMAL)
        size = entry.size()
        if self._uncommitted_bytes and self._uncommitted_bytes + size > (
            self.config.max_uncommitted_bytes
        ):
            raise ProposalDropped("too much uncommitted data: the cluster is not keeping up")
        self._uncommitted_bytes += size
        self._append_as_leader(entry)
        return entry.index

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; a ``ReadState(ctx, index)`` comes out later.

        The request can be lost (leader change, lost messages): the caller times out and
        retries with a *fresh* ctx, never reusing an old one (etcd #20418).
        """
        if self.role is Role.LEADER:
            self._register_read(_PendingRead(ctx, self.id))
        elif self.leader_id is not None:
            self._send(ReadIndexRequest(self.id, self.leader_id, self.term, ctx))
        else:
            raise NotLeader(None)

    def transfer_leader(self, target: int) -> None:
        """Hand leadership to ``target``: catch it up, then tell it to campaign at once."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if target == self.id or target not in self.voters:
            return
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self._election_elapsed = 0  # the transfer is abandoned after one election timeout
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send(TimeoutNow(self.id, target, self.term))
        else:
            self._needs_flush = True

    def compact(self, index: int, size: int, retain: int = 0) -> SnapshotMeta:
        """The caller took a snapshot of its state at applied ``index`` (``size`` bytes).

        Forgets the log up to ``index - retain`` (keeping a tail lets slightly lagging
        followers catch up from the log instead of a whole snapshot) and returns the
        snapshot's metadata for the caller to store beside it.

        The caller must keep the *previous* snapshot's data readable until the next
        ``compact``: a follower in the middle of receiving it goes on receiving it. (Had
        every compaction restarted the streams in progress, a follower slower to receive
        a snapshot than the leader is to take one would never catch up.)
        """
        if index > self.applied:
            raise ValueError(f"cannot snapshot at {index}: only {self.applied} applied")
        term = self.log.term_at(index)
        if term is None:
            if index == self.snapshot_meta.index:
                return self.snapshot_meta
            raise ValueError(
                f"no entry at {index} to snapshot (log starts after {self.log.offset})"
            )
        meta = SnapshotMeta(index, term, self.voters, size)
        if index > self.snapshot_meta.index:
            kept = self.snapshot_meta
            self.snapshot_meta = meta
            for pr in self.progress.values():
                if pr.state is ProgressState.SNAPSHOT and pr.snapshot != kept:
                    # streaming a snapshot two generations old: its data is gone
                    pr.become_snapshot(meta)
                    self._needs_flush = True
        self.log.compact(max(self.log.offset, index - retain))
        return meta

    def step(self, m: Message) -> None:
        """Deliver one message addressed to this node."""
        if m.to != self.id:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.leader_id is not None
                    and self._election_elapsed < self.config.election_ticks
                )
                if in_lease and not m.transfer:
                    # We heard from a live leader within the election timeout: a node
                    # that wants a new term now is disruptive (partitioned and back), so
                    # it is ignored rather than allowed to depose the leader.
                    return
            if isinstance(m, RequestVote) and m.pre:
                pass  # a PreVote changes nobody's term
            elif isinstance(m, RequestVoteResponse) and m.pre and m.granted:
                pass  # granted PreVotes carry the term the candidate is about to use
            else:
                self._become_follower(m.term, m.frm if isinstance(m, _FROM_LEADER) else None)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A stale leader that cannot learn the new term from elections (PreVote and
                # leases keep us from voting for it) learns it here, and steps down.
                self._send(AppendEntriesResponse(self.id, m.frm, self.term), durable=True)
            elif isinstance(m, RequestVote) and m.pre:
                self._send(RequestVoteResponse(self.id, m.frm, self.term, False, True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # === output ============================================================================

    def has_ready(self) -> bool:
        if self._outstanding:
            return False
        return bool(
            (self._needs_flush and self.role is Role.LEADER)
            or self._read_round_needed
            or self._msgs
            or self._msgs_after_persist
            or self._read_states
            or self._chunks
            or self._installed
            or self.log.stable < self.log.last_index
            or self.commit > self._applying
            or self.hard_state != self._prev_hs
        )

    def has_light_ready(self) -> bool:
        """A Ready is waiting that needs nothing from the disk: no entries to persist, no
        snapshot to stage or install, no new term or vote (a commit index that moved,
        read states, messages). The caller may handle such a Ready at once, where it
        stepped the message that made it, instead of handing it to its persisting loop.

        Not while a read round is to be started: the reads that arrive together share one
        heartbeat round, so that Ready is better taken a little later, with all of them
        (taken at once, each follower's read index request cost its own round: half the
        follower reads at 64 clients)."""
        if not self.has_ready() or self._read_round_needed:
            return False
        if self.log.stable < self.log.last_index:
            return False
        if self._chunks or self._installed is not None:
            return False
        hs, prev = self.hard_state, self._prev_hs
        return (hs.term, hs.vote) == (prev.term, prev.vote)

    def ready(self) -> Ready:
        """Take everything the caller has to do now (see ``Ready`` for the order)."""
        if self._outstanding:
            raise RuntimeError("ready() called again before advance()")
        self._flush()
        rd = Ready(
            messages=self._msgs,
            messages_after_persist=self._msgs_after_persist,
            read_states=self._read_states,
            snapshot_chunks=self._chunks,
            snapshot=self._installed,
        )
        self._msgs, self._msgs_after_persist = [], []
        self._read_states, self._chunks, self._installed = [], [], None
        hs = self.hard_state
        if hs != self._prev_hs:
            rd.hard_state = hs
            self._prev_hs = hs
        rd.entries = self.log.unstable()
        if self.commit > self._applying:
            rd.committed = self.log.slice(self._applying + 1, self.commit)
            self._applying = self.commit
        self._outstanding = True
        return rd

    def take_messages(self) -> list[Message]:
        """While a Ready is out (its entries still being persisted), the messages queued
        since that need nothing from the disk; taken messages are not in the next Ready.
        Without this a slow disk silences a node until its fsync returns (etcd #7312):

        - a leader's heartbeats, appends and the like, which never wait for its own disk
          (thesis §10.2.1), else the followers elect someone else;
        - a follower's heartbeat answers in a term already on disk (they promise nothing
          else), else a leader whose followers' disks are busy (a big checkpoint on each)
          hears from no quorum and steps down (CheckQuorum).

        Everything else a follower or candidate says waits for ``advance``: acks promise
        entries, votes and new terms must be durable first.
        """
        if not self._outstanding:
            return []
        if self.role is Role.LEADER:
            msgs, self._msgs = self._msgs, []
            return msgs
        early = [
            m
            for m in self._msgs_after_persist
            if isinstance(m, HeartbeatResponse) and m.term == self._durable_term
        ]
        if early:
            taken = {id(m) for m in early}
            self._msgs_after_persist = [m for m in self._msgs_after_persist if id(m) not in taken]
        return early

    def advance(self, rd: Ready) -> None:
        """The caller persisted, sent and applied everything in ``rd``."""
        self._outstanding = False
        if rd.hard_state is not None:
            self._durable_term = rd.hard_state.term
        if rd.snapshot is not None:
            self.applied = max(self.applied, rd.snapshot.index)
        if rd.committed:
            self.applied = max(self.applied, rd.committed[-1].index)
        if rd.entries:
            last = rd.entries[-1]
            self.persisted(last.index, last.term)

    def persisted(self, index: int, term: int) -> None:
        """The caller's entries up to ``index`` (of ``term``) are durable, said while
        their Ready is still out, before ``advance``.

        Why: a server's disk worker finishes the fsync some time before its event loop
        gets round to ``advance`` (a thread wake-up and a pass of the scheduler, 100-300 us
        on the 2-core VMs we measure on), and a follower's ack often arrives in between.
        Told at once, a leader counts its own copy toward the quorum then and there, and
        what that commits can be taken with :meth:`take_committed`. The claim is checked
        like ``advance``'s (``RaftLog.stable_to``): if the log was truncated meanwhile it
        counts for nothing. ``advance`` makes the same claim for the Ready's last entry, a
        no-op if it was already made."""
        self.log.stable_to(index, term)
        if self.role is Role.LEADER:
            me = self.progress[self.id]
            if me.maybe_update(self.log.stable):
                self._maybe_commit()

    def take_committed(self) -> list[Entry]:
        """While a leader's Ready is out: the entries committed since it was taken, for
        the caller to apply now rather than after ``advance``. They are handed out once
        (the next Ready does not repeat them) and count as applied from here on, like
        a Ready's ``committed``. Only for a caller that has applied (or handed to its
        applier) the out Ready's own ``committed``: entries must apply in log order.
        Empty on a follower or candidate, and when no Ready is out.

        Only entries on the leader's own disk too (up to ``log.stable``): two followers'
        acks commit an entry before the leader's fsync ends, but the leader applies
        nothing it could lose itself, so its state machine (and any snapshot taken of
        it, which compacts the log) never runs ahead of its durable log."""
        upto = min(self.commit, self.log.stable)
        if not self._outstanding or self.role is not Role.LEADER or upto <= self._applying:
            return []
        taken = self.log.slice(self._applying + 1, upto)
        self._applying = upto
        self.applied = max(self.applied, upto)
        return taken

    # === safety rules (one rule each, overridable to prove the simulator catches bugs) ====

    def _may_commit_at(self, index: int) -> bool:
        """Raft §5.4.2: count replicas only for an entry of the leader's own term.

        The failing scenario (Figure 8): S1 leads term 2 and gets entry 2 onto S2 only; S5
        wins term 3 with S3, S4 and appends its own entry 2; S1 comes back in term 4 and
        copies its old entry 2 onto S3. Entry 2 (term 2) is now on a majority, but if S1
        crashes S5 can still win and overwrite it. Committing it by count would be unsafe.
        """
        return self.log.term_at(index) == self.term

    def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: vote only for a candidate whose log holds every committed entry."""
        return self.log.is_up_to_date(last_index, last_term)

    def _vote_response_waits_for_persist(self) -> bool:
        """A granted vote is a promise; it may leave only once the vote is on disk, or a
        crash and restart would let this node vote again, for another candidate, in the same
        term (PySyncObj #84)."""
        return True

    def _read_index_ready(self) -> bool:
        """A new leader knows which entries are committed only once an entry of its own
        term has committed (its no-op); before that, its commit index may be stale."""
        return self.log.term_at(self.commit) == self.term

    # === roles =============================================================================

    def _reset_randomized_timeout(self) -> None:
        t = self.config.election_ticks
        self._randomized_timeout = self._rng.randint(t, 2 * t)

    def _become_follower(self, term: int, leader: int | None) -> None:
        if term > self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self._reset_leader_state()

    def _reset_leader_state(self) -> None:
        self.progress = {}
        self._votes = {}
        self._reads_waiting_noop = []
        self._pending_reads = []
        self._read_round_needed = False
        self.lead_transferee = None
        self._needs_flush = False
        self._uncommitted_bytes = 0
        self._flush_spares = False
        self._flush_to = set()

    def _campaign(self, transfer: bool) -> None:
        """Start an election: a PreVote round first unless PreVote is off or this is a
        leader transfer (the old leader asked us to campaign, so nobody will object)."""
        if self.id not in self.voters:
            return
        self._start_election(pre=self.config.pre_vote and not transfer, transfer=transfer)

    def _start_election(self, pre: bool, transfer: bool) -> None:
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._reset_leader_state()
        self.leader_id = None
        if pre:
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.vote = self.id
            term = self.term
        self._votes = {self.id: True}
        if quorum.vote_result(self.voters, self._votes):
            self._won_election()
            return
        for v in sorted(self.voters):
            if v != self.id:
                req = RequestVote(
                    self.id, v, term, self.log.last_index, self.log.last_term, pre, transfer
                )
                # A real candidacy goes out once its term and self-vote are durable.
                self._send(req, durable=not pre)

    def _won_election(self) -> None:
        if self.role is Role.PRE_CANDIDATE:
            # a PreVote majority says a real election can succeed: run it now
            self._start_election(pre=False, transfer=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.id
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_leader_state()
        last = self.log.last_index
        for v in self.voters:
            pr = Progress(match=0, next=last + 1)
            pr.recent_active = v == self.id
            self.progress[v] = pr
        me = self.progress[self.id]
        me.match = self.log.stable
        me.state = ProgressState.REPLICATE
        # §8: commit an entry of our own term at once; it carries the previous terms'
        # entries to commitment and unblocks ReadIndex.
        self._append_as_leader(Entry(self.term, last + 1, b"", EntryKind.NOOP))

    def _append_as_leader(self, entry: Entry) -> None:
        self.log.append(entry)
        self.progress[self.id].next = entry.index + 1
        self._needs_flush = True

    # === voting ============================================================================

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.leader_id is None)
            or (m.pre and m.term > self.term)
        )
        if (
            can_vote
            and m.frm in self.voters
            and self._log_is_up_to_date(m.last_log_index, m.last_log_term)
        ):
            if m.pre:
                self._send(RequestVoteResponse(self.id, m.frm, m.term, True, True))
                return
            self.vote = m.frm
            self._election_elapsed = 0
            resp = RequestVoteResponse(self.id, m.frm, self.term, True, False)
            self._send(resp, durable=self._vote_response_waits_for_persist())
        else:
            resp = RequestVoteResponse(self.id, m.frm, self.term, False, m.pre)
            self._send(resp, durable=not m.pre)
            if (
                m.pre
                and self.role is Role.FOLLOWER
                and self._election_elapsed >= self.config.election_ticks
                and m.frm in self.voters
                and not self._log_is_up_to_date(m.last_log_index, m.last_log_term)
            ):
                # A voter whose log is behind ours gave up on the leader, as we would
                # within a few ticks (we have not heard from one for a whole election
                # timeout either): campaign now instead of waiting for our own timer. It
                # cannot win, we can. (Quorum-first replication leaves a spare follower up
                # to a tick behind: after the leader dies, the spare's timer, when it
                # fires first, would otherwise only cost a round.)
                self._campaign(transfer=False)

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, _FROM_LEADER):
            # someone won this term: follow it, then handle the message as a follower
            self._become_follower(self.term, m.frm)
            self._step_follower(m)
            return
        if not isinstance(m, RequestVoteResponse):
            return
        if self.role is Role.PRE_CANDIDATE:
            # granted PreVotes carry the prospective term; refusals carry the voter's term
            if not m.pre or (m.granted and m.term != self.term + 1):
                return
        elif m.pre or m.term != self.term:
            return
        self._votes.setdefault(m.frm, m.granted)
        result = quorum.vote_result(self.voters, self._votes)
        if result is True:
            self._won_election()
        elif result is False:
            self._become_follower(self.term, None)

    # === follower ==========================================================================

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, _FROM_LEADER):
            self._election_elapsed = 0
            self.leader_id = m.frm
        if isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._commit_to(min(m.commit, self.log.last_index))
            self._send(HeartbeatResponse(self.id, m.frm, self.term, m.round), durable=True)
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot_chunk(m)
        elif isinstance(m, TimeoutNow):
            self._campaign(transfer=True)
        elif isinstance(m, ReadIndexResponse):
            self._read_states.append(ReadState(m.ctx, m.index))

    def _commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index

    def _handle_append(self, m: AppendEntries) -> None:
        prev_index, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev_index < self.commit:
            # Our log up to commit is final and equal to the leader's: skip that part. This
            # also covers prev_index below our compaction point, whose term we forgot.
            skip = self.commit - prev_index
            if skip >= len(entries):
                self._send(
                    AppendEntriesResponse(self.id, m.frm, self.term, True, self.commit),
                    durable=True,
                )
                return
            prev_index = self.commit
            prev_term = entries[skip - 1].term
            entries = entries[skip:]
        last_new = self.log.maybe_append(prev_index, prev_term, entries, self.commit)
        if last_new is None:
            hint_index, hint_term = self.log.find_conflict_by_term(
                min(prev_index, self.log.last_index), prev_term
            )
            resp = AppendEntriesResponse(
                self.id, m.frm, self.term, False, m.prev_index, hint_index, hint_term
            )
            self._send(resp, durable=True)
            return
        self._commit_to(min(m.commit, last_new))
        resp = AppendEntriesResponse(self.id, m.frm, self.term, True, last_new)
        self._send(resp, durable=True)

    def _handle_snapshot_chunk(self, m: InstallSnapshot) -> None:
        meta = m.meta

        def answer(next_offset: int, done: bool = False, rejected: bool = False) -> None:
            resp = InstallSnapshotResponse(
                self.id, m.frm, self.term, meta.index, next_offset, done, rejected
            )
            self._send(resp, durable=True)

        if meta.index <= self.commit:
            answer(meta.size, done=True)  # we already have everything it covers
            return
        if m.offset == 0 and self.log.term_at(meta.index) == meta.term:
            # our log already holds the snapshot's last entry, hence all before it (log
            # matching): no need to install, just learn that it is committed
            self._commit_to(meta.index)
            answer(meta.size, done=True)
            return
        inc = self._incoming
        if m.offset == 0 and (inc is None or inc.meta != meta):
            inc = self._incoming = _IncomingSnapshot(meta)
        if inc is None or inc.meta != meta or m.offset != inc.next_offset:
            expected = inc.next_offset if inc is not None and inc.meta == meta else 0
            answer(expected, rejected=True)
            return
        self._chunks.append(SnapshotChunk(meta, m.offset, m.data))
        inc.next_offset += len(m.data)
        if not m.done:
            answer(inc.next_offset)
            return
        if inc.next_offset != meta.size:
            self._incoming = None
            answer(0, rejected=True)
            return
        self._incoming = None
        self.log.restore(meta)
        self.snapshot_meta = meta
        self.voters = meta.voters
        self.commit = meta.index
        self._applying = meta.index
        self._installed = meta
        answer(meta.size, done=True)

    # === leader ============================================================================

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        if any(self.progress[v].next <= self.log.last_index for v in self.spares()):
            self._flush_spares = True  # what the spares were not sent yet goes out now
            self._needs_flush = True
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum:
                active = [v for v, pr in self.progress.items() if pr.recent_active]
                if not quorum.has_quorum(self.voters, active):
                    # §6.2: we cannot hear a majority; another leader may exist already
                    self._become_follower(self.term, None)
                    return
                for v, pr in self.progress.items():
                    pr.recent_active = v == self.id
            self.lead_transferee = None  # a transfer that did not finish in time is dropped
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _broadcast_heartbeat(self) -> None:
        for v, pr in self.progress.items():
            if v != self.id:
                commit = min(pr.match, self.commit)
                self._send(Heartbeat(self.id, v, self.term, commit, self._read_round))

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.frm)
        if isinstance(m, ReadIndexRequest):
            if pr is not None:
                self._register_read(_PendingRead(m.ctx, m.frm))
                if self.config.quorum_first and pr.next <= self.log.last_index:
                    # a spare serves the read only once it has the entries up to the read
                    # index: send them now rather than at the next tick
                    self._flush_to.add(m.frm)
                    self._needs_flush = True
            return
        if pr is None:
            return
        pr.recent_active = True
        if isinstance(m, AppendEntriesResponse):
            self._handle_append_response(m, pr)
        elif isinstance(m, HeartbeatResponse):
            if m.round > pr.read_round:
                pr.read_round = m.round
                self._release_reads()
            if pr.note_heartbeat_answer():
                if pr.state is ProgressState.SNAPSHOT:
                    pr.rewind_snapshot(pr.snap_acked)
                else:
                    pr.become_probe()
            if pr.match < self.log.last_index or pr.state is not ProgressState.REPLICATE:
                self._needs_flush = True
        elif isinstance(m, InstallSnapshotResponse):
            self._handle_snapshot_response(m, pr)

    def _handle_append_response(self, m: AppendEntriesResponse, pr: Progress) -> None:
        if not m.success:
            if pr.state is ProgressState.SNAPSHOT:
                return
            match_hint = m.hint_index
            if m.hint_term > 0:
                match_hint, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decr_to(m.index, match_hint):
                self._needs_flush = True
            return
        if pr.maybe_update(m.index):
            if pr.state is not ProgressState.REPLICATE:
                pr.become_replicate()
            self._maybe_commit()
            self._needs_flush = True
            self._maybe_finish_transfer(m.frm, pr)
        elif pr.state is ProgressState.REPLICATE and pr.inflight:
            self._needs_flush = True  # a freed window slot may let more go out

    def _handle_snapshot_response(self, m: InstallSnapshotResponse, pr: Progress) -> None:
        current = pr.state is ProgressState.SNAPSHOT and pr.snapshot is not None
        if m.done:
            if m.index > pr.match:
                pr.match = m.index
            if current or pr.next <= pr.match:
                pr.become_probe()
            self._needs_flush = True
            self._maybe_commit()
            self._maybe_finish_transfer(m.frm, pr)
            return
        if not current or pr.snapshot is None or m.index != pr.snapshot.index:
            return
        if m.rejected:
            if m.next_offset == pr.snap_rewound_to:
                return  # an echo of the window sent before we rewound: already handled
            pr.rewind_snapshot(m.next_offset)
        elif m.next_offset > pr.snap_acked:
            pr.snap_acked = m.next_offset
            pr.snap_rewound_to = -1
        self._needs_flush = True

    def _maybe_finish_transfer(self, peer: int, pr: Progress) -> None:
        if peer == self.lead_transferee and pr.match == self.log.last_index:
            self._send(TimeoutNow(self.id, peer, self.term))

    def _maybe_commit(self) -> None:
        index = quorum.committed_index(self.voters, lambda v: self.progress[v].match)
        if index <= self.commit or not self._may_commit_at(index):
            return
        newly = self.log.slice(self.commit + 1, index)
        self._uncommitted_bytes = max(0, self._uncommitted_bytes - sum(e.size() for e in newly))
        self.commit = index
        self._needs_flush = True  # followers should hear about the new commit index soon
        if self._reads_waiting_noop and self._read_index_ready():
            waiting, self._reads_waiting_noop = self._reads_waiting_noop, []
            for read in waiting:
                self._register_read(read)

    # --- sending entries and snapshots -----------------------------------------------------

    def _flush(self) -> None:
        """Send what the leader owes each follower, batching everything since last time."""
        if self.role is not Role.LEADER:
            self._needs_flush = False
            self._read_round_needed = False
            return
        if self._read_round_needed:
            self._read_round_needed = False
            self._read_round += 1
            self._broadcast_heartbeat()
            self._heartbeat_elapsed = 0
        if not self._needs_flush:
            return
        self._needs_flush = False
        spares = () if self._flush_spares else self.spares()
        self._flush_spares = False
        for v, pr in self.progress.items():
            if v != self.id and (v not in spares or v in self._flush_to or pr.catching_up):
                self._send_append(v, pr)
        self._flush_to.clear()

    def spares(self) -> list[int]:
        """On a ``quorum_first`` leader: the followers in REPLICATE beyond the most
        caught-up ones a quorum needs (ties go to the lower id, so the choice holds
        still), less a leadership transfer's target; none otherwise. Followers in PROBE or
        SNAPSHOT are never spares: they are sent to as before."""
        if not self.config.quorum_first or self.role is not Role.LEADER:
            return []
        replicating = sorted(
            (
                v
                for v, pr in self.progress.items()
                if v != self.id and pr.state is ProgressState.REPLICATE
            ),
            key=lambda v: (-self.progress[v].match, v),
        )
        needed = len(self.voters) // 2  # followers that, with the leader, make a majority
        return [v for v in replicating[needed:] if v != self.lead_transferee]

    def _send_append(self, peer: int, pr: Progress) -> None:
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunks(peer, pr)
            return
        cfg = self.config
        while not pr.is_paused(cfg.max_inflight):
            prev = pr.next - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:
                # what this follower needs was compacted away: send the snapshot instead
                pr.become_snapshot(self.snapshot_meta)
                self._send_snapshot_chunks(peer, pr)
                return
            entries = tuple(self.log.slice_bytes(pr.next, cfg.max_msg_bytes))
            if not entries and pr.state is ProgressState.REPLICATE:
                break
            msg = AppendEntries(self.id, peer, self.term, prev, prev_term, entries, self.commit)
            self._send(msg)
            if pr.state is ProgressState.PROBE:
                pr.probe_sent = True
            elif entries:
                pr.next = entries[-1].index + 1
                pr.inflight.append(entries[-1].index)
        if pr.state is ProgressState.REPLICATE:
            pr.catching_up = pr.next <= self.log.last_index  # the window filled first
        # With nothing new to send, a follower learns a new commit index from the next
        # append or heartbeat (or the heartbeat round of a read it asked for), not from an
        # extra message now: measured at one writer, that extra round (a follower wakes,
        # applies and answers) took CPU from the leader right when it applies and replies.

    def _send_snapshot_chunks(self, peer: int, pr: Progress) -> None:
        meta = pr.snapshot
        assert meta is not None
        chunk = max(1, self.config.snapshot_chunk_bytes)
        window = max(1, self.config.max_inflight) * chunk
        while not pr.snap_done_sent and pr.snap_sent - pr.snap_acked < window:
            length = min(chunk, meta.size - pr.snap_sent)
            done = pr.snap_sent + length >= meta.size
            self._send(
                InstallSnapshot(self.id, peer, self.term, meta, pr.snap_sent, length, b"", done)
            )
            pr.snap_sent += length
            pr.snap_done_sent = done

    # --- ReadIndex -------------------------------------------------------------------------

    def _register_read(self, read: _PendingRead) -> None:
        if not self._read_index_ready():
            self._reads_waiting_noop.append(read)
            return
        read.index = self.commit
        if quorum.has_quorum(self.voters, [self.id]):
            self._deliver_read(read)  # a single-voter cluster confirms itself
            return
        read.round = self._read_round + 1
        self._read_round_needed = True
        self._pending_reads.append(read)

    def _release_reads(self) -> None:
        """Serve every read whose heartbeat round a majority has acknowledged."""
        while self._pending_reads:
            r = self._pending_reads[0].round
            acked = [v for v, pr in self.progress.items() if v == self.id or pr.read_round >= r]
            if not quorum.has_quorum(self.voters, acked):
                return
            self._deliver_read(self._pending_reads.pop(0))

    def _deliver_read(self, read: _PendingRead) -> None:
        if read.requester == self.id:
            self._read_states.append(ReadState(read.ctx, read.index))
        else:
            self._send(ReadIndexResponse(self.id, read.requester, self.term, read.ctx, read.index))

    # --- plumbing --------------------------------------------------------------------------

    def _send(self, m: Message, durable: bool = False) -> None:
        """Queue ``m``; ``durable`` ones leave only after this Ready's state is on disk."""
        (self._msgs_after_persist if durable else self._msgs).append(m)
