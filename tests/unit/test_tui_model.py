"""The TUI's health rules, from canned statuses: no cluster, no screen, no clock."""

from __future__ import annotations

import pytest

from tui.model import (
    DEGRADED,
    HEALTHY,
    LAG_THRESHOLD,
    UNAVAILABLE,
    build_view,
    compute_rates,
    compute_rows,
    format_uptime,
    latency_p99,
)
from tui.source import fake_poll
from tui.source import fake_status as fs

pytestmark = pytest.mark.timeout(30)


def test_all_healthy() -> None:
    view = build_view(None, fake_poll(1.0, [fs(1), fs(2), fs(3)]))
    assert view.verdict.level == HEALTHY
    assert view.verdict.reasons == ()
    assert "leader node 1" in view.verdict.summary
    assert [r.node_id for r in view.rows] == [1, 2, 3]
    assert [r.is_leader for r in view.rows] == [True, False, False]
    assert all(r.reachable and r.lag == 0 and not r.lagging for r in view.rows)
    assert view.rows[1].log_range == "1..120"
    assert view.leader is not None and view.leader.node_id == 1
    assert len(view.events) == 1 and "watching 3 nodes" in view.events[0].text


def test_one_follower_down_is_degraded_and_named() -> None:
    view = build_view(None, fake_poll(1.0, [fs(1), fs(2), None]))
    assert view.verdict.level == DEGRADED
    assert view.verdict.reasons == ("node 3 (127.0.0.1:7003) unreachable",)
    down = view.rows[2]
    assert down.node_id == 3  # learned from the peers of the nodes that answered
    assert not down.reachable and down.role == "-"
    assert down.error and "refused" in down.error


def test_two_of_three_down_is_unavailable() -> None:
    view = build_view(None, fake_poll(1.0, [None, fs(2, role="candidate", leader=None), None]))
    assert view.verdict.level == UNAVAILABLE
    assert "no quorum: 1 of 3 nodes reachable, 2 needed" in view.verdict.summary
    assert len(view.verdict.reasons) == 2
    assert "node 1 (127.0.0.1:7001) unreachable" in view.verdict.reasons


def test_everything_down_is_unavailable() -> None:
    view = build_view(None, fake_poll(1.0, [None, None, None]))
    assert view.verdict.level == UNAVAILABLE
    assert "no node reachable" in view.verdict.summary
    assert [r.node_id for r in view.rows] == [None, None, None]


def test_quorum_but_no_leader_is_unavailable() -> None:
    statuses = [fs(1, leader=None, role="candidate", term=4), fs(2, leader=None), None]
    view = build_view(None, fake_poll(1.0, statuses))
    assert view.verdict.level == UNAVAILABLE
    assert "no leader" in view.verdict.summary
    assert view.leader is None


def test_lagging_follower_is_degraded() -> None:
    leader = fs(1, commit=1000, match={2: 1000, 3: 400})
    view = build_view(None, fake_poll(1.0, [leader, fs(2, commit=1000), fs(3, commit=400)]))
    assert view.verdict.level == DEGRADED
    assert view.verdict.reasons == ("node 3 (127.0.0.1:7003) lags 600 entries behind the leader",)
    assert view.rows[2].lag == 600 and view.rows[2].lagging
    assert view.rows[1].lag == 0 and not view.rows[1].lagging


def test_a_spare_followers_lag_of_a_tick_is_not_degraded_but_a_runaway_one_is() -> None:
    """Quorum-first replication: the spare is sent entries once a tick, so under a heavy
    load it trails by hundreds of entries while healthy."""
    leader = fs(1, commit=1000, match={2: 1000, 3: 400}, spares=(3,))
    view = build_view(None, fake_poll(1.0, [leader, fs(2, commit=1000), fs(3, commit=400)]))
    assert view.verdict.level == HEALTHY
    assert view.rows[2].lag == 600 and view.rows[2].spare and not view.rows[2].lagging
    leader = fs(1, commit=5000, match={2: 5000, 3: 400}, spares=(3,))
    view = build_view(None, fake_poll(1.0, [leader, fs(2, commit=5000), fs(3, commit=400)]))
    assert view.verdict.level == DEGRADED and view.rows[2].lagging


def test_lag_falls_back_to_commit_minus_applied_without_progress() -> None:
    leader = fs(1, commit=500)
    leader["progress"] = {}
    view = build_view(None, fake_poll(1.0, [leader, fs(2, commit=500, applied=490), fs(3)]))
    assert view.rows[1].lag == 10


