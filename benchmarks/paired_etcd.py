"""raftsql against etcd in paired bursts: the target ratios with the machine's drift taken out.

``run_all`` measures etcd and raftsql minutes apart, and on this shared machine a whole
round swings by ±15% from one to the next (etcd's own rounds went from 716 to 1,056 puts/s
at one client in one run): a ratio of two such medians can be off by 0.1 either way. Here
a 3-member etcd cluster and a raftsql cluster run at once, idle but for the one whose turn
it is, and take turns in short bursts (the order alternating): wrk against etcd's JSON
gateway, the C load generator against raftsql, both closed loop, both cold (no warm-up).
Each raftsql burst is divided by the etcd burst next to it, seconds apart; the median of
those paired ratios, with its quartiles, is the figure, for each target of issue 6:

- writes (single-row parameterized INSERT against ``/v3/kv/put``, 100-byte values, fsync
  on both) at 1, 16 and 64 clients;
- linearizable reads at 64 clients (point SELECT by key, on the leader, then spread over
  the followers, against a linearizable ``/v3/kv/range`` on etcd's leader).

Prints each pair as it ends, then the table; saves ``results/paired_etcd.json``.

    python -m benchmarks.paired_etcd [--quick] [--bursts 15] [--burst-seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common, peers_etcd
from benchmarks.ab import TreeCluster

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pair:
    what: str
    raftsql: str  # a benchmarks.raftsql_load workload
    etcd: str  # a benchmarks.peers_etcd workload
    clients: tuple[int, ...]


PAIRS = [
    Pair("writes", "insert_param", "put", (1, 16, 64)),
    Pair("linearizable reads, leader", "read_leader", "range_linearizable", (64,)),
    Pair("linearizable reads, followers", "read_followers", "range_linearizable", (64,)),
]
QUICK_PAIRS = [Pair("writes", "insert_param", "put", (1,))]


def summarize(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each side and of the paired ratios (with quartiles)."""
    ratios = sorted(b["ratio"] for b in bursts)
    return {
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_q1": round(common.quantile(ratios, 0.25), 3),
        "ratio_q3": round(common.quantile(ratios, 0.75), 3),
        "raftsql_ops_per_s": round(statistics.median(b["raftsql"] for b in bursts), 1),
        "etcd_ops_per_s": round(statistics.median(b["etcd"] for b in bursts), 1),
    }


def _ops(system: str, point: dict[str, Any], what: str, clients: int) -> float:
    """A burst's ops/s; a burst with failed requests measured a failure, not the system."""
    if point["errors"]:
        raise RuntimeError(
            f"{system}: {point['errors']} failed requests ({what}, {clients} clients)"
        )
    return float(point["ops_per_s"])


def run_pair(pair: Pair, etcd_port: int, bursts: int, seconds: int) -> list[dict[str, Any]]:
    """One raftsql cluster for the pair's workload; at each client count, ``bursts``
    pairs of bursts, etcd first in every other one."""
    out = []
    with TreeCluster(ROOT, pair.raftsql, "c") as cluster:
        for clients in pair.clients:
            take = {
                "etcd": lambda c=clients: _ops(
                    "etcd", peers_etcd.measure(etcd_port, pair.etcd, c, seconds), pair.etcd, c
                ),
                "raftsql": lambda c=clients: _ops(
                    "raftsql", cluster.point(c, seconds, warmup=0.0), pair.raftsql, c
                ),
            }
            measured = []
            for k in range(bursts):
                order = ["etcd", "raftsql"] if k % 2 == 0 else ["raftsql", "etcd"]
                got = {system: take[system]() for system in order}
                ours, etcd = got["raftsql"], got["etcd"]
                ratio = ours / etcd if etcd else 0.0
                measured.append({"raftsql": ours, "etcd": etcd, "ratio": round(ratio, 4)})
                common.progress(
                    f"{pair.what}, {clients} clients, pair {k + 1}/{bursts}: raftsql "
                    f"{ours:,.0f}/s, etcd {etcd:,.0f}/s ({ratio:.2f}x)"
                )
            out.append(
                {
                    "what": pair.what,
                    "raftsql_workload": pair.raftsql,
                    "etcd_workload": pair.etcd,
                    "clients": clients,
                    "bursts": measured,
                    **summarize(measured),
                }
            )
    return out


def run(quick: bool = False, bursts: int | None = None, seconds: int = 1) -> dict[str, Any]:
    """Start etcd, then each pair's raftsql cluster in turn; always stop everything."""
    pairs = QUICK_PAIRS if quick else PAIRS
    bursts = bursts or (2 if quick else 15)
    results: list[dict[str, Any]] = []
    with (
        common.sigterm_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="raftsql-paired-") as tmp,
        peers_etcd.EtcdCluster(Path(tmp)) as etcd,
    ):
        etcd.wait_healthy()
        port = etcd.leader().client_port
        peers_etcd.preload(port)
        for pair in pairs:
            results.extend(run_pair(pair, port, bursts, seconds))
    data = {
        "pairs": results,
        "bursts": bursts,
        "burst_seconds": seconds,
        "method": "raftsql and etcd clusters up at once, alternating bursts; ratio = "
        "raftsql burst / the etcd burst next to it; median [quartiles] of those ratios",
    }
    common.save("paired_etcd", data, quick)
    return data


def table(data: dict[str, Any]) -> str:
    lines = ["what                            clients   raftsql/s    etcd/s   ratio [quartiles]"]
    for p in data["pairs"]:
        lines.append(
            f"{p['what']:<32}{p['clients']:>7}{p['raftsql_ops_per_s']:>12,.0f}"
            f"{p['etcd_ops_per_s']:>10,.0f}   {p['ratio_median']:.2f}x "
            f"[{p['ratio_q1']:.2f}-{p['ratio_q3']:.2f}]"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 bursts, 1 client")
    parser.add_argument("--bursts", type=int, default=None, help="pairs per point (15)")
    parser.add_argument("--burst-seconds", type=int, default=1, help="wrk takes whole seconds")
    args = parser.parse_args()
    print(table(run(args.quick, args.bursts, args.burst_seconds)))


if __name__ == "__main__":
    main()
