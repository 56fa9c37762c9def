"""Plots and a summary table drawn from the saved benchmark results, never from a live run.

Everything here reads ``results/<name>.json`` (``<name>.quick.json`` with ``--quick``), so
figures can be redrawn, or the summary rewritten, without measuring again; a result that is
missing is shown as "not measured", never guessed. The two modes are never mixed: a smoke
run's figures must not sit next to real ones in one table.

    python -m benchmarks.plots [--quick]

Draws ``writes_vs_clients``, ``reads_vs_clients``, ``latency_cdf``, ``failover``,
``peers_bars`` and (when measured) ``memory_flat`` PNGs, and writes ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import common, replication_floor, trio_floor, write_work
from benchmarks.run_all import MEMORY, STEPS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Data = dict[str, Any]
Point = dict[str, Any]

SOURCES = [*STEPS, MEMORY]
"""Every result file the plots and the summary read: what ``run_all`` can run."""
MISSING = "not measured"
TIMES = "\u00d7"
"""The multiplication sign, for ratios (spelled out: ruff flags it as look-alike of x)."""
RAFTSQL, ETCD, PYSYNCOBJ, LIMITS = "raftsql_load", "peers_etcd", "peers_pysyncobj", "limits"


# --- loading ---------------------------------------------------------------------------


def json_name(name: str, quick: bool) -> str:
    return f"{name}.quick.json" if quick else f"{name}.json"


def png_name(name: str, quick: bool) -> str:
    return f"{name}.quick.png" if quick else f"{name}.png"


def summary_name(quick: bool) -> str:
    return "summary.quick.md" if quick else "summary.md"


@dataclass
class Results:
    """The saved results of one mode (quick or full), by benchmark name."""

    data: dict[str, Data]
    quick: bool

    @classmethod
    def load(cls, quick: bool, directory: Path = common.RESULTS) -> Results:
        data = {}
        for name in SOURCES:
            path = directory / json_name(name, quick)
            if path.exists():
                data[name] = json.loads(path.read_text())
        return cls(data, quick)

    def get(self, name: str) -> Data | None:
        return self.data.get(name)

    def points(self, name: str, workload: str) -> list[Point]:
        """The measured points of one workload, by client count; failed ones left out."""
        found = [
            p
            for p in (self.data.get(name) or {}).get("points", [])
            if p["workload"] == workload and p["ops"] > 0
        ]
        return sorted(found, key=lambda p: p["clients"])

    def point(self, name: str, workload: str, clients: int) -> Point | None:
        return next((p for p in self.points(name, workload) if p["clients"] == clients), None)

    def best(self, name: str, workload: str) -> Point | None:
        """The point with the highest throughput, at whatever client count."""
        return max(self.points(name, workload), key=lambda p: p["ops_per_s"], default=None)


def number(value: Any) -> float | None:
    """``value`` as a float if it is a real measurement (not None, not NaN)."""
    if value is None or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


# --- drawing helpers -------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a plot: a workload of a result file, in the given style."""

    source: str
    workload: str
    label: str
    color: str
    scale: float = 1.0
    """Multiplies the throughput (txn10 drawn as rows/s); latency is left alone."""
    linestyle: str = "-"
    marker: str = "o"


WRITES = [
    Series(RAFTSQL, "insert_param", "raftsql insert_param", "tab:blue"),
    Series(RAFTSQL, "insert_literal", "raftsql insert_literal", "tab:cyan"),
    Series(RAFTSQL, "txn10", "raftsql txn10 (txn/s)", "tab:purple"),
    Series(
        RAFTSQL,
        "txn10",
        f"raftsql txn10 (rows/s = 10 {TIMES} txn/s)",
        "tab:purple",
        10.0,
        "--",
        "^",
    ),
    Series(ETCD, "put", "etcd put", "black", marker="s"),
]
READS = [
    Series(RAFTSQL, "read_leader", "raftsql read_leader (linearizable)", "tab:blue"),
    Series(RAFTSQL, "read_followers", "raftsql read_followers (linearizable)", "tab:green"),
    Series(
        RAFTSQL,
        "read_stale_followers",
        "raftsql read_stale_followers (stale)",
        "tab:olive",
        linestyle="--",
    ),
    Series(ETCD, "range_linearizable", "etcd range (linearizable)", "black", marker="s"),
]
CDF_WRITES = [WRITES[0], WRITES[-1]]
CDF_READS = [READS[0], READS[1], READS[-1]]


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: files only, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def clients_axis(ax: Axes, levels: Sequence[int]) -> None:
    """Log-2 x axis labelled with the client counts actually measured."""
    ax.set_xscale("log", base=2)
    if levels:
        ax.set_xticks(list(levels), [str(c) for c in levels])
    ax.set_xlabel("concurrent clients (closed loop, log scale)")
    ax.grid(True, which="major", alpha=0.3)


