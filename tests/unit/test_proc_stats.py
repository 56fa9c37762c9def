"""benchmarks.proc_stats reads a process's CPU time and context switches from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks import proc_stats

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")


_BURNER = """
import sys, time
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("burned", flush=True)
sys.stdin.readline()
"""


def test_cpu_time_and_switches_of_another_process_grow_with_its_work() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        before = proc_stats.sample(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burned\n"
        after = proc_stats.sample(child.pid)
        assert before is not None and after is not None
        spent = (after.user_s + after.sys_s) - (before.user_s + before.sys_s)
        assert 0.25 <= spent <= 0.45, spent  # it burned 0.3 s of CPU (10 ms clock ticks)
        assert after.switches > before.switches  # it slept on stdin, then was woken
        cost = proc_stats.per_op(before, after, 3)
        assert cost is not None
        assert cost["user_us"] + cost["sys_us"] == pytest.approx(spent / 3 * 1e6, rel=0.01)
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_and_an_empty_window_give_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert proc_stats.sample(child.pid) is None
    me = proc_stats.sample(os.getpid())
    assert me is not None
    assert proc_stats.per_op(me, me, 0) is None
    assert proc_stats.per_op(None, me, 10) is None
