"""`raftsql tui`: a live view of a cluster's health, with a few operator actions.

The app only draws ``tui.model.ClusterView`` objects; polling happens in a worker (the
blocking source runs in a thread through ``asyncio.to_thread``) so the screen stays
responsive while nodes, or the whole cluster, are down.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, RichLog, Sparkline, Static

from tui.model import (
    LAG_THRESHOLD,
    ClusterView,
    Event,
    Row,
    build_view,
    format_contact,
    format_uptime,
    latency_p99,
)
from tui.source import Source

CONTACT_WARN_SECONDS = 1.0
"""A follower not heard from for this long is shown in yellow: heartbeats go out every
50 ms by default, so a second of silence means a stalled disk, process or link."""

COLUMNS = (
    ("id", "id"),
    ("address", "address"),
    ("role", "role"),
    ("term", "term"),
    ("commit", "commit"),
    ("applied", "applied"),
    ("lag", "lag"),
    ("contact", "ack"),
    ("log", "log"),
    ("snap", "snapshot"),
    ("state", "state"),
    ("uptime", "uptime"),
)

HELP = """\
[b]raftsql tui[/b] — one row per node, refreshed every second.

[b]Verdict[/b]
  [green]HEALTHY[/green]      a leader, every node up and caught up
  [yellow]DEGRADED[/yellow]     a minority down, lagging or out of touch (named)
  [red]UNAVAILABLE[/red]  no quorum reachable, or no leader: writes cannot commit

[b]Columns[/b]
  lag          leader's last index - the follower's match index
  ack          seconds since the leader last heard from the follower (yellow over 1 s)
  log          first..last index of the node's log (older ones: in the snapshot)
  snapshot     index of the node's latest snapshot

[b]Keys[/b]
  ↑/↓          select a node
  t            transfer leadership to the selected node (asks first)
  s            take a snapshot now on the selected node (asks first)
  ctrl+p       command palette
  ?            this help
  q            quit