def plain_log(axis: Any) -> None:
    """Log scale labelled 1, 2, 5, 10, 20, 50... (not powers of ten): ms are read, not decoded."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def not_measured(ax: Axes, what: str = MISSING) -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="gray")


def save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    common.progress(f"drew {path}")
    return path


# --- the figures -----------------------------------------------------------------------


def draw_vs_clients(results: Results, series: Sequence[Series], title: str, path: Path) -> Path:
    """Throughput and p99 latency against client count, one line per series."""
    plt = pyplot()
    fig, (rate, p99) = plt.subplots(1, 2, figsize=(13, 5))
    levels: set[int] = set()
    for s in series:
        pts = results.points(s.source, s.workload)
        if not pts:
            continue
        xs = [p["clients"] for p in pts]
        levels.update(xs)
        style = {"color": s.color, "linestyle": s.linestyle, "marker": s.marker}
        rate.plot(xs, [p["ops_per_s"] * s.scale for p in pts], label=s.label, **style)
        if s.scale == 1.0:
            p99.plot(xs, [p["p99_ms"] for p in pts], label=s.label, **style)
    for ax in (rate, p99):
        clients_axis(ax, sorted(levels))
        if levels:
            ax.legend(fontsize=8)
        else:
            not_measured(ax)
    rate.set_ylabel("throughput (ops/s; rows/s where labelled)")
    rate.set_ylim(bottom=0)
    rate.set_title("throughput")
    p99.set_ylabel("p99 latency (ms, log scale)")
    p99.set_yscale("log")
    plain_log(p99.yaxis)
    p99.set_title("p99 latency")
    fig.suptitle(title)
    return save(fig, path)


def pick_clients(results: Results, series: Sequence[Series], wanted: int) -> int | None:
    """``wanted`` if every measured series has it, else the most clients they all have.

    A quick run stops at 4 clients; its CDF is still worth drawing, at a count that says
    so in the title rather than pretending to be the one asked for.
    """
    sets = [
        {p["clients"] for p in results.points(s.source, s.workload)}
        for s in series
        if results.points(s.source, s.workload)
    ]
    common_levels = set.intersection(*sets) if sets else set()
    if wanted in common_levels:
        return wanted
    return max(common_levels, default=None)


def draw_cdf_panel(ax: Axes, results: Results, series: Sequence[Series], wanted: int) -> None:
    clients = pick_clients(results, series, wanted)
    what = "write" if series[0].workload.startswith(("insert", "txn")) else "read"
    if clients is None:
        ax.set_title(f"{what} latency at {wanted} clients")
        not_measured(ax)
        return
    for s in series:
        p = results.point(s.source, s.workload, clients)
        if p and p["cdf_ms"]:
            ms = [max(v, 1e-3) for _, v in p["cdf_ms"]]
            ax.plot(ms, [q for q, _ in p["cdf_ms"]], label=s.label, color=s.color)
    note = "" if clients == wanted else f" ({wanted} not measured)"
    ax.set_title(f"{what} latency at {clients} clients{note}")
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def draw_latency_cdf(results: Results, path: Path) -> Path:
    """Write latency at 16 clients and read latency at 64, raftsql against etcd."""
    fig, (writes, reads) = pyplot().subplots(1, 2, figsize=(13, 5))
    draw_cdf_panel(writes, results, CDF_WRITES, 16)
    draw_cdf_panel(reads, results, CDF_READS, 64)
    fig.suptitle("Latency CDF: raftsql vs etcd (3 nodes, fsync on)")
    return save(fig, path)


def draw_failover(results: Results, path: Path) -> Path:
    """Latency of each write against when it was sent, around the leader kill."""
    fig, ax = pyplot().subplots(figsize=(11, 5))
    data = results.get("failover")
    if not data or not data.get("latency_series"):
        not_measured(ax)
        return save(fig, path)
    trials = {t["trial"]: t for t in data["trials"]}
    for series, color in zip(data["latency_series"], ["tab:blue", "tab:orange"], strict=False):
        xs = [t for t, _ in series["points"]]
        ys = [ms for _, ms in series["points"]]
        label = f"trial {series['trial']} ({series['why']} first write)"
        ax.scatter(xs, ys, s=6, alpha=0.5, color=color, label=label)
        first = trials.get(series["trial"], {}).get("first_write_s")
        if first is not None:
            ax.axvline(first, color=color, linestyle=":", linewidth=1)
    ax.axvline(0, color="red", linewidth=1, zorder=1, label="leader killed (SIGKILL)")
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set_xlabel("time the write was sent, relative to the kill (s); dotted: first new ack")
    ax.set_ylabel("write latency (ms, log scale)")
    ax.set_title(f"Failover: write latency around a leader kill ({data['writers']} writers)")
    ax.grid(True, which="major", alpha=0.3)
    fw = data["first_write_s"]
    ax.text(
        0.99,
        0.97,
        f"first write after the kill over {len(data['trials'])} trials:\n"
        f"median {fw['median'] * 1000:.0f} ms, p99 {fw['p99'] * 1000:.0f} ms",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "gray"},
    )
    ax.legend(fontsize=8, loc="upper left", markerscale=3)
    return save(fig, path)


def peer_bars(results: Results) -> list[tuple[str, float, str]]:
    """(label, writes/s, color) for every write figure the peers comparison has."""
    bars: list[tuple[str, float, str]] = []

    def add(label: str, p: Point | None, color: str) -> None:
        if p is not None:
            bars.append((label.format(c=p["clients"]), p["ops_per_s"], color))

    add("raftsql insert_param, 1 client", results.point(RAFTSQL, "insert_param", 1), "tab:blue")
    add(
        "raftsql insert_param, best ({c} clients)",
        results.best(RAFTSQL, "insert_param"),
        "tab:blue",
    )
    add(
        "raftsql insert_pipelined\n({c:,} callers in flight, fsync on)",
        results.best(RAFTSQL, "insert_pipelined"),
        "tab:blue",
    )
    add("etcd put, 1 client", results.point(ETCD, "put", 1), "dimgray")
    add("etcd put, best ({c} clients)", results.best(ETCD, "put"), "dimgray")
    for workload in ("set_sync_single", "set_async_10k_inflight"):
        for suffix, note in (("", "in memory"), ("_journal", "unsynced journal")):
            label = f"PySyncObj {workload}{suffix}\n({note}, no fsync)"
            add(label, results.best(PYSYNCOBJ, workload + suffix), "tab:orange")
    return bars


def draw_peers_bars(results: Results, path: Path) -> Path:
    """Write rates of raftsql, etcd and PySyncObj, with the disk's and SQLite's limits
    and the replication floors of a durable single caller and of one that never syncs.

    Drawn as dots on a log axis, not as bars: the rates span two orders of magnitude, and
    a bar's length on a log axis would depend on where the axis happens to start.
    """
    bars = peer_bars(results)
    fig, ax = pyplot().subplots(figsize=(11, 0.5 * max(len(bars), 4) + 1.8))
    if not bars:
        not_measured(ax)
        return save(fig, path)
    labels, values = [b[0] for b in bars], [b[1] for b in bars]
    ax.scatter(values, labels, s=70, color=[b[2] for b in bars], zorder=3)
    for label, value in zip(labels, values, strict=True):
        ax.annotate(
            f"{value:,.0f}/s",
            (value, label),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.invert_yaxis()
    refs = [
        (results.point(LIMITS, "fdatasync", 1), "fdatasync/s, one at a time", "red"),
        (results.point(LIMITS, "insert_batch_1", 1), "SQLite alone, commit per row", "green"),
        (
            results.point(LIMITS, "durable_client", 1),
            "replication floor, 1 caller one hop away, fsync",
            "purple",
        ),
        (
            results.point(LIMITS, "trio_worker", 1),
            "trio floor, 1 caller one hop away, fsync in a worker thread",
            "tab:brown",
        ),
        (
            results.point(LIMITS, "memory_in_leader", 1),
            "replication floor, 1 caller in the leader, no fsync",
            "tab:orange",
        ),
    ]
    for p, label, color in refs:
        if p is not None:
            values.append(p["ops_per_s"])
            ax.axvline(
                p["ops_per_s"],
                color=color,
                linestyle="--",
                label=f"{label}: {p['ops_per_s']:,.0f}/s",
            )
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_xlim(min(values) / 2, max(values) * 3)  # room for the value labels
    ax.set_xlabel("writes per second (log scale)")
    ax.set_title("Replicated writes: raftsql and etcd fsync every ack, PySyncObj never does")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    return save(fig, path)


def draw_memory(data: Data, path: Path) -> Path:
    """RSS of every node against the number of applied writes."""
    fig, ax = pyplot().subplots(figsize=(8, 4))
    samples = data["samples"]
    for key in data["ratio_last_to_first"]:
        ax.plot(
            [s["writes"] for s in samples],
            [s[key] / 1024 for s in samples],
            label=key.replace("rss_kib_", ""),
        )
    ax.set_xlabel("acknowledged writes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("raftsql: node memory vs history (3 nodes, fsync on, compaction on)")
    ax.legend()
    return save(fig, path)


COST_WORKLOADS = [("insert_param", "tab:blue"), ("read_leader", "tab:green")]


def draw_node_cost(results: Results, path: Path) -> Path:
    """What each node spends per acknowledged request (CPU and context switches, from
    /proc) against client count: where batching pays, and what one client costs."""
    plt = pyplot()
    fig, (cpu, switches) = plt.subplots(1, 2, figsize=(13, 5))
    levels: set[int] = set()
    for workload, color in COST_WORKLOADS:
        pts = [p for p in results.points("raftsql_load", workload) if p.get("node_cost_per_op")]
        for role, style in (("leader", "-"), ("follower", "--")):
            rows = [(p["clients"], p["node_cost_per_op"].get(role)) for p in pts]
            rows = [(c, v) for c, v in rows if v]
            if not rows:
                continue
            xs = [c for c, _ in rows]
            levels.update(xs)
            label = f"{workload}, {role}{'' if role == 'leader' else ' (each)'}"
            line = {"color": color, "linestyle": style, "marker": "o", "label": label}
            cpu.plot(xs, [v["user_us"] + v["sys_us"] for _, v in rows], **line)
            switches.plot(xs, [v["switches"] for _, v in rows], **line)
    for ax in (cpu, switches):
        clients_axis(ax, sorted(levels))
        if levels:
            ax.legend(fontsize=8)
            ax.set_yscale("log")
            plain_log(ax.yaxis)
        else:
            not_measured(ax)
    cpu.set_ylabel("CPU per request (µs, user + system, log scale)")
    cpu.set_title("CPU per acknowledged request, per node")
    switches.set_ylabel("context switches per request (log scale)")
    switches.set_title("context switches per request, per node")
    fig.suptitle("raftsql: what each node spends per request (3 nodes, fsync on)")
    return save(fig, path)


def draw_paired(data: Data, path: Path) -> Path:
    """``paired_etcd``: every pair's ratio (raftsql burst / the etcd burst next to it) as a
    dot, the median as a bar, per target; the target (1x) as a dashed line."""
    plt = pyplot()
    pairs = data.get("pairs", [])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(pairs) + 1), 4.2))
    for k, p in enumerate(pairs):
        ratios = [b["ratio"] for b in p["bursts"]]
        # spread the dots sideways a little, deterministically, so equal ratios stay visible
        xs = [k + 0.25 * ((j * 0.618) % 1.0 - 0.5) for j in range(len(ratios))]
        ax.scatter(xs, ratios, s=14, alpha=0.6, color="tab:blue")
        ax.plot([k - 0.3, k + 0.3], [p["ratio_median"]] * 2, color="tab:red", linewidth=2.5)
        ax.annotate(
            f"{p['ratio_median']:.2f}{TIMES}",
            (k + 0.32, p["ratio_median"]),
            va="center",
            fontsize=8,
            color="tab:red",
        )
    if not pairs:
        not_measured(ax)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label=f"target: 1{TIMES} etcd")
    ax.set_xticks(
        range(len(pairs)),
        [
            f"{p['what'].replace('linearizable reads, ', 'lin. reads ')}\n{p['clients']} "
            f"client{'s' * (p['clients'] > 1)}"
            for p in pairs
        ],
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(pairs) - 0.2 if pairs else 0.6)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"raftsql / etcd, per pair of bursts ({TIMES})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    bursts = data.get("bursts", "?")
    ax.set_title(
        f"raftsql vs etcd in paired bursts ({bursts} pairs a point, both clusters up; red: median)",
        fontsize=9,
    )
    return save(fig, path)


def draw_all(quick: bool, directory: Path = common.RESULTS) -> list[Path]:
    """Every figure of this mode, from whatever results exist."""
    results = Results.load(quick, directory)

    def out(name: str) -> Path:
        return directory / png_name(name, quick)

    paths = [
        draw_vs_clients(
            results, WRITES, "Writes: raftsql vs etcd (3 nodes, fsync on)", out("writes_vs_clients")
        ),
        draw_vs_clients(
            results, READS, "Point reads: raftsql vs etcd (3 nodes)", out("reads_vs_clients")
        ),
        draw_latency_cdf(results, out("latency_cdf")),
        draw_failover(results, out("failover")),
        draw_peers_bars(results, out("peers_bars")),
        draw_node_cost(results, out("node_cost")),
    ]
    paired = results.get("paired_etcd")
    if paired:
        paths.append(draw_paired(paired, out("paired_etcd")))
    memory = results.get("memory_flat")
    if memory:
        paths.append(draw_memory(memory, out("memory_flat")))
    return paths


# --- the summary -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal for a ratio or a value: ``op`` is one of ">=", "<=", "<"."""

    op: str
    bound: float
    unit: str = TIMES

    def met(self, value: float) -> bool:
        checks: dict[str, Callable[[float, float], bool]] = {
            ">=": lambda v, b: v >= b,
            "<=": lambda v, b: v <= b,
            "<": lambda v, b: v < b,
        }
        return checks[self.op](value, self.bound)

    def __str__(self) -> str:
        symbol = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        return f"{symbol} {self.bound:g}{self.unit if self.unit == TIMES else ' ' + self.unit}"


