"""The in-memory Raft log of one node: the entries after the last compaction point.

The core keeps every entry it still needs in memory: the caller compacts after snapshots, so
this is bounded by the compaction interval rather than by history. Entries after ``stable``
have been handed out for persistence but not yet acknowledged as durable; the leader only
counts its own log towards a quorum up to ``stable`` (an fsync that has not finished does not
make an entry safe, even on the leader).
"""

from __future__ import annotations

from raftsql.raft.messages import Entry, SnapshotMeta


class RaftLog:
    def __init__(self, offset: int = 0, offset_term: int = 0, entries: tuple[Entry, ...] = ()):
        self.offset = offset
        """Index of the entry just before the first kept one (compaction/snapshot point)."""
        self.offset_term = offset_term
        self._entries: list[Entry] = list(entries)
        for k, e in enumerate(self._entries):
            if e.index != offset + 1 + k:
                raise ValueError(f"log entries are not contiguous after {offset}: {e.index}")
        self.stable = self.last_index
        """Last index known to be on disk (restored entries came from disk)."""

    # --- lookup --------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.offset_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        if self.offset < index <= self.last_index:
            return self._entries[index - self.offset - 1].term
        return None

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.offset - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi inclusive (clamped to what the log holds)."""
        lo = max(lo, self.first_index)
        hi = min(hi, self.last_index)
        if lo > hi:
            return []
        return self._entries[lo - self.offset - 1 : hi - self.offset]

    def slice_bytes(self, lo: int, max_bytes: int) -> list[Entry]:
        """Entries from ``lo`` up to about ``max_bytes`` (always at least one if any exist)."""
        out: list[Entry] = []
        total = 0
        for k in range(lo - self.offset - 1, len(self._entries)):
            e = self._entries[k]
            total += e.size()
            if out and total > max_bytes:
                break
            out.append(e)
        return out

    def unstable(self) -> list[Entry]:
        return self._entries[self.stable - self.offset :]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, and that term.

        Used both by a follower rejecting an append (its hint) and by the leader reading the
        hint: every entry above the returned index is known not to match, so the leader
        skips a whole term of mismatching entries in one round trip.
        """
        index = min(index, self.last_index)
        while index > self.offset:
            t = self.term_at(index)
            assert t is not None
            if t <= term:
                return index, t
            index -= 1
        if index == self.offset:
            return index, self.offset_term
        return index, 0

    # --- changes -------------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        assert entry.index == self.last_index + 1, (entry.index, self.last_index)
        self._entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index`` and after (a conflicting suffix from an older leader)."""
        del self._entries[index - self.offset - 1 :]
        self.stable = min(self.stable, index - 1)

    def maybe_append(
        self, prev_index: int, prev_term: int, entries: tuple[Entry, ...], commit: int
    ) -> int | None:
        """AppendEntries on a follower: the new last matching index, or None to reject.

        Only a *conflicting* suffix is truncated (same index, different term): an entry that
        is already present is kept as is, because a delayed or duplicated AppendEntries must
        never cut off entries that a later one added (Raft §5.3, "if an existing entry
        conflicts with a new one").
        """
        if self.term_at(prev_index) != prev_term:
            return None
        for e in entries:
            t = self.term_at(e.index)
            if t == e.term:
                continue
            if t is not None:
                assert e.index > commit, f"conflict at committed index {e.index}"
                self.truncate_from(e.index)
            start = e.index - entries[0].index
            for new in entries[start:]:
                self.append(new)
            break
        return prev_index + len(entries)

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are durable now.

        The term check guards against this race: the caller started persisting entries
        5..10, a new leader meanwhile truncated the log at 8 and appended its own 8 and 9;
        when the first write completes, claiming "stable up to 10" would count entries
        that were never written. If the entry at ``index`` still has ``term`` it is the very
        entry that was written (log matching), so the claim holds.
        """
        if index > self.stable and self.term_at(index) == term:
            self.stable = index

    def compact(self, upto: int) -> None:
        """Forget entries up to ``upto`` (they are covered by a snapshot)."""
        if upto <= self.offset:
            return
        term = self.term_at(upto)
        assert term is not None and upto <= self.stable, (upto, self.stable)
        del self._entries[: upto - self.offset]
        self.offset = upto
        self.offset_term = term

    def restore(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot's point (after InstallSnapshot)."""
        self._entries = []
        self.offset = meta.index
        self.offset_term = meta.term
        self.stable = meta.index
