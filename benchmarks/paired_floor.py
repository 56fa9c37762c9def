"""PySyncObj's synchronous caller against the durable replication floor, in paired turns.

The single-caller target compares raftsql with PySyncObj's ``set_sync_single``, which
never fsyncs. ``replication_floor``'s ``durable_client`` is the least a durable
client-server design must pay per write here; if PySyncObj's caller were as fast as that
floor, no such design could meet the target. Both vary by ±20% from minute to minute on
this machine, so they are measured in turns, seconds apart (the order alternating), and
compared pair by pair: the median of the ratios floor / PySyncObj says how much room the
target leaves a durable server for its own work per write.

    python -m benchmarks.paired_floor [--pairs 10] [--seconds 2] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common, peers_pysyncobj, replication_floor

FLOOR = "durable_client"
PYSYNCOBJ = peers_pysyncobj.WORKLOADS[0]
"""``set_sync_single``: one synchronous caller, ``appendEntriesUseBatch=False``."""


def run(pairs: int, seconds: float, quick: bool = False) -> dict[str, Any]:
    """``pairs`` turns of each, alternating which goes first; saves and returns them."""
    assert PYSYNCOBJ.inflight == 0 and not PYSYNCOBJ.journal, PYSYNCOBJ
    directory = Path(tempfile.mkdtemp(prefix="raftsql-paired-floor-", dir=tempfile.gettempdir()))
    results: list[dict[str, float]] = []
    try:
        for i in range(pairs):
            got: dict[str, float] = {}
            for who in ("floor", "pysyncobj") if i % 2 == 0 else ("pysyncobj", "floor"):
                if who == "floor":
                    point = replication_floor.measure(directory, FLOOR, seconds)
                else:
                    point = peers_pysyncobj.measure(directory, PYSYNCOBJ, seconds)
                got[who] = point["ops_per_s"]
            got["ratio"] = got["floor"] / got["pysyncobj"]
            results.append(got)
            common.progress(
                f"pair {i + 1}/{pairs}: floor {got['floor']:,.0f}/s, PySyncObj "
                f"{got['pysyncobj']:,.0f}/s, floor / PySyncObj {got['ratio']:.2f}"
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ratios = sorted(p["ratio"] for p in results)
    data = {
        "floor_variant": FLOOR,
        "pysyncobj_workload": PYSYNCOBJ.name,
        "seconds": seconds,
        "pairs": results,
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_q1": round(common.quantile(ratios, 0.25), 3),
        "ratio_q3": round(common.quantile(ratios, 0.75), 3),
    }
    common.progress(
        f"floor / PySyncObj set_sync_single: median {data['ratio_median']:.2f} "
        f"[{data['ratio_q1']:.2f}-{data['ratio_q3']:.2f}] over {pairs} pairs"
    )
    common.save("paired_floor", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per turn")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 pair of 0.3 s turns")
    args = p.parse_args()
    if args.quick:
        run(1, 0.3, quick=True)
    else:
        run(args.pairs, args.seconds)


if __name__ == "__main__":
    main()