Row = tuple[str, str, str, str, str, str]
SINGLE_CALLER = "writes/s, 1 caller: insert_param vs PySyncObj set_sync_single"
"""measure, raftsql, reference, ratio, target, verdict."""


def verdict(value: float | None, target: Target | None) -> str:
    if value is None:
        return MISSING
    if target is None:
        return "—"
    return "met" if target.met(value) else "NOT met"


def rate(p: Point | None) -> str:
    return f"{p['ops_per_s']:,.0f}/s" if p else MISSING


def p99(p: Point | None) -> str:
    v = number(p["p99_ms"]) if p else None
    return f"{v:.2f} ms" if v is not None else MISSING


def compare(
    measure: str, ours: Point | None, theirs: Point | None, key: str, target: Target | None
) -> Row:
    """A row comparing one figure (``ops_per_s`` or ``p99_ms``) of raftsql with a peer's, as
    the ratio raftsql / peer."""
    a = number(ours[key]) if ours else None
    b = number(theirs[key]) if theirs else None
    ratio = a / b if a is not None and b else None
    shown = f"{ratio:.2f}{TIMES}" if ratio is not None else MISSING
    show = rate if key == "ops_per_s" else p99
    return (measure, show(ours), show(theirs), shown, str(target or "—"), verdict(ratio, target))