"""


def local_time(at: float) -> str:
    """Event timestamps in the terminal's local time."""
    return time.strftime("%H:%M:%S", time.localtime(at))


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: actions that change the cluster are never one keypress away."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid(id="confirm"):
            yield Label(self.question, id="question")
            yield Button("Yes (y)", variant="warning", id="yes")
            yield Button("No (n)", variant="primary", id="no")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HelpScreen(ModalScreen[None]):
    """What the colours, columns and keys mean."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP, id="help-text")
            yield Label("press escape, q or ? to close", id="help-footer")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class ClusterApp(App[None]):
    """The cluster-health screen: verdict, node table, throughput and an event log."""

    CSS_PATH = "app.tcss"
    TITLE = "raftsql"
    BINDINGS = [
        Binding("t", "transfer", "transfer leader"),
        Binding("s", "snapshot", "snapshot"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        source: Source,
        interval: float = 1.0,
        clock: Callable[[float], str] = local_time,
        lag_threshold: int = LAG_THRESHOLD,
    ) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.clock = clock
        self.lag_threshold = lag_threshold
        self.view: ClusterView | None = None
        self.events: list[Event] = []
        self.polls = 0  # how many polls were drawn: tests wait on it
        self._widths: list[int] = []
        self._writes: deque[float] = deque([0.0] * 60, maxlen=60)
        self._reads: deque[float] = deque([0.0] * 60, maxlen=60)
        self._write_p99: deque[float] = deque([0.0] * 60, maxlen=60)
        self._read_p99: deque[float] = deque([0.0] * 60, maxlen=60)

    # === layout ===========================================================================

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("connecting…", id="verdict")
        yield DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="rates"):
            yield Label("writes/s      0.0", id="writes-label")
            yield Sparkline(list(self._writes), id="writes")
            yield Label("reads/s      0.0", id="reads-label")
            yield Sparkline(list(self._reads), id="reads")
        with Horizontal(id="latency", classes="rates"):
            yield Label("write p99     -", id="write-p99-label")
            yield Sparkline(list(self._write_p99), id="write-p99")
            yield Label("read p99      -", id="read-p99-label")
            yield Sparkline(list(self._read_p99), id="read-p99")
        yield RichLog(id="events", markup=False, wrap=True, max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = ", ".join(self.source.addresses())
        table = self.query_one("#nodes", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#events", RichLog).border_title = "events"
        self.poll_loop()

    def on_unmount(self) -> None:
        self.source.close()

    # === polling ==========================================================================

    @work(exclusive=True, group="poll")
    async def poll_loop(self) -> None:
        """Poll forever; each poll runs in a thread, so the UI loop never blocks on it."""
        while True:
            started = time.monotonic()
            try:
                poll = await asyncio.to_thread(self.source.poll)
            except Exception as exc:  # a bug in a source must not kill the screen
                self._log(Event(time.time(), f"poll failed: {exc}", "error"))
                poll = None
            if poll is not None:
                self.show(build_view(self.view, poll, self.lag_threshold))
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    def show(self, view: ClusterView) -> None:
        """Draw one poll's view."""
        self.view = view
        self._draw_verdict(view)
        self._draw_table(view.rows)
        if view.rates is not None:
            self._writes.append(view.rates.writes)
            self._reads.append(view.rates.reads)
            self.query_one("#writes", Sparkline).data = list(self._writes)
            self.query_one("#reads", Sparkline).data = list(self._reads)
            self.query_one("#writes-label", Label).update(f"writes/s {view.rates.writes:8.1f}")
            self.query_one("#reads-label", Label).update(f"reads/s {view.rates.reads:8.1f}")
        for kind, history in (("write", self._write_p99), ("read", self._read_p99)):
            p99 = latency_p99(view.poll, kind)
            history.append(p99 or 0.0)
            self.query_one(f"#{kind}-p99", Sparkline).data = list(history)
            text = "-" if p99 is None else f"{p99:.1f}ms"
            self.query_one(f"#{kind}-p99-label", Label).update(f"{kind} p99 {text:>8}")
        for event in view.events:
            self._log(event)
        self.polls += 1

    def _draw_verdict(self, view: ClusterView) -> None:
        widget = self.query_one("#verdict", Static)
        widget.update(Text(view.verdict.text))
        for level in ("healthy", "degraded", "unavailable"):
            widget.set_class(view.verdict.level == level, level)

    def _cells(self, row: Row) -> list[Text]:
        def num(v: int | None) -> str:
            return "-" if v is None else str(v)

        dim = "" if row.reachable else "red"
        role_style = (
            "bold green"
            if row.is_leader
            else ("yellow" if row.role not in ("follower", "-") else "")
        )
        lag = Text(num(row.lag), style="bold yellow" if row.lagging else "")
        state = (
            Text("up", style="green") if row.reachable else Text("unreachable", style="bold red")
        )
        return [
            Text(num(row.node_id), style=dim),
            Text(row.address, style=dim),
            Text(row.role + (" (spare)" if row.spare else ""), style=role_style or dim),
            Text(num(row.term), style=dim),
            Text(num(row.commit)),
            Text(num(row.applied)),
            lag,
            Text(
                format_contact(row.contact),
                style="bold yellow" if (row.contact or 0.0) > CONTACT_WARN_SECONDS else "",
            ),
            Text(row.log_range),
            Text(num(row.snapshot_index)),
            state,
            Text(format_uptime(row.uptime)),
        ]

    def _draw_table(self, rows: list[Row]) -> None:
        """Update the cells in place; rebuild the table when the rows or the widths the
        cells need change. The widths are ours, set with the columns: the DataTable's own
        auto-width is measured later, on an idle event, and a loaded machine caught it
        drawing "unrea" for "unreachable" (the next poll would fix it; a snapshot not)."""
        table = self.query_one("#nodes", DataTable)
        keys = [r.address for r in rows]
        cells = [self._cells(row) for row in rows]
        widths = [
            max([Text(label).cell_len, *(line[i].cell_len for line in cells)])
            for i, (_, label) in enumerate(COLUMNS)
        ]
        if keys == [k.value for k in table.rows] and widths == self._widths:
            for row, line in zip(rows, cells, strict=True):
                for (col, _), cell in zip(COLUMNS, line, strict=True):
                    table.update_cell(row.address, col, cell)
            return
        selected = self.selected_row()
        table.clear(columns=True)
        for (key, label), width in zip(COLUMNS, widths, strict=True):
            table.add_column(label, key=key, width=width)
        self._widths = widths
        for row, line in zip(rows, cells, strict=True):
            table.add_row(*line, key=row.address)
        if selected is not None and selected.address in keys:
            table.move_cursor(row=keys.index(selected.address))

    def _log(self, event: Event) -> None:
        self.events.append(event)
        style = {"error": "bold red", "warning": "yellow"}.get(event.level, "")
        line = Text(f"{self.clock(event.at)}  ")
        line.append(event.text, style=style)
        log = self.query_one("#events", RichLog)
        # Wrap at the log's own width: left alone, RichLog measures text against the
        # console's width and wraps long events at ~80 columns even in a wide terminal.
        width = log.scrollable_content_region.width
        log.write(line, width=width if width > 0 else None)

    # === actions ==========================================================================

    def selected_row(self) -> Row | None:
        """The node under the table's cursor, as of the last poll."""
        if self.view is None:
            return None
        table = self.query_one("#nodes", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.view.rows if r.address == key), None)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_transfer(self) -> None:
        row = self.selected_row()
        if row is None or row.node_id is None:
            self.notify("select a node first", severity="warning")
            return
        if row.is_leader:
            self.notify(f"node {row.node_id} already leads", severity="warning")
            return
        if not row.reachable:
            self.notify(f"{row.label} is unreachable", severity="error")
            return
        target = row.node_id

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action(lambda: self.source.transfer_leader(target))

        self.push_screen(ConfirmScreen(f"Transfer leadership to {row.label}?"), answered)

    def action_snapshot(self) -> None:
        row = self.selected_row()
        if row is None:
            self.notify("select a node first", severity="warning")
            return
        if not row.reachable:
            self.notify(f"{row.label} is unreachable", severity="error")
            return
        address = row.address

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action(lambda: self.source.snapshot(address))

        self.push_screen(ConfirmScreen(f"Take a snapshot now on {row.label}?"), answered)

    @work(group="action")
    async def _run_action(self, call: Callable[[], str]) -> None:
        """Run a cluster action in a thread and report how it went."""
        try:
            message = await asyncio.to_thread(call)
        except Exception as exc:
            self.notify(f"failed: {exc}", severity="error", timeout=8)
            self._log(Event(time.time(), f"action failed: {exc}", "error"))
            return
        self.notify(message)
        self._log(Event(time.time(), message))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The two cluster actions, in the command palette (ctrl+p) too."""
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Transfer leadership", "Make the selected node the leader", self.action_transfer
        )
        yield SystemCommand(
            "Take snapshot", "Snapshot the selected node's state now", self.action_snapshot
        )


def run(hosts: str | list[str], interval: float = 1.0) -> int:
    """Entry point of `raftsql tui`."""
    from tui.source import ClusterSource

    ClusterApp(ClusterSource(hosts), interval=interval).run()
    return 0
