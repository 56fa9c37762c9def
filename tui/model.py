"""The pure part of the TUI: from polled node statuses to rows, a verdict and events.

Nothing here does I/O or reads a clock, so every rule (what counts as lagging, when the
cluster is unavailable, which changes are worth an event) is tested from canned statuses,
and the screen only has to draw what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Status = Mapping[str, Any]

# A follower further behind the leader than this many log entries makes the cluster
# "degraded": it still counts towards a quorum, but it would not survive as a leader
# without catching up, and a growing lag usually means a slow disk or a flaky link.
LAG_THRESHOLD = 100
# A spare follower (quorum-first replication: the leader sends it new entries once a tick)
# trails by up to a tick's writes by design, hundreds of entries under a heavy load: it is
# called lagging only this many times further behind.
SPARE_LAG_FACTOR = 10

HEALTHY = "healthy"
DEGRADED = "degraded"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class NodePoll:
    """One node's answer to one poll: its status, or why it did not answer."""

    address: str
    status: Status | None
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.status is not None


@dataclass(frozen=True)
class Poll:
    """Every node polled once; ``at`` is wall-clock seconds (from the source, not the
    model, so that fake sources give reproducible timestamps)."""

    at: float
    nodes: tuple[NodePoll, ...]


@dataclass(frozen=True)
class Row:
    """One line of the node table, already reduced to what the screen shows."""

    address: str
    node_id: int | None
    reachable: bool
    role: str = "-"
    term: int | None = None
    commit: int | None = None
    applied: int | None = None
    lag: int | None = None
    first_index: int | None = None
    last_index: int | None = None
    snapshot_index: int | None = None
    uptime: float | None = None
    contact: float | None = None
    """Seconds since the leader last heard from this follower (its last ack), or, without
    the leader's view, since this node last heard from its leader."""
    error: str | None = None
    is_leader: bool = False
    lagging: bool = False
    spare: bool = False
    """The leader sends this follower new entries once a tick (quorum-first replication)."""

    @property
    def label(self) -> str:
        """``node 2 (127.0.0.1:7002)``, or just the address when its id is unknown."""
        if self.node_id is None:
            return self.address
        return f"node {self.node_id} ({self.address})"

    @property
    def log_range(self) -> str:
        if self.first_index is None or self.last_index is None:
            return "-"
        return f"{self.first_index}..{self.last_index}"


@dataclass(frozen=True)
class Verdict:
    """``level`` is healthy, degraded or unavailable; ``reasons`` say why, per node."""

    level: str
    summary: str
    reasons: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if not self.reasons:
            return f"{self.level.upper()}: {self.summary}"
        return f"{self.level.upper()}: {self.summary}; " + "; ".join(self.reasons)


@dataclass(frozen=True)
class Event:
    """Something that changed between two polls, stamped with the later poll's time."""

    at: float
    text: str
    level: str = "info"  # "info", "warning" or "error": the log colours by it


@dataclass
class Rates:
    """Cluster-wide requests per second between two polls (summed over nodes)."""

    writes: float = 0.0
    reads: float = 0.0


@dataclass
class ClusterView:
    """Everything the screen draws for one poll."""

    poll: Poll
    rows: list[Row]
    verdict: Verdict
    leader: Row | None
    events: list[Event] = field(default_factory=list)
    rates: Rates | None = None


# === rows ===================================================================================


def _id_by_address(poll: Poll) -> dict[str, int]:
    """Node ids for every address any reachable node knows of (its ``peers``), so that a
    node that is down still shows its id."""
    ids: dict[str, int] = {}
    for node in poll.nodes:
        if node.status is None:
            continue
        for ident, addr in (node.status.get("peers") or {}).items():
            ids.setdefault(str(addr), int(ident))
        ids[node.address] = int(node.status["id"])
    return ids


def find_leader(poll: Poll) -> NodePoll | None:
    """The reachable node that says it leads, at the highest term (an old leader cut off
    from the others may still believe it leads at a lower term)."""
    leaders = [n for n in poll.nodes if n.status is not None and n.status.get("role") == "leader"]
    if not leaders:
        return None
    return max(leaders, key=lambda n: int(n.status["term"]) if n.status else -1)