def target_rows(r: Results) -> list[Row]:
    """The comparisons the performance work is aiming at, each met or not."""
    at_least_1 = Target(">=", 1.0)

    def insert(clients: int) -> Point | None:
        return r.point(RAFTSQL, "insert_param", clients)

    best = r.best(RAFTSQL, "insert_param")
    where = f" ({best['clients']} clients)" if best else ""
    pso_single = r.point(PYSYNCOBJ, "set_sync_single", 1)
    pso_async = r.best(PYSYNCOBJ, "set_async_10k_inflight")
    pipelined = r.best(RAFTSQL, "insert_pipelined")
    pipelined_callers = f"{pipelined['clients']:,}" if pipelined else "~10,000"
    etcd_range = r.point(ETCD, "range_linearizable", 64)
    specs: list[tuple[str, Point | None, Point | None, str, Target | None]] = [
        *(
            (
                f"writes/s at {c} client{'s' * (c > 1)}: insert_param vs etcd put",
                insert(c),
                r.point(ETCD, "put", c),
                "ops_per_s",
                at_least_1,
            )
            for c in (1, 16, 64)
        ),
        (
            SINGLE_CALLER,
            insert(1),
            pso_single,
            "ops_per_s",
            at_least_1,
        ),
        (
            f"best writes/s: insert_param{where} vs PySyncObj set_async_10k_inflight",
            best,
            pso_async,
            "ops_per_s",
            None,
        ),
        (
            f"writes/s, {pipelined_callers} callers in flight: insert_pipelined vs PySyncObj "
            "set_async_10k_inflight",
            pipelined,
            pso_async,
            "ops_per_s",
            None,
        ),
        *(
            (
                f"linearizable reads/s at 64 clients: {w} vs etcd range",
                r.point(RAFTSQL, w, 64),
                etcd_range,
                "ops_per_s",
                at_least_1,
            )
            for w in ("read_leader", "read_followers")
        ),
        (
            "p99 write latency at 16 clients: insert_param / etcd put",
            insert(16),
            r.point(ETCD, "put", 16),
            "p99_ms",
            Target("<=", 1.5),
        ),
    ]
    rows = [compare(*spec) for spec in specs]
    rows = [
        out_of_reach(row, r.get("paired_floor")) if row[0] == SINGLE_CALLER else row for row in rows
    ]
    return rows + failover_rows(r.get("failover"))


