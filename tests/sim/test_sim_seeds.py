"""Safety and liveness over many seeded runs of a 3- or 5-node cluster with every fault on.

The seeds are split into batches of ``BATCH`` so that pytest-xdist spreads them over the
workers. ``--seeds N`` sets how many (``pytest tests/sim --seeds 100000`` for a soak),
``--seed-start`` where they begin, and ``--seed S`` replays a single seed. A failure names
every failing seed of its batch and shows the first one's trace; replay it with
``PYTHONPATH=. python -m tests.sim.simulator S --trace 300``.
"""

from __future__ import annotations

import pytest

from .simulator import SimStats, SimulationFailure, run_seed, sum_stats

BATCH = 25


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed_range" not in metafunc.fixturenames:
        return
    config = metafunc.config
    one = config.getoption("--seed")
    if one is not None:
        ranges = [(one, one + 1)]
    else:
        start, total = config.getoption("--seed-start"), config.getoption("--seeds")
        end = start + total
        ranges = [(lo, min(lo + BATCH, end)) for lo in range(start, end, BATCH)]
    metafunc.parametrize("seed_range", ranges, ids=[f"seeds{lo}-{hi - 1}" for lo, hi in ranges])


def _check_not_vacuous(runs: list[SimStats]) -> None:
    """A batch in which nothing was written, read, crashed or installed proves nothing:
    make sure every kind of event the invariants are about actually happened."""
    totals = sum_stats(runs)
    for counter in (
        "writes_acked",
        "reads_served",
        "leaders_elected",
        "crashes",
        "mid_ready_crashes",
        "restarts",
        "partitions",
        "msgs_dropped",
        "msgs_duplicated",
        "transfers_requested",
        "snapshots_taken",
        "snapshots_installed",
        "early_commits",
    ):
        assert totals[counter] > 0, f"no {counter} in seeds {runs[0].seed}..{runs[-1].seed}"
    assert totals["leaders_elected"] > len(runs), "hardly any leader changes"


@pytest.mark.timeout(900)
def test_seeds(seed_range: tuple[int, int], record_property: pytest.RecordProperty) -> None:
    lo, hi = seed_range
    print(f"simulating seeds {lo}..{hi - 1}")
    runs: list[SimStats] = []
    failures: list[SimulationFailure] = []
    for seed in range(lo, hi):
        try:
            runs.append(run_seed(seed))
        except SimulationFailure as e:
            failures.append(e)
    if failures:
        seeds = ", ".join(f"{f.seed} ({f.invariant})" for f in failures)
        raise AssertionError(
            f"{len(failures)} of {hi - lo} seeds failed: {seeds}\n\nfirst failure:\n{failures[0]}"
        )
    record_property("sim_stats", sum_stats(runs))
    elect = [r.ticks_to_elect for r in runs if r.ticks_to_elect is not None]
    record_property("sim_ticks_to_elect", ("standard runs (test_sim_seeds)", elect))
    if hi - lo >= BATCH:
        _check_not_vacuous(runs)
