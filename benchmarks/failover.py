"""Failover: how long writes stall when the leader is killed (kill -9) under load.

A local 3-node cluster (fsync on, the default timeouts of raftsql.timing)
takes single-row INSERTs from a few writer threads, each with its own client session. Each
trial kills the leader with SIGKILL after a stretch of steady writes and measures:

- ``first_write_s``: from the kill to the first acknowledgement that the old leader cannot
  have given: of a write sent after its process was reaped, or of any write (one in flight
  at the kill, retried by its client) acknowledged later than half the minimum election
  timeout after the kill, when no new leader can exist yet; earlier acknowledgements are
  replies the old leader sent just before it died. This is the stall a client sees, its
  retry back-off included;
- ``election_s``: from the kill until a surviving node reports itself leader of a newer
  term (status polled every 10 ms);
- ``catchup_s``: from restarting the killed node until it has applied what the leader has
  committed, so that every trial starts from three healthy nodes.

At the end every acknowledged write must be in the table exactly once. The table has no
UNIQUE constraint on purpose: a write applied twice then shows up as two rows instead of as
a constraint error answered to the retry.

    python -m benchmarks.failover [--quick] [--trials 12] [--writers 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql import errors, timing
from raftsql.client.client import Client
from raftsql.cluster import LocalCluster

NAME = "failover"
CREATE = "CREATE TABLE acked (writer INTEGER NOT NULL, n INTEGER NOT NULL)"
INDEX = "CREATE INDEX acked_writer_n ON acked (writer, n)"
INSERT = "INSERT INTO acked (writer, n) VALUES (?, ?)"
WRITE_TIMEOUT_S = 30.0
"""Long enough that a write never gives up during a failover: a failed write would hide the
stall it is there to measure."""
POLL_S = 0.01
TICK_S = timing.TICK_SECONDS
ELECTION_TICKS = timing.ELECTION_TICKS
OLD_LEADER_GUARD_S = ELECTION_TICKS * TICK_S / 2
"""Acknowledgements this soon after the kill come from the old leader (see first_write_s)."""
SLOW_ELECTION_S = 2 * ELECTION_TICKS * TICK_S + 0.1
"""A follower's election timeout is drawn from [T, 2T]: an election that takes longer than
2T plus a round trip or two needed more than one try, which is worth showing."""
WINDOW_BEFORE_S = 1.0
WINDOW_AFTER_S = 3.0
"""The latency series spans this much time around each kill; the killed node is restarted
only once the window is over, so that its catching up does not color the series."""


@dataclass(frozen=True, slots=True)
class Write:
    """One write request as its writer saw it (monotonic seconds)."""

    writer: int
    n: int
    sent: float
    done: float
    ok: bool
    error: str = ""


class Writers:
    """Closed-loop writer threads, each with its own client (session) and its own record.

    Each thread appends only to its own list, so recording needs no lock, and the main
    thread can read the lists while they grow (list append is atomic in CPython).
    """

    def __init__(self, cluster: LocalCluster, count: int) -> None:
        self.cluster = cluster
        self.records: list[list[Write]] = [[] for _ in range(count)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(k,), name=f"writer-{k}", daemon=True)
            for k in range(count)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Let every writer finish its current write, then wait for the threads."""
        self._stop.set()
        for t in self._threads:
            t.join(WRITE_TIMEOUT_S + 5)

    def _loop(self, k: int) -> None:
        record = self.records[k]
        with self.cluster.client(timeout=WRITE_TIMEOUT_S) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                sent = time.monotonic()
                try:
                    client.write([(INSERT, (k, n))])
                except errors.RaftsqlError as exc:
                    record.append(Write(k, n, sent, time.monotonic(), False, repr(exc)))
                else:
                    record.append(Write(k, n, sent, time.monotonic(), True))

    def acked(self) -> int:
        return sum(1 for rec in self.records for w in rec if w.ok)

    def first_new_ack(self, sent_after: float, acked_after: float) -> float | None:
        """The earliest acknowledgement, if any yet, of a write sent at or after
        ``sent_after`` or acknowledged at or after ``acked_after``."""
        best: float | None = None
        low = min(sent_after, acked_after)
        for rec in self.records:
            i = len(rec) - 1
            while i >= 0 and rec[i].done >= low:  # a writer's records are in ack order
                w = rec[i]
                if w.ok and (w.sent >= sent_after or w.done >= acked_after):
                    best = w.done if best is None else min(best, w.done)
                i -= 1
        return best

    def all(self) -> list[Write]:
        return [w for rec in self.records for w in rec]