def out_of_reach(row: Row, paired_floor: Data | None) -> Row:
    """The single-caller row against PySyncObj, when not met, says so if the paired
    floors show that no trio node could meet it on this machine: the trio floor, which
    does nothing but the hops and the fsyncs (even with the fsync on its loop), below
    PySyncObj's caller. The best blocking floor with a client hop is shown beside it."""
    floors = (paired_floor or {}).get("floors") or {}

    def best(names: Sequence[str]) -> float | None:
        ratios = [floors[n]["ratio_median"] for n in names if n in floors]
        return max(ratios) if ratios else None

    trio = best(("trio_inline", "trio_worker"))
    blocking = best(("durable_client", "followers_client"))
    if row[5] != "NOT met" or trio is None or trio >= 1.0:
        return row
    why = (
        f"NOT met: out of reach for a trio node here (its floor, before any work, is "
        f"{trio:.2f}{TIMES} PySyncObj's caller"
    )
    if blocking is not None:
        why += f"; the best blocking floor with a client hop {blocking:.2f}{TIMES}"
    return (*row[:5], why + ")")


def paired_rows(data: Data | None) -> list[Row]:
    """The same targets against etcd, measured in alternating bursts (``paired_etcd``):
    the median of the burst-by-burst ratios, its quartiles beside it."""
    rows: list[Row] = []
    target = Target(">=", 1.0)
    for p in (data or {}).get("pairs", []):
        ratio = number(p["ratio_median"])
        shown = (
            f"{ratio:.2f}{TIMES} [{p['ratio_q1']:.2f}-{p['ratio_q3']:.2f}]"
            if ratio is not None
            else MISSING
        )
        measure = (
            f"{p['what']} at {p['clients']} client{'s' * (p['clients'] > 1)}: "
            f"{p['raftsql_workload']} vs etcd {p['etcd_workload']} ({len(p['bursts'])} pairs)"
        )
        ours, theirs = f"{p['raftsql_ops_per_s']:,.0f}/s", f"{p['etcd_ops_per_s']:,.0f}/s"
        rows.append((measure, ours, theirs, shown, str(target), verdict(ratio, target)))
    return rows


