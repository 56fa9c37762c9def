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


async def test_a_quiet_job_wakes_the_loop_only_for_a_waiter() -> None:
    """``submit_quiet``: the job's end is visible as ``done`` without anything run in the
    loop; a task already waiting is woken with the result; one that comes later gets it
    at once; an error reaches the waiter too."""
    worker = Worker("test-worker")
    try:
        woken: list[str] = []
        token = trio.lowlevel.current_trio_token()
        real_run_sync_soon = token.run_sync_soon

        def counting(fn: object, *args: object, **kw: object) -> None:
            woken.append(getattr(fn, "__name__", repr(fn)))
            real_run_sync_soon(fn, *args, **kw)  # type: ignore[arg-type]

        worker._token = type("Token", (), {"run_sync_soon": staticmethod(counting)})()
        ended = threading.Event()

        def job(k: int) -> int:
            ended.set()
            return k

        quiet = worker.submit_quiet(job, 7)
        await trio.to_thread.run_sync(ended.wait, 5)
        with trio.fail_after(5):
            while not quiet.done:
                await trio.sleep(0.001)
        assert woken == []  # nobody waited: the loop was not called
        assert await worker.wait(quiet) == 7

        gate = threading.Event()
        held = worker.submit_quiet(lambda: gate.wait(5) and "late")
        async with trio.open_nursery() as nursery:
            got: list[object] = []

            async def waiter() -> None:
                got.append(await worker.wait(held))

            nursery.start_soon(waiter)
            await trio.sleep(0.05)  # the waiter is parked on the job
            gate.set()
        assert got == ["late"] and woken == ["reschedule"]

        def fails() -> None:
            raise ValueError("disk on fire")

        with pytest.raises(ValueError, match="disk on fire"):
            await worker.wait(worker.submit_quiet(fails))
    finally:
        worker.close()
