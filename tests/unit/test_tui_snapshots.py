"""Screenshots of the TUI from scripted polls (pytest-textual-snapshot).

Everything on screen comes from the FakeSource: fixed timestamps, uptimes and counters,
and a clock that prints UTC, so the pictures do not depend on the machine or time zone.
Regenerate after an intended change with ``pytest tests/unit/test_tui_snapshots.py
--snapshot-update`` and review the SVGs in the report.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import DataTable

from tui.app import ClusterApp, ConfirmScreen, HelpScreen
from tui.source import FakeSource, fake_poll
from tui.source import fake_status as fs

pytestmark = pytest.mark.timeout(60)

SIZE = (130, 34)


def utc(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def degraded_app() -> ClusterApp:
    """Three polls: healthy, then node 3 down while node 2 lags behind."""
    t0 = 1_700_000_000.0
    script = [
        fake_poll(t0, [fs(1, writes=100, reads=40), fs(2), fs(3)]),
        fake_poll(
            t0 + 1,
            [fs(1, writes=130, reads=90, commit=150), fs(2, commit=150), fs(3, commit=150)],
        ),
        fake_poll(
            t0 + 2,
            [
                fs(1, writes=180, reads=120, commit=400, match={2: 250}, snapshot_index=300),
                fs(2, commit=250),
                None,
            ],
        ),
    ]
    return ClusterApp(FakeSource(script), interval=0.01, clock=utc)


async def settle(pilot: Pilot[None]) -> None:
    """Wait (bounded) until the app drew every scripted poll, the table measured its new
    cells and the screen stopped changing. The DataTable widens its columns on an idle
    event after the poll: on a loaded machine a pause, and even 20 ms without a change,
    came before it (CI runs caught "unrea" for "unreachable", once under a modal)."""
    app = pilot.app
    assert isinstance(app, ClusterApp)
    for _ in range(200):
        if app.polls >= len(app.source.script):  # type: ignore[attr-defined]
            break
        await pilot.pause(0.02)
    assert app.polls == 3
    table = app.query_one("#nodes", DataTable)
    for _ in range(200):
        # Textual keeps these until its idle handler has measured the updated cells
        if not table._updated_cells and not table._require_update_dimensions:
            break
        await pilot.pause(0.02)
    assert not table._updated_cells and not table._require_update_dimensions
    await until_still(pilot)


async def until_still(pilot: Pilot[None]) -> None:
    """Until two screenshots 20 ms apart are the same (bounded: 200 tries)."""
    before = pilot.app.export_screenshot()
    for _ in range(200):
        await pilot.pause(0.02)
        now = pilot.app.export_screenshot()
        if now == before:
            return
        before = now
    raise AssertionError("the screen never stopped changing")


async def settle_modal(pilot: Pilot[None], screen: type[ModalScreen[Any]]) -> None:
    """Wait (bounded) until ``screen`` is up and drawn: on a loaded machine one pause was
    not always enough, and the picture caught the modal half-drawn."""
    for _ in range(200):
        if isinstance(pilot.app.screen, screen):
            break
        await pilot.pause(0.02)
    assert isinstance(pilot.app.screen, screen)
    await pilot.wait_for_scheduled_animations()
    await until_still(pilot)


def test_main_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(degraded_app(), terminal_size=SIZE, run_before=settle)


def test_help_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_help(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle_modal(pilot, HelpScreen)

    assert snap_compare(degraded_app(), terminal_size=SIZE, run_before=open_help)


def test_confirm_transfer_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def ask(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("down", "t")
        await settle_modal(pilot, ConfirmScreen)

    assert snap_compare(degraded_app(), terminal_size=SIZE, run_before=ask)


def test_the_leaders_spare_follower_is_marked_in_the_role_column() -> None:
    """(Textual runs on asyncio, this suite in trio mode: a sync test with asyncio.run.)"""
    t0 = 1_700_000_000.0
    polls = [fake_poll(t0 + k, [fs(1, spares=(3,)), fs(2), fs(3)]) for k in range(3)]
    app = ClusterApp(FakeSource(polls), interval=0.01, clock=utc)
    roles: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            table = app.query_one("#nodes", DataTable)
            roles.extend(str(table.get_row_at(i)[2]) for i in range(table.row_count))

    asyncio.run(scenario())
    assert roles == ["leader", "follower", "follower (spare)"]