def failover_rows(data: Data | None) -> list[Row]:
    """First acknowledged write after a leader kill: p99 (the target) and median."""
    fw = (data or {}).get("first_write_s") or {}
    trials = len((data or {}).get("trials", []))
    rows = []
    for stat, target in (("p99", Target("<", 1.0, "s")), ("median", None)):
        value = number(fw.get(stat))
        shown = f"{value:.3f} s" if value is not None else MISSING
        measure = f"failover: {stat} first write after leader kill ({trials} trials)"
        rows.append((measure, shown, "—", "—", str(target or "—"), verdict(value, target)))
    return rows


def context_lines(r: Results) -> list[str]:
    """Figures with no target that help read the others: limits, catch-up, memory."""
    lines = [*limit_lines(r), *catchup_lines(r.get("catchup")), *memory_lines(r.get("memory_flat"))]
    load = r.get("raftsql_load")
    if load:
        driver = load.get("driver", "python")
        lines.append(
            f"- raftsql's requests sent by the {'C' if driver == 'c' else 'Python'} load "
            "generator (etcd's by wrk)"
        )
    fo = r.get("failover")
    if fo:
        ok = fo["verification"]["ok"]
        lines.append(
            f"- failover: election median {fo['election_s']['median'] * 1000:.0f} ms; steady "
            f"write p50/p99 {fo['steady_write_ms']['p50']:.1f}/{fo['steady_write_ms']['p99']:.1f}"
            f" ms; acknowledged writes {'all present exactly once' if ok else 'LOST OR DUPLICATED'}"
        )
    return lines