def compute_rows(poll: Poll, lag_threshold: int = LAG_THRESHOLD) -> list[Row]:
    """One row per polled node, ordered by node id (unknown ids last, by address).

    Lag is the leader's last index minus the follower's match index from the leader's
    progress (what the leader knows it has replicated); when the leader has no progress
    for a node (or there is no leader), it falls back to commit - applied on that node.
    """
    ids = _id_by_address(poll)
    leader = find_leader(poll)
    leader_status = leader.status if leader is not None else None
    progress: Mapping[str, Any] = (leader_status or {}).get("progress") or {}
    rows = []
    for node in poll.nodes:
        node_id = ids.get(node.address)
        st = node.status
        if st is None:
            rows.append(Row(node.address, node_id, False, error=node.error))
            continue
        is_leader = leader is not None and node.address == leader.address
        lag: int | None
        prog = progress.get(str(node_id)) if node_id is not None else None
        if is_leader:
            lag = max(0, int(st["commit"]) - int(st["applied"]))
        elif prog is not None and leader_status is not None:
            lag = max(0, int(leader_status["last_index"]) - int(prog["match"]))
        elif leader_status is not None:
            lag = max(0, int(leader_status["commit"]) - int(st["applied"]))
        else:
            lag = max(0, int(st["commit"]) - int(st["applied"]))
        contact = prog.get("last_ack") if prog is not None else st.get("last_contact")
        spare = bool(prog is not None and prog.get("spare"))
        threshold = lag_threshold * SPARE_LAG_FACTOR if spare else lag_threshold
        rows.append(
            Row(
                address=node.address,
                node_id=node_id,
                reachable=True,
                role=str(st.get("role", "?")),
                term=int(st["term"]),
                commit=int(st["commit"]),
                applied=int(st["applied"]),
                lag=lag,
                first_index=int(st["first_index"]),
                last_index=int(st["last_index"]),
                snapshot_index=int(st["snapshot_index"]),
                uptime=float(st.get("uptime", 0.0)),
                contact=None if is_leader or contact is None else float(contact),
                is_leader=is_leader,
                lagging=lag > threshold,
                spare=spare,
            )
        )
    rows.sort(key=lambda r: (r.node_id is None, r.node_id or 0, r.address))
    return rows


# === verdict ================================================================================


def _voters(poll: Poll, rows: Sequence[Row]) -> list[int] | None:
    leader = find_leader(poll)
    sources = [leader] if leader is not None else []
    sources += [n for n in poll.nodes if n.status is not None]
    for node in sources:
        voters = (node.status or {}).get("voters")
        if voters:
            return [int(v) for v in voters]
    return None


def compute_verdict(poll: Poll, rows: Sequence[Row] | None = None) -> Verdict:
    """Healthy, degraded (a minority down or lagging; says which and why) or unavailable
    (no quorum reachable, or no leader; says why)."""
    rows = list(rows) if rows is not None else compute_rows(poll)
    down = [r for r in rows if not r.reachable]
    up = [r for r in rows if r.reachable]
    voters = _voters(poll, rows)
    total = len(voters) if voters else len(rows)
    reachable_voters = (
        [r for r in up if r.node_id in voters] if voters else up
    )  # learners (if any) do not count towards a quorum
    majority = total // 2 + 1
    down_reasons = tuple(f"{r.label} unreachable" for r in down)
    if not up:
        return Verdict(UNAVAILABLE, f"no node reachable (0 of {total})", down_reasons)
    if len(reachable_voters) < majority:
        return Verdict(
            UNAVAILABLE,
            f"no quorum: {len(reachable_voters)} of {total} nodes reachable, {majority} needed",
            down_reasons,
        )
    leader = next((r for r in rows if r.is_leader), None)
    if leader is None:
        roles = ", ".join(f"node {r.node_id} {r.role}" for r in up)
        return Verdict(UNAVAILABLE, "no leader (election in progress?)", (roles, *down_reasons))
    reasons = list(down_reasons)
    leader_status = next(n.status for n in poll.nodes if n.address == leader.address)
    progress: Mapping[str, Any] = (leader_status or {}).get("progress") or {}
    for r in up:
        if r.is_leader:
            continue
        if r.role != "follower":
            reasons.append(f"{r.label} is {r.role} at term {r.term}")
        elif r.term is not None and leader.term is not None and r.term != leader.term:
            reasons.append(f"{r.label} at term {r.term}, leader at {leader.term}")
        prog = progress.get(str(r.node_id)) or {}
        if prog and prog.get("connected") is False:
            reasons.append(f"leader has no connection to {r.label}")
        if r.lagging:
            reasons.append(f"{r.label} lags {r.lag} entries behind the leader")
    summary = f"leader node {leader.node_id}, term {leader.term}, {len(up)} of {len(rows)} up"
    if reasons:
        return Verdict(DEGRADED, summary, tuple(reasons))
    return Verdict(HEALTHY, summary)


# === events =================================================================================


