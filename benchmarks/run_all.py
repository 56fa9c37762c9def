"""Every benchmark in one command, then the plots and the summary table.

The steps run in a fixed order (the machine's limits and raftsql's work per write, then the
peers and the floors against PySyncObj in turns, then raftsql) so that
etcd, PySyncObj and raftsql are measured minutes apart in the same run: on a shared, noisy
machine, ratios between figures taken hours apart would mostly measure the neighbours.

A step that raises, or whose result shows failed requests or lost writes, is reported and
the others still run; the command then exits non-zero naming it, because a benchmark that
failed must not look like one that passed.

With ``--repeat N`` the throughput steps (limits, peers, raftsql load) run N rounds,
interleaved (all of them, then all again), and each point keeps its median round by
ops/s; ``runs_ops_per_s`` lists every round's figure, so the spread is visible.

    python -m benchmarks.run_all [--quick] [--only limits,raftsql_load] [--memory] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import common

STEPS = [
    "limits",
    "write_work",
    "peers_etcd",
    "peers_pysyncobj",
    "paired_floor",
    "raftsql_load",
    "paired_etcd",
    "failover",
    "catchup",
]
REPEATABLE = {"limits", "peers_etcd", "peers_pysyncobj", "raftsql_load"}
MEMORY = "memory_flat"
"""Only with --memory (or --only): a full run of it takes about 15 minutes."""
ERROR_CHARS = 300
"""Failure reasons are cut to this in the final list; the full traceback was printed."""


@dataclass(frozen=True)
class Outcome:
    name: str
    seconds: float
    error: str | None = None


def problems(data: dict[str, Any]) -> list[str]:
    """What makes a result that came back normally still a failure.

    A point with no successful ops or with error answers measures a failure path, not the
    system; a failover run that lost or duplicated an acknowledged write is a correctness
    failure whatever its timings say.
    """
    found = []
    for p in data.get("points", []):
        where = f"{p['system']} {p['workload']} at {p['clients']} clients"
        if p["ops"] <= 0:
            found.append(f"{where}: no successful ops")
        if p.get("errors"):
            found.append(f"{where}: {p['errors']} errors")
    verification = data.get("verification")
    if verification is not None and not verification.get("ok"):
        found.append("acknowledged writes lost or duplicated (see 'verification')")
    return found


def attempt(name: str, action: Callable[[], Any]) -> Outcome:
    """Run ``action``, timing it; an exception becomes the outcome's error, after its
    traceback is printed, so that one broken step does not stop the others."""
    started = time.monotonic()
    try:
        result = action()
        error = "; ".join(problems(result)) if isinstance(result, dict) else ""
    except Exception as exc:
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    return Outcome(name, seconds, error[:ERROR_CHARS] or None)


def benchmark(name: str, quick: bool, results: list[dict[str, Any]]) -> Callable[[], Any]:
    """The step running ``benchmarks.<name>.run(quick=...)``, its result appended to
    ``results``; imported only when run, so a missing dependency fails that step alone."""

    def step() -> Any:
        result = importlib.import_module(f"benchmarks.{name}").run(quick=quick)
        results.append(result)
        return result

    return step


def median_of_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds of a step: each point (system, workload, clients)
    is the round with the median ops/s (the lower one of an even count), with every
    round's ops/s beside it. The rest of the result is the last round's."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rounds:
        for p in r.get("points", []):
            groups.setdefault((p["system"], p["workload"], p["clients"]), []).append(p)
    points = []
    for same in groups.values():
        ordered = sorted(same, key=lambda p: p["ops_per_s"])
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        chosen["runs_ops_per_s"] = [p["ops_per_s"] for p in same]
        points.append(chosen)
    merged = {k: v for k, v in rounds[-1].items() if k != "machine"}
    merged.update(points=points, rounds=len(rounds))
    return merged


def select(only: str | None, memory: bool) -> list[str]:
    """The steps to run, always in the canonical order."""
    known = [*STEPS, MEMORY]
    if not only:
        return STEPS + ([MEMORY] if memory else [])
    wanted = {n.strip() for n in only.split(",") if n.strip()}
    unknown = wanted - set(known)
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {known}")
    return [n for n in known if n in wanted]


def run_steps(names: Sequence[str], quick: bool, began: float, repeat: int = 1) -> list[Outcome]:
    outcomes = []
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(1, repeat + 1):
        todo = [n for n in names if n in REPEATABLE or round_ == repeat]
        for i, name in enumerate(todo, 1):
            tag = f"[round {round_}/{repeat}, {i}/{len(todo)}] {name}"
            common.progress(f"{tag}: starting ({time.monotonic() - began:.0f} s elapsed)")
            outcome = attempt(name, benchmark(name, quick, results[name]))
            state = "FAILED" if outcome.error else "done"
            common.progress(f"{tag}: {state} in {outcome.seconds:.1f} s")
            outcomes.append(outcome)
    for name, rounds in results.items():
        if len(rounds) > 1:
            common.save(name, median_of_rounds(rounds), quick)
    return outcomes


def plots_step(quick: bool, failed: Sequence[str]) -> tuple[Outcome, str]:
    """Draw the figures and write the summary (naming the ``failed`` steps); the summary
    text, or '' if drawing failed."""
    from benchmarks import plots  # matplotlib is imported only once the benchmarks are done

    text: list[str] = []

    def draw() -> None:
        plots.draw_all(quick)
        text.append(plots.write_summary(quick, failed=failed))

    return attempt("plots", draw), "".join(text)


def report(outcomes: Sequence[Outcome], total: float) -> None:
    """How long each step took, and which failed and why (on stderr, with the progress)."""
    for o in outcomes:
        common.progress(f"  {o.name:<16} {o.seconds:7.1f} s  {'FAILED' if o.error else 'ok'}")
    common.progress(f"  {'total':<16} {total:7.1f} s")
    for o in outcomes:
        if o.error:
            common.progress(f"FAILED {o.name}: {o.error}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join([*STEPS, MEMORY])}")
    p.add_argument("--memory", action="store_true", help=f"also run {MEMORY} (~15 min)")
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds of the throughput steps (median kept)"
    )
    args = p.parse_args(argv)
    try:
        names = select(args.only, args.memory)
    except ValueError as exc:
        p.error(str(exc))
    began = time.monotonic()
    outcomes = run_steps(names, args.quick, began, max(1, args.repeat))
    drawn, text = plots_step(args.quick, [o.name for o in outcomes if o.error])
    outcomes.append(drawn)
    if text:
        print(text, flush=True)
    report(outcomes, time.monotonic() - began)
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