def limit_lines(r: Results) -> list[str]:
    sync = [r.point(LIMITS, w, 1) for w in ("fdatasync", "fsync")]
    batches = [r.point(LIMITS, f"insert_batch_{n}", 1) for n in (1, 10, 100, 1000)]
    if not any(sync + batches):
        return [f"- fsync rate, SQLite (apsw) alone: {MISSING}"]
    return [
        "- disk: "
        + ", ".join(
            f"{w} {rate(p)} (p99 {p99(p)})"
            for w, p in zip(("fdatasync", "fsync"), sync, strict=True)
        ),
        "- SQLite alone (apsw, WAL, synchronous=FULL), rows/s by rows per commit: "
        + ", ".join(f"{n}: {rate(p)}" for n, p in zip((1, 10, 100, 1000), batches, strict=True)),
        *floor_lines(r),
    ]


def floor_lines(r: Results) -> list[str]:
    """The replication floors (benchmarks/replication_floor.py, trio_floor.py), how close
    raftsql's and PySyncObj's single callers come to the floor of their own kind, and
    what the single-caller target leaves room for (paired_floor.py, write_work.py)."""
    durable_leader, durable_client, memory, followers = (
        r.point(LIMITS, w, 1) for w in replication_floor.VARIANTS
    )
    trio_inline, trio_worker = (r.point(LIMITS, w, 1) for w in trio_floor.VARIANTS)
    if not (durable_leader and durable_client and memory):
        return [f"- replication floor: {MISSING}", *room_lines(r)]
    ours = r.point(RAFTSQL, "insert_param", 1)
    theirs = r.point(PYSYNCOBJ, "set_sync_single", 1)

    def share(p: Point | None, floor: Point | None) -> str:
        return f"{p['ops_per_s'] / floor['ops_per_s']:.2f}{TIMES}" if p and floor else MISSING

    return [
        "- replication floor, one synchronous caller (3 processes, blocking sockets, "
        f"nothing else): durable, caller in the leader {rate(durable_leader)}; durable, "
        f"caller one hop away {rate(durable_client)} (the two followers as the majority, the "
        f"leader's copy unsynced: {rate(followers) if followers else MISSING}); no fsync, "
        f"caller in the leader {rate(memory)}",
        "- the same with a trio event loop in each node, caller one hop away: fsync on the "
        f"loop {rate(trio_inline)}; fsync in a worker thread, as raftsql must "
        f"{rate(trio_worker)}",
        f"- raftsql at 1 client is {share(ours, durable_client)} of the durable floor with a "
        f"client hop and {share(ours, trio_worker)} of the trio floor with a worker thread; "
        f"PySyncObj's synchronous caller is {share(theirs, memory)} of the no-fsync floor",
        *room_lines(r),
    ]


def room_lines(r: Results) -> list[str]:
    """The floors against PySyncObj's synchronous caller in alternating rounds, and
    raftsql's own work per write against the room that leaves."""
    lines = []
    paired = r.get("paired_floor")
    if paired:
        rounds = len(paired["pairs"])
        parts = [
            f"{FLOOR_NAMES.get(name, name)} {f['ratio_median']:.2f}{TIMES} "
            f"[{f['ratio_q1']:.2f}-{f['ratio_q3']:.2f}] (room per write "
            f"{f['room_us_median']:.0f} µs)"
            for name, f in paired["floors"].items()
        ]
        lines.append(
            f"- floors / PySyncObj's synchronous caller, in {rounds} alternating "
            f"round{'s' * (rounds > 1)}: "
            + "; ".join(parts)
            + f". Below 1{TIMES} (no room) no design of that kind can meet the single-caller "
            "target, whatever work it leaves out"
        )
    work = r.get("write_work")
    if work:
        stages = work["stages"]
        lines.append(
            f"- raftsql's own work per write, all waits taken out (write_work): "
            f"{work['critical_path_us']:.0f} µs on the critical path ("
            + ", ".join(f"{k} {stages[k]['median_us']:.0f}" for k in write_work.CRITICAL)
            + f"), {work['off_path_us']:.0f} µs beside it on average"
        )
    return lines


FLOOR_NAMES = {
    "durable_client": "blocking floor",
    "durable_in_leader": "blocking floor with the caller in the leader",
    "followers_client": "blocking floor with the followers as the majority",
    "trio_inline": "trio floor, fsync on the loop",
    "trio_worker": "trio floor with worker",
}