def diff_events(
    prev: ClusterView | None, poll: Poll, rows: Sequence[Row], verdict: Verdict
) -> list[Event]:
    """What changed since the previous poll: leader or term, a node going down or coming
    back, a node's snapshot index, writes refused for overload, and the verdict itself."""
    at = poll.at
    leader = next((r for r in rows if r.is_leader), None)
    if prev is None:
        return [Event(at, f"watching {len(rows)} nodes: {verdict.text}", _level(verdict))]
    events: list[Event] = []
    before = {r.address: r for r in prev.rows}
    for r in rows:
        old = before.get(r.address)
        if old is None:
            events.append(Event(at, f"{r.label} discovered"))
            continue
        if old.reachable and not r.reachable:
            events.append(Event(at, f"{r.label} unreachable: {r.error or 'no answer'}", "error"))
        elif not old.reachable and r.reachable:
            events.append(Event(at, f"{r.label} back up as {r.role}"))
        elif (
            r.snapshot_index is not None
            and old.snapshot_index is not None
            and r.snapshot_index != old.snapshot_index
        ):
            events.append(Event(at, f"{r.label} snapshot at index {r.snapshot_index}"))
    labels = {r.address: r.label for r in rows}
    for address, n in counter_increases(prev.poll, poll, "writes_refused").items():
        what = f"{n} write{'s' if n != 1 else ''}"
        events.append(Event(at, f"{labels[address]} refused {what}: overloaded", "warning"))
    old_leader = prev.leader
    if (old_leader and old_leader.node_id) != (leader and leader.node_id):
        if leader is None:
            events.append(Event(at, "no leader", "error"))
        else:
            came_from = f"node {old_leader.node_id}" if old_leader else "none"
            events.append(
                Event(
                    at,
                    f"leader changed: {came_from} -> node {leader.node_id} (term {leader.term})",
                    "warning",
                )
            )
    elif leader is not None and old_leader is not None and leader.term != old_leader.term:
        events.append(Event(at, f"term {old_leader.term} -> {leader.term}", "warning"))
    if verdict.level != prev.verdict.level:
        events.append(Event(at, f"cluster is {verdict.text}", _level(verdict)))
    return events


def _level(verdict: Verdict) -> str:
    return {HEALTHY: "info", DEGRADED: "warning"}.get(verdict.level, "error")


# === rates and the whole view ===============================================================


def counter_increases(prev: Poll, poll: Poll, name: str) -> dict[str, int]:
    """By node address, how much counter ``name`` grew between two polls (nodes reachable
    in both whose counter grew; one that went backwards, a restart, is left out)."""
    before = {n.address: n.status for n in prev.nodes if n.status is not None}
    grown = {}
    for node in poll.nodes:
        old = before.get(node.address)
        if node.status is None or old is None:
            continue
        delta = int((node.status.get("counters") or {}).get(name, 0)) - int(
            (old.get("counters") or {}).get(name, 0)
        )
        if delta > 0:
            grown[node.address] = delta
    return grown


def compute_rates(prev: Poll | None, poll: Poll) -> Rates | None:
    """Writes and reads per second, from the nodes' counters between two polls.

    Writes are counted by the leader that acknowledged them and reads by the node that
    served them, so the cluster's rate is the sum over nodes reachable in both polls. A
    counter that went backwards (a restarted node) contributes nothing.
    """
    if prev is None or poll.at <= prev.at:
        return None
    writes = sum(counter_increases(prev, poll, "writes").values())
    reads = sum(counter_increases(prev, poll, "reads").values())
    dt = poll.at - prev.at
    return Rates(writes / dt, reads / dt)


def build_view(
    prev: ClusterView | None, poll: Poll, lag_threshold: int = LAG_THRESHOLD
) -> ClusterView:
    """Rows, verdict, events since ``prev`` and rates, for one new poll."""
    rows = compute_rows(poll, lag_threshold)
    verdict = compute_verdict(poll, rows)
    leader = next((r for r in rows if r.is_leader), None)
    events = diff_events(prev, poll, rows, verdict)
    rates = compute_rates(prev.poll if prev else None, poll)
    return ClusterView(poll, rows, verdict, leader, events, rates)


def latency_p99(poll: Poll, kind: str) -> float | None:
    """The worst p99 latency (ms) of ``kind`` ("write" or "read") that any node reports over
    its recent requests, or None when no node served any."""
    worst: float | None = None
    for node in poll.nodes:
        stats = ((node.status or {}).get("latency_ms") or {}).get(kind) or {}
        if stats.get("n"):
            worst = max(worst or 0.0, float(stats["p99"]))
    return worst


def format_contact(seconds: float | None) -> str:
    """``0.12s`` since the last ack/contact; ``-`` for the leader or when unknown."""
    return "-" if seconds is None else f"{seconds:.2f}s"


def format_uptime(seconds: float | None) -> str:
    """``42s``, ``5m03s``, ``2h04m``, ``3d02h``: short enough for a table column."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
