"""A dedicated worker thread that runs blocking calls for the trio event loop.

Why not ``trio.to_thread.run_sync``: it borrows a thread from a cache and hands the job
over through locks and the thread-cache bookkeeping; on the 2-core machines we measure on,
one such round trip costs ~90-170 us, more than the fsync it wraps. A thread that lives as
long as the node and takes jobs from a ``SimpleQueue`` costs about half of that, and the
node pays it several times per write (persist, apply, reads). Jobs run one at a time, in
the order submitted, which is also what the callers rely on (the persist/apply worker
keeps the Ready order; reads batch behind each other).

Like ``to_thread.run_sync``, a job cannot be abandoned: a cancelled caller still waits for
its job to finish, so no job ever outlives the state it works on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

log = logging.getLogger("raftsql.worker")

_Job = tuple[Callable[..., Any], tuple[Any, ...], Callable[[outcome.Outcome[Any]], None]]


class Pending:
    """A job started with :meth:`Worker.submit`."""

    def __init__(self) -> None:
        self.result: outcome.Outcome[Any] | None = None
        self.task: trio.lowlevel.Task | None = None


class Worker:
    """One thread, one queue. Create inside ``trio.run`` (it needs the loop's token);
    ``close()`` ends the thread after the jobs already queued."""

    def __init__(self, name: str) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, deliver = job
            result = outcome.capture(fn, *args)
            # drop our references before waiting for the next job, which may be long:
            # the result belongs to the caller alone (a snapshot kept alive here looked
            # "still open" to the next one)
            del job, fn, args
            try:
                self._token.run_sync_soon(deliver, result)
            except trio.RunFinishedError:
                return
            finally:
                del deliver, result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread; return its result or raise its error."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()

        def deliver(result: outcome.Outcome[Any]) -> None:
            trio.lowlevel.reschedule(task, result)

        self._jobs.put((fn, args, deliver))
        return await trio.lowlevel.wait_task_rescheduled(  # type: ignore[no-any-return]
            lambda _: trio.lowlevel.Abort.FAILED
        )

    def submit(
        self, fn: Callable[..., Any], *args: Any, then: Callable[[], None] | None = None
    ) -> Pending:
        """Start ``fn(*args)`` in the worker thread and return at once; collect its result
        with :meth:`wait` (the loop may do other work in between). ``then``, if given, is
        called on the loop the moment the job's result arrives, before the waiting task
        is woken (which takes another pass of the scheduler); an error it raises is logged, and
        the job's own result is delivered all the same."""
        pending = Pending()

        def deliver(result: outcome.Outcome[Any]) -> None:
            pending.result = result
            if then is not None:
                try:
                    then()
                except Exception:
                    log.exception("a completion callback of worker job %r failed", fn)
            if pending.task is not None:
                trio.lowlevel.reschedule(pending.task, result)

        self._jobs.put((fn, args, deliver))
        return pending

    @staticmethod
    async def wait(pending: Pending) -> Any:
        """The result of a submitted job (or its error). Like :meth:`run`, this waits
        for the job to finish even if the caller is cancelled."""
        if pending.result is not None:
            await trio.lowlevel.checkpoint()
            return pending.result.unwrap()
        pending.task = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    def call_soon_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """From inside a job: have the event loop call ``fn(*args)`` as soon as it can
        (used to send messages the moment their entries are on disk)."""
        self._token.run_sync_soon(fn, *args)

    def close(self) -> None:
        self._jobs.put(None)
