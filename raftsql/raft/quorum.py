"""Majority arithmetic over a configuration.

Every quorum decision goes through here with the voter set passed in, never a fixed peer
list, so that membership changes (and later joint consensus: a decision needs a majority of
both the old and the new voter sets) only have to change this module's callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def majority(voters: frozenset[int]) -> int:
    return len(voters) // 2 + 1


def committed_index(voters: frozenset[int], match_of: Callable[[int], int]) -> int:
    """The highest index that a majority of ``voters`` has durably stored."""
    matches = sorted((match_of(v) for v in voters), reverse=True)
    return matches[majority(voters) - 1]


def has_quorum(voters: frozenset[int], yes: Iterable[int]) -> bool:
    return len(voters.intersection(yes)) >= majority(voters)


def vote_result(voters: frozenset[int], votes: dict[int, bool]) -> bool | None:
    """True once a majority granted, False once a majority refused, else None (pending)."""
    granted = sum(1 for v, g in votes.items() if g and v in voters)
    refused = sum(1 for v, g in votes.items() if not g and v in voters)
    if granted >= majority(voters):
        return True
    if refused >= majority(voters):
        return False
    return None
