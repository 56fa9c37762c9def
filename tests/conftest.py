"""Suite-wide pytest options and the simulation summary printed at the end of a run.

``pytest_addoption`` has to live in the rootmost conftest (this one), not in tests/sim/,
or pytest rejects ``--seeds`` when it is given before it has collected tests/sim.

Simulation tests attach one-line summaries to their reports (``record_property``); they are
printed in the terminal summary because, under pytest-xdist, output printed by a test on a
worker is not shown even with ``-s``.
"""

from __future__ import annotations

import statistics

import pytest

_SUMMARY_KEYS = ("sim_summary",)
_STATS_KEY = "sim_stats"
_TICKS_KEY = "sim_ticks_to_elect"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "deterministic Raft simulation (tests/sim)")
    group.addoption(
        "--seeds",
        type=int,
        default=1000,
        help="how many seeds tests/sim/test_sim_seeds.py runs (soak: --seeds 100000)",
    )
    group.addoption(
        "--seed-start",
        type=int,
        default=0,
        help="first seed of the range (default 0)",
    )
    group.addoption(
        "--seed",
        type=int,
        default=None,
        help="run only this seed (to replay a failure); see tests/sim/simulator.py",
    )


_LINES: list[str] = []
_TOTALS: dict[str, int] = {}
_TICKS: dict[str, list[int]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the summaries the sim tests recorded (under xdist this runs on the
    controller, which receives every worker's reports with their user properties)."""
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key in _SUMMARY_KEYS:
            _LINES.append(str(value))
        elif key == _TICKS_KEY:
            label, ticks = value
            _TICKS.setdefault(str(label), []).extend(int(t) for t in ticks)
        elif key == _STATS_KEY and isinstance(value, dict):
            for name, n in value.items():
                if isinstance(n, int):
                    _TOTALS[name] = _TOTALS.get(name, 0) + n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _LINES and not _TOTALS and not _TICKS:
        return
    terminalreporter.section("raft simulation")
    for label, ticks in sorted(_TICKS.items()):
        if ticks:
            ticks.sort()
            p99 = ticks[min(len(ticks) - 1, (99 * len(ticks)) // 100)]
            median = statistics.median(ticks)
            terminalreporter.write_line(
                f"ticks-to-elect after healing, {label}: median={median} p99={p99} "
                f"max={ticks[-1]} over {len(ticks)} seeds"
            )
    if _TOTALS:
        terminalreporter.write_line(
            "seed runs, totals: " + ", ".join(f"{k}={v}" for k, v in _TOTALS.items())
        )
    for line in sorted(_LINES):
        terminalreporter.write_line(line)
