"""The TUI against a real local cluster, driven through Textual's Pilot.

Textual runs on asyncio while this suite runs trio_mode, so each test is a plain sync test
that runs its scenario with ``asyncio.run``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from raftsql.cluster import LocalCluster
from tui.app import ClusterApp, ConfirmScreen
from tui.model import DEGRADED, HEALTHY, UNAVAILABLE
from tui.source import ClusterSource

pytestmark = pytest.mark.timeout(120)


async def wait_until(
    pilot: Pilot[None], check: Callable[[], bool], what: str, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            app = pilot.app
            view = app.view if isinstance(app, ClusterApp) else None
            raise AssertionError(
                f"not {what} within {timeout}s; last verdict: {view and view.verdict}"
            )
        await pilot.pause(0.1)


def make_app(cluster: LocalCluster) -> ClusterApp:
    return ClusterApp(ClusterSource(",".join(cluster.addresses()), timeout=0.5), interval=0.3)


def level(app: ClusterApp) -> str | None:
    return app.view.verdict.level if app.view else None


def test_killed_nodes_turn_unreachable_then_unavailable_then_recover(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: LocalCluster = make_cluster()
    leader = cluster.wait_for_leader()
    follower, other = (i for i in sorted(cluster.ports) if i != leader)

    async def scenario() -> None:
        app = make_app(cluster)
        async with app.run_test(size=(130, 36)) as pilot:
            await wait_until(pilot, lambda: level(app) == HEALTHY, "healthy")

            cluster.kill(follower)
            await wait_until(pilot, lambda: level(app) == DEGRADED, "degraded")
            assert app.view is not None
            row = next(r for r in app.view.rows if r.node_id == follower)
            assert not row.reachable
            assert f"node {follower} ({cluster.address(follower)}) unreachable" in (
                app.view.verdict.reasons
            )
            assert any(f"node {follower}" in e.text and "unreachable" in e.text for e in app.events)

            cluster.kill(other)
            await wait_until(pilot, lambda: level(app) == UNAVAILABLE, "unavailable")
            assert app.view is not None
            assert sum(r.reachable for r in app.view.rows) == 1

            # The screen keeps answering while the cluster is down...
            await pilot.press("question_mark")
            await pilot.press("escape")
            # ...and recovers when the nodes come back.
            cluster.start_node(follower)
            cluster.start_node(other)
            await wait_until(pilot, lambda: level(app) == HEALTHY, "healthy again", 40.0)
            assert all(r.reachable for r in app.view.rows)

    asyncio.run(scenario())


def test_transfer_leadership_from_the_ui(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: LocalCluster = make_cluster()
    leader = cluster.wait_for_leader()
    target = next(i for i in sorted(cluster.ports) if i != leader)

    async def scenario() -> None:
        app = make_app(cluster)
        async with app.run_test(size=(130, 36)) as pilot:
            await wait_until(pilot, lambda: level(app) == HEALTHY, "healthy")
            assert app.view is not None and app.view.leader is not None
            assert app.view.leader.node_id == leader
            # Rows are ordered by node id: move the cursor to the target's row.
            index = [r.node_id for r in app.view.rows].index(target)
            await pilot.press("home", *(["down"] * index))
            selected = app.selected_row()
            assert selected is not None and selected.node_id == target
            await pilot.press("t")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked")
            await pilot.press("y")

            def led_by_target() -> bool:
                return bool(app.view and app.view.leader and app.view.leader.node_id == target)

            await wait_until(pilot, led_by_target, f"led by node {target}", 30.0)
            assert any(f"-> node {target}" in e.text for e in app.events)

    asyncio.run(scenario())
