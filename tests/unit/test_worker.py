"""The disk worker thread: jobs run in order, one at a time, and their results (or
errors) come back to the trio task that waits for them, even when it waited late."""

from __future__ import annotations

import threading

import pytest
import trio

from raftsql.server.worker import Worker


async def test_run_and_submit_keep_order_and_return_results() -> None:
    worker = Worker("test-worker")
    try:
        seen: list[int] = []
        gate = threading.Event()

        def job(k: int) -> int:
            if k == 0:
                gate.wait(5)  # hold the thread until the loop has done its own work
            seen.append(k)
            return k * 10

        first = worker.submit(job, 0)
        second = worker.submit(job, 1)
        assert first.result is None  # still running: submit did not wait
        gate.set()
        assert await worker.wait(first) == 0
        assert await worker.run(job, 2) == 20
        assert second.result is not None  # finished before we asked
        assert await worker.wait(second) == 10
        assert seen == [0, 1, 2]
    finally:
        worker.close()


async def test_a_jobs_error_reaches_its_waiter() -> None:
    worker = Worker("test-worker")
    try:

        def fails() -> None:
            raise ValueError("disk on fire")

        pending = worker.submit(fails)
        with pytest.raises(ValueError, match="disk on fire"):
            await worker.wait(pending)
        assert await worker.run(lambda: "still working") == "still working"
    finally:
        worker.close()


async def test_a_cancelled_waiter_still_waits_for_its_job() -> None:
    worker = Worker("test-worker")
    try:
        done = threading.Event()

        def slow() -> str:
            done.wait(0.2)
            done.set()
            return "finished"

        with trio.move_on_after(0.01):
            await worker.wait(worker.submit(slow))
        assert done.is_set(), "the waiter gave up before its job ended"
    finally:
        worker.close()


async def test_then_runs_on_the_loop_before_the_waiter_wakes() -> None:
    """``then`` is how the leader counts its own fsync without waiting for the Ready loop:
    it must run on the loop's thread, once the result is there, before the waiting task
    resumes; and a failing ``then`` must not cost the waiter its result."""
    worker = Worker("test-worker")
    try:
        loop_thread = threading.get_ident()
        events: list[str] = []

        def then() -> None:
            assert threading.get_ident() == loop_thread
            events.append("then")

        pending = worker.submit(lambda: events.append("job") or 7, then=then)
        result = await worker.wait(pending)
        events.append("waiter")
        assert (result, events) == (7, ["job", "then", "waiter"])

        def broken_then() -> None:
            raise RuntimeError("callback bug")

        assert await worker.wait(worker.submit(lambda: "kept", then=broken_then)) == "kept"
        assert await worker.run(lambda: "still working") == "still working"
    finally:
        worker.close()
