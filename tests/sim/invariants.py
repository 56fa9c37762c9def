"""Raft's safety properties, checked incrementally while a simulation runs.

Why incremental: a run has thousands of steps and the suite runs thousands of runs, so a
check that rescans every log after every step would make the suite too slow to run in CI.
Each check here costs O(what just changed) and relies on the earlier checks: log matching
is checked entry by entry as entries appear, which is what lets leader completeness look at
a single index (the last committed one) instead of the whole log.

The tables are global (across nodes and across restarts of a node), because the properties
are global: "every node that applied index i applied the same entry" cannot be seen from
any one node.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftsql.raft.messages import Entry, EntryKind, HardState, SnapshotMeta


class InvariantViolation(AssertionError):
    """A safety (or liveness) property failed; ``invariant`` names which, for the tests
    that must show a deliberately broken core is caught by the right check."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"[{invariant}] {detail}")
        self.invariant = invariant
        self.detail = detail


class ContractViolation(AssertionError):
    """The core broke its API contract with its caller (e.g. a gap in the entries to
    persist, a committed entry out of order): not a Raft property, but just as fatal."""


class Invariants:
    """The global tables every safety check reads, and one method per kind of event."""

    def __init__(self, check_votes: bool = True) -> None:
        self.check_votes = check_votes
        """Off only to show that election safety itself catches a lost vote."""
        self.leaders: dict[int, int] = {}
        """term -> the node that led it (election safety)."""
        self.log_entries: dict[tuple[int, int], tuple[bytes, EntryKind, int | None]] = {}
        """(index, term) -> (data, kind, term of index-1) of every entry any log ever held."""
        self.applied: dict[int, tuple[int, bytes, EntryKind]] = {}
        """index -> (term, data, kind) of what was applied there (by anyone, ever)."""
        self.max_applied = 0
        self.applied_at: dict[bytes, int] = {}
        """payload -> index it was applied at: payloads are unique, so a second index means
        the same proposal was applied twice."""
        self.acked: dict[int, tuple[int, bytes]] = {}
        """index -> (term, payload) of every write acknowledged to its client."""
        self.watermark = 0
        """The lowest applied index a read starting now may observe: the highest index
        that an acknowledged write or an already answered read has exposed to clients."""
        self.votes: dict[tuple[int, int], int] = {}
        """(voter, term) -> candidate that voter granted its vote to, across restarts."""

    # --- 1. election safety ---------------------------------------------------------------

    def leader_elected(self, node: int, term: int) -> None:
        """At most one leader per term (Raft §5.2)."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise InvariantViolation(
                "election-safety", f"n{node} and n{other} are both leaders of term {term}"
            )

    def vote_granted(self, voter: int, term: int, candidate: int) -> None:
        """A node grants at most one vote per term, even across a crash and restart: the
        promise behind election safety, checked directly so that a lost vote is caught
        even when the second candidate happens not to win."""
        if not self.check_votes:
            return
        other = self.votes.setdefault((voter, term), candidate)
        if other != candidate:
            raise InvariantViolation(
                "one-vote-per-term",
                f"n{voter} voted for n{other} and then for n{candidate} in term {term}",
            )

    # --- 2. log matching ------------------------------------------------------------------

    def entry_in_log(self, node: int, entry: Entry, prev_term: int | None) -> None:
        """Same (index, term) anywhere => same data and same predecessor term. By induction
        on the index this gives the Log Matching Property (§5.3): two logs holding an entry
        with the same index and term are identical up to it."""
        key = (entry.index, entry.term)
        seen = self.log_entries.get(key)
        if seen is None:
            self.log_entries[key] = (entry.data, entry.kind, prev_term)
            return
        data, kind, seen_prev = seen
        if data != entry.data or kind != entry.kind:
            raise InvariantViolation(
                "log-matching",
                f"n{node} holds {entry.index}/{entry.term} = {entry.kind.name} {entry.data!r}, "
                f"elsewhere it is {kind.name} {data!r}",
            )
        if prev_term is not None and seen_prev is not None and prev_term != seen_prev:
            raise InvariantViolation(
                "log-matching",
                f"n{node} holds {entry.index}/{entry.term} after an entry of term {prev_term}, "
                f"elsewhere it follows term {seen_prev}",
            )
        if seen_prev is None and prev_term is not None:
            self.log_entries[key] = (data, kind, prev_term)

    # --- 3. leader completeness -----------------------------------------------------------

    def leader_completeness(
        self,
        node: int,
        term: int,
        snapshot: SnapshotMeta,
        term_at: int | None,
    ) -> None:
        """A new leader holds every committed entry (§5.4). Checking only the highest
        applied index C is enough: if the leader holds C with the committed term, log
        matching (checked entry by entry) makes its whole prefix the committed one. When
        C is inside the leader's snapshot, the snapshot itself was checked entry by entry
        when it was taken or installed.

        ``term_at`` is the term the leader's log has at C (None if not in its log).
        """
        snap = self.applied.get(snapshot.index)
        if snap is not None and snapshot.index > 0 and snap[0] != snapshot.term:
            raise InvariantViolation(
                "leader-completeness",
                f"n{node} became leader of term {term} with snapshot "
                f"{snapshot.index}/{snapshot.term}, but the entry applied at "
                f"{snapshot.index} has term {snap[0]}",
            )
        c = self.max_applied
        if c == 0 or c <= snapshot.index:
            return
        want = self.applied[c][0]
        if term_at != want:
            raise InvariantViolation(
                "leader-completeness",
                f"n{node} became leader of term {term} but its log has "
                f"{'no entry' if term_at is None else f'term {term_at}'} at {c}, "
                f"where the entry of term {want} was committed and applied",
            )

    # --- 4./5. state machine safety, acknowledged writes ----------------------------------

    def entry_applied(self, node: int, entry: Entry) -> None:
        """Every node that applies index i applies the same entry (§5.4.3); an
        acknowledged write is exactly the entry its client was told about; no payload is
        applied at two indexes (every payload is proposed once)."""
        idx = entry.index
        seen = self.applied.get(idx)
        if seen is None:
            self.applied[idx] = (entry.term, entry.data, entry.kind)
            if idx > self.max_applied:
                self.max_applied = idx
        elif seen[0] != entry.term or seen[1] != entry.data or seen[2] != entry.kind:
            ack = self.acked.get(idx)
            raise InvariantViolation(
                "state-machine-safety" if ack is None else "acked-write-lost",
                f"n{node} applied {idx}/{entry.term} {entry.kind.name} {entry.data!r}, "
                f"but {idx}/{seen[0]} {seen[2].name} {seen[1]!r} was applied there before"
                + ("" if ack is None else " and acknowledged to its client"),
            )
        else:
            return  # seen before, identical: the other checks were done then
        if entry.kind is EntryKind.NORMAL:
            other = self.applied_at.setdefault(entry.data, idx)
            if other != idx:
                raise InvariantViolation(
                    "state-machine-safety",
                    f"n{node} applied {entry.data!r} at {idx}, it was applied at {other} before",
                )

    def snapshot_contents(
        self, node: int, meta: SnapshotMeta, items: Iterable[tuple[int, int, bytes]]
    ) -> None:
        """A snapshot replaces entries one by one in a node's state machine, so each of its
        (index, term, payload) must agree with what was applied there, and it must hold
        every acknowledged write it covers."""
        seen = self.applied.get(meta.index)
        if seen is not None and seen[0] != meta.term:
            raise InvariantViolation(
                "state-machine-safety",
                f"n{node} has snapshot {meta.index}/{meta.term}, "
                f"but the entry applied at {meta.index} has term {seen[0]}",
            )
        have: dict[int, tuple[int, bytes]] = {}
        for index, term, data in items:
            if index > meta.index:
                raise InvariantViolation(
                    "state-machine-safety",
                    f"n{node}'s snapshot {meta.index}/{meta.term} holds entry {index}",
                )
            self.entry_applied(node, Entry(term, index, data, EntryKind.NORMAL))
            have[index] = (term, data)
        for index, ack in self.acked.items():
            if index <= meta.index and have.get(index) != ack:
                raise InvariantViolation(
                    "acked-write-lost",
                    f"n{node}'s snapshot {meta.index}/{meta.term} lacks acknowledged write "
                    f"{ack[1]!r} at {index}/{ack[0]}",
                )

    def acknowledge(self, index: int, term: int, payload: bytes) -> None:
        """The proposing node applied its own entry: the client is told "done"."""
        self.acked[index] = (term, payload)
        self.watermark = max(self.watermark, index)

    def final_state(self, node: int, applied: int, sm: dict[int, tuple[int, bytes]]) -> None:
        """At the end: every acknowledged write is on every node that applied that far."""
        for index, ack in self.acked.items():
            if index <= applied and sm.get(index) != ack:
                raise InvariantViolation(
                    "acked-write-lost",
                    f"acknowledged write {ack[1]!r} at {index}/{ack[0]} is missing on n{node} "
                    f"(applied {applied}, has {sm.get(index)!r})",
                )

    # --- 6. linearizable reads ------------------------------------------------------------

    def read_served(
        self, node: int, ctx: bytes, observed: int, read_index: int, start_watermark: int
    ) -> None:
        """A read observes the state machine at ``observed`` (the node's applied index). It
        must include every write acknowledged, and everything any read returned, before
        the read began; afterwards nothing may observe less than it did."""
        if observed < read_index:
            raise ContractViolation(f"read {ctx!r} served at {observed} < read index {read_index}")
        if observed < start_watermark:
            raise InvariantViolation(
                "linearizable-read",
                f"read {ctx!r} on n{node} observed applied={observed} (read index "
                f"{read_index}), but index {start_watermark} was already acknowledged or "
                "observed when the read began",
            )
        self.watermark = max(self.watermark, observed)

    # --- 7. monotonicity ------------------------------------------------------------------

    def hard_state_persisted(self, node: int, old: HardState, new: HardState) -> None:
        """On disk, term and commit never go back, and the vote of a term never changes:
        a restart resumes from these, so a regression here is a regression across restarts
        (PySyncObj #201 reset the term after a full-cluster restart)."""
        if new.term < old.term:
            raise InvariantViolation(
                "monotonic", f"n{node} persisted term {new.term} over term {old.term}"
            )
        if new.commit < old.commit:
            raise InvariantViolation(
                "monotonic", f"n{node} persisted commit {new.commit} over commit {old.commit}"
            )
        if (
            self.check_votes
            and new.term == old.term
            and old.vote is not None
            and new.vote != old.vote
        ):
            raise InvariantViolation(
                "one-vote-per-term",
                f"n{node} persisted vote {new.vote} over vote {old.vote} in term {new.term}",
            )