def catchup_lines(data: Data | None) -> list[str]:
    if not data:
        return [f"- catch-up: {MISSING}"]
    log, snap = data["log"], data["snapshot"]
    transfer = f"{snap['transfer_mb_s']} MB/s" if snap.get("transfer_mb_s") else "too quick to time"
    return [
        f"- log catch-up: {log['entries_behind']:,} entries ({log['writes']:,} rows) behind, "
        f"current {log['seconds']:.2f} s after restart ({log['serving_s']:.2f} s of it "
        f"starting up): {log['rows_per_s']:,.0f} rows/s",
        f"- snapshot catch-up: {snap['snapshot_bytes'] / 1e6:.1f} MB snapshot, current "
        f"{snap['seconds']:.2f} s after restart ({snap['serving_s']:.2f} s of it starting up); "
        f"transfer {transfer}, end to end {snap['end_to_end_mb_s']} MB/s",
    ]


def memory_lines(data: Data | None) -> list[str]:
    if not data:
        return [f"- memory (RSS per node at 100k and 1M writes): {MISSING}"]
    first, last = (str(m) for m in (data["marks"][0], data["marks"][-1]))
    at = data["rss_kib_at_mark"]
    nodes = ", ".join(
        f"{k.removeprefix('rss_kib_')} {at[first][k] / 1024:.1f} → {at[last][k] / 1024:.1f} MiB"
        f" ({ratio:.2f}{TIMES})"
        for k, ratio in data["ratio_last_to_first"].items()
    )
    return [f"- memory, RSS at {int(first):,} → {int(last):,} writes: {nodes}"]


def input_lines(r: Results) -> list[str]:
    """When each input was measured, so mismatched runs are visible."""
    lines = []
    for name in SOURCES:
        data = r.get(name)
        when = (data or {}).get("machine", {}).get("when", "time not recorded") if data else None
        lines.append(f"- `{json_name(name, r.quick)}`: {when or MISSING}")
    return lines


def markdown_rows(rows: Sequence[Row]) -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def summary(r: Results, failed: Sequence[str] = ()) -> str:
    """The summary markdown: targets (met or not), context figures, inputs.

    ``failed`` names the steps that failed in the run that wrote it: whatever results of
    theirs are shown are then left over from an earlier run, which the reader must know.
    """
    head = "| measure | raftsql | peer | ratio | target | verdict |\n|---|---|---|---|---|---|"
    table = markdown_rows(target_rows(r))
    paired = markdown_rows(paired_rows(r.get("paired_etcd")))
    paired_section = (
        "## The etcd targets in paired bursts\n\n"
        "Both clusters up at once, taking turns in short bursts; each ratio is a raftsql "
        "burst over the etcd burst next to it: median [quartiles].\n\n"
        f"{head}\n{paired}\n\n"
        if paired
        else ""
    )
    mode = (
        "**Quick (smoke) run**: a second or less per point, 1 and 4 clients only; the "
        "figures show the benchmarks work, not how fast anything is.\n\n"
        if r.quick
        else ""
    )
    if failed:
        mode += (
            f"**FAILED in this run: {', '.join(failed)}**; any figures of theirs below are "
            "from an earlier run (see Inputs).\n\n"
        )
    return (
        f"# Benchmark summary{' (quick run)' if r.quick else ''}\n\n{mode}"
        "3-node clusters on one machine, fsync on for raftsql and etcd; ratios are raftsql / "
        "peer from the same run. PySyncObj never fsyncs (its journal is not synced), so its "
        "figures are a ceiling, not a like-for-like peer.\n\n"
        f"## Targets\n\n{head}\n{table}\n\n"
        f"{paired_section}"
        "## Context\n\n" + "\n".join(context_lines(r)) + "\n\n"
        "## Inputs (measured at)\n\n" + "\n".join(input_lines(r)) + "\n"
    )


def write_summary(quick: bool, directory: Path = common.RESULTS, failed: Sequence[str] = ()) -> str:
    """Write ``summary.md`` (``summary.quick.md``) and return its text."""
    text = summary(Results.load(quick, directory), failed)
    path = directory / summary_name(quick)
    path.write_text(text)
    common.progress(f"wrote {path}")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="from the .quick.json smoke results")
    args = p.parse_args()
    draw_all(args.quick)
    print(write_summary(args.quick))


if __name__ == "__main__":
    main()
