"""What a process spent, read from /proc: CPU time (user, system) and context switches.

Why: on the 2-core machines we measure on, the nodes' CPU per request decides both
throughput (the cores are saturated from ~16 clients on) and, at one client, how often a
hop waits for a core. Reported per acknowledged request, per node, beside each raftsql
throughput point, so a speed change shows where the cost went.

Linux only (``/proc``); elsewhere :func:`sample` returns None and nothing is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    user_s: float
    sys_s: float
    switches: int
    """Voluntary + involuntary context switches, summed over the process's threads."""


def sample(pid: int) -> ProcSample | None:
    """The process's totals so far (threads included), or None if it cannot be read."""
    proc = Path(f"/proc/{pid}")
    try:
        # the command name may contain spaces or parentheses: split after the last ")"
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        switches = 0
        for status in (proc / "task").glob("*/status"):
            try:
                for line in status.read_text().splitlines():
                    if "ctxt_switches:" in line:
                        switches += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended meanwhile
    except (OSError, IndexError, ValueError):
        return None
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    return ProcSample(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS, switches)


def per_op(
    before: ProcSample | None, after: ProcSample | None, ops: int
) -> dict[str, float] | None:
    """CPU microseconds (user, system) and context switches per op between two samples."""
    if before is None or after is None or ops <= 0:
        return None
    return {
        "user_us": round((after.user_s - before.user_s) / ops * 1e6, 1),
        "sys_us": round((after.sys_s - before.sys_s) / ops * 1e6, 1),
        "switches": round((after.switches - before.switches) / ops, 2),
    }
