"""HardState persistence: a torn or corrupt file never rolls the term (or vote) back."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftsql.raft.messages import HardState
from raftsql.storage.hardstate import (
    FILE_SIZE,
    SLOT_SIZE,
    CorruptHardStateError,
    HardStateStore,
    _decode_slot,
)


def test_new_node_loads_the_zero_state_and_creates_no_file(tmp_path: Path) -> None:
    store = HardStateStore(tmp_path)
    assert store.load() == HardState()
    assert not (tmp_path / "hardstate").exists()
    store.close()


def test_save_and_reload(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=1, vote=3, commit=0))
        store.save(HardState(term=2, vote=None, commit=5))
        store.save(HardState(term=2, vote=1, commit=7))
    assert (tmp_path / "hardstate").stat().st_size == FILE_SIZE
    with HardStateStore(tmp_path) as store:
        assert store.load() == HardState(term=2, vote=1, commit=7)
        assert store.torn_slot is None


def test_many_saves_alternate_slots_and_keep_the_newest(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        for t in range(1, 50):
            store.save(HardState(term=t, vote=t % 3, commit=t * 2))
            with HardStateStore(tmp_path) as again:
                assert again.load() == HardState(term=t, vote=t % 3, commit=t * 2)


def test_vote_zero_is_not_no_vote(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=4, vote=0))
    with HardStateStore(tmp_path) as store:
        assert store.load().vote == 0


def _slot_of_newest(path: Path) -> int:
    raw = path.read_bytes()
    slots = [_decode_slot(raw[k * SLOT_SIZE : (k + 1) * SLOT_SIZE]) for k in (0, 1)]
    return max((s[0], k) for k, s in enumerate(slots) if s is not None)[1]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_torn_newest_slot_falls_back_to_previous_never_older(tmp_path: Path, damage: str) -> None:
    """A crash while saving term 8 must leave term 7 (the previous durable state), for every
    possible tear of the slot being written."""
    path = tmp_path / "hardstate"
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=7, vote=2, commit=3))
        store.save(HardState(term=8, vote=None, commit=3))
    slot = _slot_of_newest(path)
    raw = path.read_bytes()
    used = 41  # bytes of a slot that carry data
    for pos in range(used):
        bad = bytearray(raw)
        if damage == "truncate":
            bad[slot * SLOT_SIZE + pos : (slot + 1) * SLOT_SIZE] = bytes(SLOT_SIZE - pos)
        else:
            bad[slot * SLOT_SIZE + pos] ^= 0x08
        path.write_bytes(bytes(bad))
        with HardStateStore(tmp_path) as store:
            got = store.load()
            assert got == HardState(term=7, vote=2, commit=3), pos
            all_zero = damage == "truncate" and pos == 0
            assert store.torn_slot == (None if all_zero else slot)
            # And the next save goes to the damaged slot, not over the good one.
            store.save(HardState(term=9, vote=1, commit=4))
        with HardStateStore(tmp_path) as store:
            assert store.load() == HardState(term=9, vote=1, commit=4)
            assert store.torn_slot is None


def test_both_slots_damaged_refuses_to_start(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=3, vote=1))
        store.save(HardState(term=4, vote=2))
    path = tmp_path / "hardstate"
    raw = bytearray(path.read_bytes())
    raw[10] ^= 1
    raw[SLOT_SIZE + 10] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptHardStateError, match="term 0"):
        HardStateStore(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(CorruptHardStateError):
        HardStateStore(tmp_path)


def test_commit_only_saves_may_skip_fsync_but_term_changes_never_do(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=5, vote=1, commit=1))
        store.save(HardState(term=5, vote=1, commit=9), sync=False)
        assert store.durable == HardState(term=5, vote=1, commit=1)
        assert store.load() == HardState(term=5, vote=1, commit=9)
        store.save(HardState(term=5, vote=1, commit=10), sync=False)
        # A term change is synced even if the caller asked not to.
        store.save(HardState(term=6, vote=None, commit=10), sync=False)
        assert store.durable == HardState(term=6, vote=None, commit=10)
        store.save(HardState(term=6, vote=None, commit=12), sync=False)
        store.sync()
        assert store.durable == HardState(term=6, vote=None, commit=12)
    with HardStateStore(tmp_path) as store:
        assert store.load() == HardState(term=6, vote=None, commit=12)


def test_unsynced_saves_never_overwrite_the_durable_slot(tmp_path: Path) -> None:
    """Several commit-only saves in a row all go to the same (non-durable) slot: if they
    alternated, two unsynced writes could clobber both slots and lose the durable term."""
    path = tmp_path / "hardstate"
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=5, vote=1, commit=1))
        store.save(HardState(term=6, vote=2, commit=1))
        durable_slot = _slot_of_newest(path)
        before = path.read_bytes()[durable_slot * SLOT_SIZE : (durable_slot + 1) * SLOT_SIZE]
        for c in range(2, 8):
            store.save(HardState(term=6, vote=2, commit=c), sync=False)
            now = path.read_bytes()[durable_slot * SLOT_SIZE : (durable_slot + 1) * SLOT_SIZE]
            assert now == before


def test_out_of_range_values_are_rejected(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store, pytest.raises(ValueError):
        store.save(HardState(term=-1))


def test_resaving_an_unsynced_state_with_sync_makes_it_durable(tmp_path: Path) -> None:
    with HardStateStore(tmp_path) as store:
        store.save(HardState(term=2, vote=1, commit=1))
        store.save(HardState(term=2, vote=1, commit=5), sync=False)
        store.save(HardState(term=2, vote=1, commit=5))
        assert store.durable == HardState(term=2, vote=1, commit=5)
