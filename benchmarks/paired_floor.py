"""PySyncObj's synchronous caller against the durable replication floors, in turns.

The single-caller target compares raftsql with PySyncObj's ``set_sync_single``, which
never fsyncs. ``replication_floor``'s ``durable_client`` is the least a durable
client-server design must pay per write here (``durable_in_leader``: with the caller
inside the leader, as PySyncObj's is; ``followers_client``: the two followers as the
majority, the leader's copy unsynced); ``trio_floor``'s ``trio_worker`` is the least a
durable design shaped like raftsql's (trio event loops, fsyncs in a worker thread) must
pay (``trio_inline``: any trio node, even one that blocks its loop on the fsync). If
PySyncObj's caller is faster than a floor, no design of that kind can meet the target,
whatever work it leaves out. All of them vary by ±20% from minute to minute on this
machine, and not together (PySyncObj's caller is CPU-bound, the floors fsync-bound), so
each round measures every one, seconds apart (the order rotating), and they are compared
round by round: the median of the ratios floor / PySyncObj says how much room (or how
little) the target leaves a design of that kind for its own work.

    python -m benchmarks.paired_floor [--pairs 10] [--seconds 2] [--quick]

(``run_all`` runs it with 10 rounds.)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common, peers_pysyncobj, replication_floor, trio_floor

FLOORS: dict[str, Callable[[Path, str, float], dict[str, Any]]] = {
    "durable_client": replication_floor.measure,
    "durable_in_leader": replication_floor.measure,
    "followers_client": replication_floor.measure,
    "trio_inline": trio_floor.measure,
    "trio_worker": trio_floor.measure,
}
"""The floors measured in each round, by variant, with the function that measures each."""
PYSYNCOBJ = peers_pysyncobj.WORKLOADS[0]
"""``set_sync_single``: one synchronous caller, ``appendEntriesUseBatch=False``."""


def run(quick: bool = False, pairs: int = 10, seconds: float = 2.0) -> dict[str, Any]:
    """``pairs`` rounds of every floor and PySyncObj, the order rotating from round to
    round; saves and returns them, with each floor's ratios to PySyncObj. ``quick``: one
    round of 0.3 s turns (a smoke run)."""
    if quick:
        pairs, seconds = 1, 0.3
    assert PYSYNCOBJ.inflight == 0 and not PYSYNCOBJ.journal, PYSYNCOBJ
    directory = Path(tempfile.mkdtemp(prefix="raftsql-paired-floor-", dir=tempfile.gettempdir()))
    turns = [*FLOORS, "pysyncobj"]
    results: list[dict[str, float]] = []
    try:
        for i in range(pairs):
            got: dict[str, float] = {}
            for who in turns[i % len(turns) :] + turns[: i % len(turns)]:
                if who == "pysyncobj":
                    point = peers_pysyncobj.measure(directory, PYSYNCOBJ, seconds)
                else:
                    point = FLOORS[who](directory, who, seconds)
                got[who] = point["ops_per_s"]
            results.append(got)
            common.progress(
                f"round {i + 1}/{pairs}: PySyncObj {got['pysyncobj']:,.0f}/s, "
                + ", ".join(
                    f"{floor} {got[floor]:,.0f}/s ({got[floor] / got['pysyncobj']:.2f}x)"
                    for floor in FLOORS
                )
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    floors: dict[str, dict[str, float]] = {}
    for floor in FLOORS:
        ratios = sorted(p[floor] / p["pysyncobj"] for p in results)
        # the room: PySyncObj's time per write minus the floor's (negative: none at all)
        rooms = sorted(1e6 / p["pysyncobj"] - 1e6 / p[floor] for p in results)
        floors[floor] = {
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_q1": round(common.quantile(ratios, 0.25), 3),
            "ratio_q3": round(common.quantile(ratios, 0.75), 3),
            "room_us_median": round(statistics.median(rooms), 1),
            "room_us_q1": round(common.quantile(rooms, 0.25), 1),
            "room_us_q3": round(common.quantile(rooms, 0.75), 1),
        }
        f = floors[floor]
        common.progress(
            f"{floor} / PySyncObj set_sync_single: median {f['ratio_median']:.2f} "
            f"[{f['ratio_q1']:.2f}-{f['ratio_q3']:.2f}] over {pairs} rounds; room per write "
            f"{f['room_us_median']:.0f} us [{f['room_us_q1']:.0f} to {f['room_us_q3']:.0f}]"
        )
    data = {
        "pysyncobj_workload": PYSYNCOBJ.name,
        "seconds": seconds,
        "pairs": results,
        "floors": floors,
    }
    common.save("paired_floor", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--pairs", type=int, default=10, help="rounds")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per turn")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 0.3 s turns")
    args = p.parse_args()
    run(args.quick, args.pairs, args.seconds)


if __name__ == "__main__":
    main()