class Probe:
    """A status connection per node, kept open between polls.

    Polling every 10 ms must not cost a TCP handshake each time, and a dead node must cost
    one short timeout, not the client's default ten seconds.
    """

    def __init__(self, cluster: LocalCluster, timeout: float = 0.5) -> None:
        self.clients = {i: Client([cluster.address(i)], timeout=timeout) for i in cluster.ports}

    def status(self, node: int) -> dict[str, Any] | None:
        try:
            return self.clients[node].status()
        except errors.RaftsqlError:
            return None

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def leader_status(probe: Probe, nodes: Sequence[int]) -> dict[str, Any] | None:
    """The status of whichever of ``nodes`` says it leads (the highest term, if several)."""
    found = [s for s in (probe.status(i) for i in nodes) if s and s["role"] == "leader"]
    return max(found, key=lambda s: s["term"]) if found else None


def watch_election(
    probe: Probe, survivors: Sequence[int], old_term: int, t_kill: float, timeout: float
) -> tuple[dict[str, Any], list[list[Any]]]:
    """Poll the surviving nodes until one leads a term newer than the killed leader's.

    Also returns every change of role or term seen on the way, as [ms since the kill, node,
    role, term, last_index]: when an election takes longer than its timeout allows, this
    says whether a PreVote round failed, votes split, or a node stayed silent.
    """
    seen: dict[int, tuple[str, int]] = {}
    timeline: list[list[Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in survivors:
            st = probe.status(i)
            if st is None:
                continue
            if seen.get(i) != (st["role"], st["term"]):
                seen[i] = (st["role"], st["term"])
                ms = round((time.monotonic() - t_kill) * 1000, 1)
                timeline.append([ms, i, st["role"], st["term"], st["last_index"]])
            if st["role"] == "leader" and st["term"] > old_term:
                return st, timeline
        time.sleep(POLL_S)
    raise TimeoutError(f"no new leader within {timeout:.0f}s: {timeline}")


def wait_caught_up(probe: Probe, nodes: Sequence[int], node: int, timeout: float) -> None:
    """Wait until ``node`` has applied everything the leader had committed just before.

    Writes go on meanwhile, so the leader's commit is read first and the node's applied
    index second: catching up means reaching a point, not a moving target.
    """

    def check() -> bool | None:
        lead = leader_status(probe, nodes)
        if lead is None:
            return None
        st = probe.status(node)
        return True if st is not None and st["applied"] >= lead["commit"] else None

    common.wait_for(f"node {node} catching up", check, timeout)


def steady_leader(cluster: LocalCluster, probe: Probe) -> dict[str, Any]:
    """The leader's status, once every node is up to date with it."""
    nodes = sorted(cluster.ports)
    lead = common.wait_for("a leader", lambda: leader_status(probe, nodes), 30)
    for i in nodes:
        if i != lead["id"]:
            wait_caught_up(probe, nodes, i, 60)
    return lead


def restart(cluster: LocalCluster, probe: Probe, node: int) -> float:
    """Start ``node`` again; seconds until it has caught up with the leader."""
    started = time.monotonic()
    cluster.start_node(node)
    wait_caught_up(probe, sorted(cluster.ports), node, 120)
    return time.monotonic() - started


def one_trial(
    number: int,
    cluster: LocalCluster,
    writers: Writers,
    probe: Probe,
    steady_s: float,
    after_s: float,
) -> dict[str, Any]:
    """Kill the leader under steady writes, time the stall, restart it and let it catch up."""
    nodes = sorted(cluster.ports)
    lead = steady_leader(cluster, probe)
    before = writers.acked()
    time.sleep(steady_s)
    if writers.acked() == before:
        raise RuntimeError(f"trial {number}: no write was acknowledged in {steady_s}s of load")
    killed, old_term = int(lead["id"]), int(lead["term"])
    t_kill = time.monotonic()
    cluster.kill(killed)
    t_dead = time.monotonic()  # the process is reaped: it can answer nothing any more
    survivors = [i for i in nodes if i != killed]
    new, timeline = watch_election(probe, survivors, old_term, t_kill, 30)
    election_s = time.monotonic() - t_kill
    t_guard = t_kill + OLD_LEADER_GUARD_S

    def new_ack() -> float | None:
        return writers.first_new_ack(t_dead, t_guard)

    common.wait_for("a write acknowledged after the kill", new_ack, 60)
    time.sleep(max(0.0, t_kill + after_s - time.monotonic()))
    first_ack = new_ack()  # again: a writer may have recorded an earlier ack a bit late
    assert first_ack is not None
    catchup_s = restart(cluster, probe, killed)
    trial = {
        "trial": number,
        "killed": killed,
        "old_term": old_term,
        "new_leader": int(new["id"]),
        "new_term": int(new["term"]),
        "kill_call_s": round(t_dead - t_kill, 4),
        "election_s": round(election_s, 4),
        "first_write_s": round(first_ack - t_kill, 4),
        "after_election_s": round(first_ack - t_kill - election_s, 4),
        "catchup_s": round(catchup_s, 3),
        "election_timeline": timeline,
        "t_kill": t_kill,
    }
    common.progress(
        f"trial {number}: killed leader {killed} (term {old_term}); node {new['id']} leads "
        f"term {new['term']} after {election_s * 1000:.0f} ms; first write acked after "
        f"{trial['first_write_s'] * 1000:.0f} ms; restarted node caught up in "
        f"{trial['catchup_s']:.2f} s"
    )
    if election_s > SLOW_ELECTION_S:
        common.progress(f"  slow election; [ms, node, role, term, last_index]: {timeline}")
    return trial


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p99 (nearest rank: with fewer than 100 trials it is the max) and max."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "median": round(statistics.median(ordered), 4),
        "p99": round(common.quantile(ordered, 0.99), 4),
        "max": round(ordered[-1], 4),
        "min": round(ordered[0], 4),
    }


def latency_series(writes: Sequence[Write], t_kill: float) -> list[list[float]]:
    """[send time relative to the kill (s), latency (ms)] of the acknowledged writes sent
    from 1 s before the kill to 3 s after it: the 'latency over time' plot of a failover."""
    return [
        [round(w.sent - t_kill, 4), round((w.done - w.sent) * 1000, 2)]
        for w in sorted(writes, key=lambda w: w.sent)
        if w.ok and -WINDOW_BEFORE_S <= w.sent - t_kill <= WINDOW_AFTER_S
    ]


def steady_latencies(writes: Sequence[Write], kills: Sequence[float], steady_s: float) -> list:
    """Latencies (s) of writes sent and acknowledged within the steady stretch before a kill."""
    return sorted(
        w.done - w.sent
        for w in writes
        if w.ok and any(t - steady_s <= w.sent and w.done < t for t in kills)
    )


def verify(client: Client, writes: Sequence[Write]) -> dict[str, Any]:
    """Every acknowledged write present exactly once; nothing present that was never sent.

    A write whose outcome the writer never learned (it failed or timed out) may be present
    once: its ack was lost, the write was not.
    """
    result = client.query("SELECT writer, n, COUNT(*) FROM acked GROUP BY writer, n")
    if result.truncated:
        raise RuntimeError("the verification query was truncated: raise max_read_rows")
    present = {(w, n): c for w, n, c in result.rows}
    acked = {(w.writer, w.n) for w in writes if w.ok}
    sent = {(w.writer, w.n) for w in writes}
    missing = sorted(acked - present.keys())
    duplicated = sorted(k for k, c in present.items() if c > 1)
    unknown = sorted(present.keys() - sent)
    return {
        "ok": not (missing or duplicated or unknown),
        "acked": len(acked),
        "rows": sum(present.values()),
        "applied_without_ack": len((present.keys() & sent) - acked),
        "acked_missing": [list(k) for k in missing[:50]],
        "acked_missing_count": len(missing),
        "duplicated": [list(k) for k in duplicated[:50]],
        "duplicated_count": len(duplicated),
        "never_sent": [list(k) for k in unknown[:50]],
    }


def pick_series(trials: Sequence[dict[str, Any]], writes: Sequence[Write]) -> list[dict]:
    """The latency-over-time series of the median trial and of the slowest one."""
    ranked = sorted(trials, key=lambda t: t["first_write_s"])
    chosen = {"median": ranked[(len(ranked) - 1) // 2], "slowest": ranked[-1]}
    out = []
    for why, trial in chosen.items():
        if out and out[0]["trial"] == trial["trial"]:
            out[0]["why"] += f", {why}"
            continue
        points = latency_series(writes, trial["t_kill"])
        out.append({"trial": trial["trial"], "why": why, "points": points})
    return out


def report_errors(writes: Sequence[Write]) -> dict[str, int]:
    """How many writes failed, by error, so that a failed write is never silent."""
    counts = Counter(w.error.split("(")[0] for w in writes if not w.ok)
    for error, count in counts.items():
        common.progress(f"  {count} write(s) failed with {error}")
    return dict(counts)


def run(quick: bool = False, trials: int | None = None, writers: int = 4) -> dict[str, Any]:
    """Run the failover trials on a fresh cluster and save the figures."""
    trials = trials or (2 if quick else 12)
    steady_s = 0.3 if quick else 1.0
    after_s = 1.0 if quick else WINDOW_AFTER_S
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="raftsql-failover-") as tmp:
        cluster = LocalCluster(
            directory=Path(tmp), tick_seconds=TICK_S, election_ticks=ELECTION_TICKS
        )
        with cluster:
            with cluster.client() as c:
                c.execute(CREATE)
                c.execute(INDEX)
            load = Writers(cluster, writers)
            probe = Probe(cluster)
            try:
                load.start()
                for number in range(1, trials + 1):
                    results.append(one_trial(number, cluster, load, probe, steady_s, after_s))
            finally:
                load.stop()
                probe.close()
            with cluster.client() as c:
                writes = load.all()
                check = verify(c, writes)
    return finish(results, writes, check, quick, writers, steady_s)


def finish(
    trials: list[dict[str, Any]],
    writes: list[Write],
    check: dict[str, Any],
    quick: bool,
    writers: int,
    steady_s: float,
) -> dict[str, Any]:
    """Summarize, print, save."""
    kills = [t["t_kill"] for t in trials]
    steady = steady_latencies(writes, kills, steady_s)
    data = {
        "trials": [{k: v for k, v in t.items() if k != "t_kill"} for t in trials],
        "first_write_s": summary([t["first_write_s"] for t in trials]),
        "election_s": summary([t["election_s"] for t in trials]),
        "after_election_s": summary([t["after_election_s"] for t in trials]),
        "catchup_s": summary([t["catchup_s"] for t in trials]),
        "p99_note": f"nearest-rank p99 of {len(trials)} trials: the max below 100 trials",
        "steady_write_ms": {
            "p50": round(common.quantile(steady, 0.5) * 1000, 3),
            "p99": round(common.quantile(steady, 0.99) * 1000, 3),
            "n": len(steady),
        },
        "writers": writers,
        "steady_s": steady_s,
        "tick_s": TICK_S,
        "election_ticks": ELECTION_TICKS,
        "writes_sent": len(writes),
        "writes_failed": report_errors(writes),
        "verification": check,
        "latency_series": pick_series(trials, writes),
    }
    fw, el = data["first_write_s"], data["election_s"]
    common.progress(
        f"first write after kill: median {fw['median'] * 1000:.0f} ms, p99 "
        f"{fw['p99'] * 1000:.0f} ms ({data['p99_note']}); election: median "
        f"{el['median'] * 1000:.0f} ms, max {el['max'] * 1000:.0f} ms"
    )
    if check["ok"]:
        common.progress(
            f"verified: all {check['acked']} acknowledged writes present exactly once "
            f"({check['applied_without_ack']} applied without an ack)"
        )
    else:
        common.progress(
            f"ERROR: acknowledged writes missing: {check['acked_missing_count']}, "
            f"duplicated rows: {check['duplicated_count']}, never sent: "
            f"{len(check['never_sent'])} -- see 'verification' in the saved JSON"
        )
    common.save(NAME, data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 short trials")
    p.add_argument("--trials", type=int, help="leader kills (default 12, quick 2)")
    p.add_argument("--writers", type=int, default=4, help="writer threads (default 4)")
    args = p.parse_args()
    data = run(args.quick, args.trials, args.writers)
    if not data["verification"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
