"""How repeated measurements are combined: run_all --repeat keeps, for each point, the round
with the median throughput; benchmarks.ab --bursts compares trees burst by burst, and
benchmarks.paired_etcd compares raftsql with etcd the same way; the summary calls the
single-caller target out of reach only when the paired floors say so."""

from __future__ import annotations

import statistics

from benchmarks.ab import paired_ratios
from benchmarks.common import point
from benchmarks.paired_etcd import summarize
from benchmarks.plots import SINGLE_CALLER, out_of_reach, paired_rows
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


def test_paired_etcd_reports_the_median_ratio_of_its_pairs_not_a_ratio_of_medians() -> None:
    """A slow moment hits both bursts of a pair: the pair's ratio keeps it out of the
    figure, where a ratio of each side's median would not."""
    bursts = [
        {"raftsql": 900.0, "etcd": 1000.0, "ratio": 0.9},
        {"raftsql": 500.0, "etcd": 550.0, "ratio": 500 / 550},
        {"raftsql": 950.0, "etcd": 1000.0, "ratio": 0.95},
        {"raftsql": 450.0, "etcd": 600.0, "ratio": 0.75},
    ]
    s = summarize(bursts)
    assert s["ratio_median"] == round(statistics.median(b["ratio"] for b in bursts), 3)
    assert s["ratio_q1"] == 0.75 and s["ratio_q3"] == round(500 / 550, 3)
    assert (s["raftsql_ops_per_s"], s["etcd_ops_per_s"]) == (700.0, 800.0)
    rows = paired_rows(
        {
            "pairs": [
                {
                    "what": "writes",
                    "raftsql_workload": "insert_param",
                    "etcd_workload": "put",
                    "clients": 1,
                    "bursts": bursts,
                    **s,
                }
            ]
        }
    )
    (row,) = rows
    assert row[0] == "writes at 1 client: insert_param vs etcd put (4 pairs)"
    assert row[3].startswith(f"{s['ratio_median']:.2f}") and row[5] == "NOT met"


def test_the_single_caller_target_is_called_out_of_reach_only_below_the_trio_floor() -> None:
    row = (SINGLE_CALLER, "1,390/s", "4,204/s", "0.33\u00d7", "\u2265 1\u00d7", "NOT met")

    def floors(trio: float, blocking: float = 1.01) -> dict[str, object]:
        return {
            "floors": {
                "trio_inline": {"ratio_median": trio},
                "trio_worker": {"ratio_median": trio - 0.1},
                "durable_client": {"ratio_median": blocking - 0.1},
                "followers_client": {"ratio_median": blocking},
            }
        }

    below = out_of_reach(row, floors(0.60))
    assert below[:5] == row[:5]
    assert below[5].startswith("NOT met: out of reach for a trio node here")
    assert "0.60" in below[5] and "1.01" in below[5]  # the best of each kind
    assert out_of_reach(row, floors(1.05)) == row  # a trio node has room: just not met
    assert out_of_reach(row, None) == row  # no paired floors measured
    met = (*row[:5], "met")
    assert out_of_reach(met, floors(0.60)) == met