def test_old_leader_at_lower_term_is_not_the_leader() -> None:
    stale = fs(1, term=3)
    new = fs(2, leader=2, term=4)
    view = build_view(None, fake_poll(1.0, [stale, new, fs(3, leader=2, term=4)]))
    assert view.leader is not None and view.leader.node_id == 2
    assert view.verdict.level == DEGRADED
    assert any("node 1" in r and "leader" in r for r in view.verdict.reasons)


def test_leader_change_node_down_and_back_and_snapshot_events() -> None:
    first = build_view(None, fake_poll(1.0, [fs(1), fs(2), fs(3)]))
    second = build_view(first, fake_poll(2.0, [None, fs(2, leader=2, term=4), fs(3, leader=2)]))
    texts = [e.text for e in second.events]
    assert any("node 1 (127.0.0.1:7001) unreachable" in t for t in texts)
    assert "leader changed: node 1 -> node 2 (term 4)" in texts
    assert all(e.at == 2.0 for e in second.events)
    third = build_view(
        second,
        fake_poll(
            3.0,
            [fs(1, leader=2, term=4), fs(2, leader=2, term=4, snapshot_index=100), fs(3, leader=2)],
        ),
    )
    texts = [e.text for e in third.events]
    assert "node 1 (127.0.0.1:7001) back up as follower" in texts
    assert "node 2 (127.0.0.1:7002) snapshot at index 100" in texts
    assert not any("leader changed" in t for t in texts)


def test_verdict_change_is_an_event() -> None:
    first = build_view(None, fake_poll(1.0, [fs(1), fs(2), fs(3)]))
    second = build_view(first, fake_poll(2.0, [fs(1), None, None]))
    assert any(e.text.startswith("cluster is UNAVAILABLE") for e in second.events)
    assert any(e.level == "error" for e in second.events)


def test_writes_refused_for_overload_are_an_event() -> None:
    first = build_view(None, fake_poll(1.0, [fs(1, refused=5), fs(2), fs(3)]))
    second = build_view(first, fake_poll(2.0, [fs(1, refused=12), fs(2), fs(3)]))
    refused = [e for e in second.events if "refused" in e.text]
    assert [(e.text, e.level) for e in refused] == [
        ("node 1 (127.0.0.1:7001) refused 7 writes: overloaded", "warning")
    ]
    third = build_view(second, fake_poll(3.0, [fs(1, refused=12), fs(2), fs(3)]))
    assert third.events == []  # nothing new refused
    restarted = build_view(third, fake_poll(4.0, [fs(1, refused=0), fs(2), fs(3)]))
    assert restarted.events == []  # a counter that went back (a restart) is no refusal


def test_no_events_when_nothing_changed() -> None:
    first = build_view(None, fake_poll(1.0, [fs(1), fs(2), fs(3)]))
    assert build_view(first, fake_poll(2.0, [fs(1), fs(2), fs(3)])).events == []


def test_rates_sum_counter_deltas_and_ignore_restarts() -> None:
    a = fake_poll(10.0, [fs(1, writes=100, reads=10), fs(2, reads=50), fs(3, reads=70)])
    b = fake_poll(12.0, [fs(1, writes=140, reads=20), fs(2, reads=60), fs(3, reads=0)])
    rates = compute_rates(a, b)
    assert rates is not None
    assert rates.writes == pytest.approx(20.0)
    assert rates.reads == pytest.approx(10.0)  # node 3 restarted: its counter went back
    assert compute_rates(None, b) is None
    assert compute_rates(b, b) is None


def test_format_uptime() -> None:
    assert format_uptime(None) == "-"
    assert format_uptime(42.9) == "42s"
    assert format_uptime(303) == "5m03s"
    assert format_uptime(3723) == "1h02m"
    assert format_uptime(3 * 86400 + 7200) == "3d02h"


def test_ack_times_come_from_the_leader_and_latency_from_the_worst_node() -> None:
    statuses = [fs(i, writes=10, reads=5) for i in (1, 2, 3)]
    statuses[0]["progress"]["3"]["last_ack"] = 2.5  # the leader has not heard from 3
    statuses[1]["latency_ms"]["read"] = {"n": 5, "p50": 1.0, "p99": 42.0}
    poll = fake_poll(0.0, statuses)
    rows = {r.node_id: r for r in compute_rows(poll, LAG_THRESHOLD)}
    assert rows[1].contact is None  # the leader itself
    assert rows[2].contact == 0.05 and rows[3].contact == 2.5
    assert latency_p99(poll, "write") == 9.5
    assert latency_p99(poll, "read") == 42.0
    down = fake_poll(0.0, [None, None, None])
    assert latency_p99(down, "write") is None
