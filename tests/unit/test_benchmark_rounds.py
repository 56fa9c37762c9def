"""How repeated measurements are combined: run_all --repeat keeps, for each point, the round
with the median throughput; benchmarks.ab --bursts compares trees burst by burst."""

from __future__ import annotations

from benchmarks.ab import paired_ratios
from benchmarks.common import point
from benchmarks.run_all import median_of_rounds


def _round(ops: dict[int, int]) -> dict[str, object]:
    return {"points": [point("x", "w", c, n, 1.0, [0.001] * 3) for c, n in ops.items()]}


def test_each_point_is_its_median_round_with_every_round_listed() -> None:
    merged = median_of_rounds(
        [_round({1: 300, 16: 900}), _round({1: 100, 16: 800}), _round({1: 200, 16: 1000})]
    )
    by_clients = {p["clients"]: p for p in merged["points"]}
    assert by_clients[1]["ops_per_s"] == 200 and by_clients[16]["ops_per_s"] == 900
    assert by_clients[1]["runs_ops_per_s"] == [300, 100, 200]
    assert merged["rounds"] == 3


def test_an_even_count_keeps_the_lower_middle_round() -> None:
    merged = median_of_rounds([_round({4: 500}), _round({4: 700})])
    assert merged["points"][0]["ops_per_s"] == 500


def test_ab_bursts_are_compared_pair_by_pair() -> None:
    """Each burst is divided by the first tree's burst of the same set (taken seconds
    apart), not by a median over the whole run; a burst with no figure is left out."""
    points = {
        "base": [{"x": 100.0}, {"x": 200.0}, {"x": 50.0}],
        "new": [{"x": 110.0}, {"x": 220.0}, {"x": None}],
    }
    ratios = paired_ratios(points, "x")
    assert ratios["base"] == [1.0, 1.0, 1.0]
    assert [round(r, 6) for r in ratios["new"]] == [1.1, 1.1]
