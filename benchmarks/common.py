"""What every benchmark shares: where results go, how latencies are summarized, progress.

Every benchmark module has ``run(quick: bool) -> dict`` (JSON-able, also saved as
``results/<name>.json``) and a ``main()`` taking ``--quick``; ``python -m benchmarks.run_all``
runs them all and draws the plots. A throughput point is always the same shape (see
:func:`point`), whichever system produced it, so plots and tables treat raftsql and its
peers alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CLIENTS = [1, 4, 16, 64, 256]
QUICK_CLIENTS = [1, 4]
CDF_QUANTILES = [i / 100 for i in range(1, 100)] + [0.995, 0.999]
"""The quantiles a latency CDF is kept at (wrk's Lua ``done`` hook can report the same)."""


def progress(message: str) -> None:
    """One line of progress on stderr, timestamped, so a long run shows it is alive."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_timed_main(
    doc: str | None, run: Callable[[bool, float | None], Any], each: str, quick_s: float
) -> None:
    """The command line of a benchmark whose only knobs are ``--quick`` and
    ``--duration`` (seconds per ``each``, 2 by default): parse them and call ``run``."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"smoke run: {quick_s:g} s per {each}")
    p.add_argument("--duration", type=float, help=f"seconds per {each} (default 2)")
    args = p.parse_args()
    run(args.quick, args.duration)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted samples (nearest rank)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def point(
    system: str,
    workload: str,
    clients: int,
    ops: int,
    seconds: float,
    latencies_s: Sequence[float] | None = None,
    cdf_ms: Sequence[tuple[float, float]] | None = None,
    errors: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """One measured point: throughput, p50/p99 and a CDF (quantile, ms).

    Give either raw ``latencies_s`` (seconds) or a ready ``cdf_ms`` (from wrk).
    """
    if cdf_ms is None:
        ordered = sorted(latencies_s or [])
        cdf_ms = [(q, quantile(ordered, q) * 1000) for q in CDF_QUANTILES] if ordered else []
    lookup = dict(cdf_ms)
    return {
        "system": system,
        "workload": workload,
        "clients": clients,
        "ops": ops,
        "seconds": round(seconds, 3),
        "ops_per_s": round(ops / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(lookup.get(0.5, math.nan), 3),
        "p99_ms": round(lookup.get(0.99, math.nan), 3),
        "errors": errors,
        "cdf_ms": [[q, round(ms, 4)] for q, ms in cdf_ms],
        **extra,
    }


def describe(p: dict[str, Any]) -> str:
    return (
        f"{p['system']:>10} {p['workload']:<22} clients={p['clients']:<4} "
        f"{p['ops_per_s']:>10,.0f} ops/s  p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} ms"
        + (f"  errors={p['errors']}" if p.get("errors") else "")
    )


def machine() -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(name: str, data: dict[str, Any], quick: bool = False) -> Path:
    """Write ``results/<name>.json`` (``<name>.quick.json`` for smoke runs, so a smoke run
    never overwrites real figures)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    path.write_text(json.dumps({"machine": machine(), **data}, indent=1) + "\n")
    progress(f"saved {path}")
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.01) -> Any:
    """Poll ``check`` until it returns something other than None; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while a peer cluster runs, so ``finally`` blocks
    stop it also when the benchmark is terminated (Ctrl-C already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
