"""fdatasync started through Linux AIO, its completion signalled on an eventfd.

Why: the event loop must never wait for a disk flush (LESSONS: etcd #7312), so the log's
fdatasync ran in the disk worker thread, and waking that thread, which then needs the
GIL, cost ~100 us per write on the 2-core machines we measure on: more than a third of
the fsync itself, on every write's path. ``io_submit`` with ``IOCB_CMD_FDSYNC`` hands the
flush to the kernel without a thread of ours: the loop submits (~20 us), goes on serving,
and learns of the completion from an eventfd it polls like a socket.

Only the common case uses it: entries appended at the tail of the current segment (see
``LogStore.append_at_tail``). Everything else (a new segment, a suffix replaced, a term or
vote to persist, snapshots) still goes through the disk worker. Where AIO is missing
(not Linux, an unknown architecture, a seccomp filter, a file system without AIO fsync)
:func:`open_aio` returns None or :meth:`AioSync.submit` raises, and the worker is used.

A failed flush is reported as its negative errno in the completion, and the caller must
treat it as it treats a failed ``fdatasync`` ("fsyncgate": poison the store, restart).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

_SYSCALLS = {"x86_64": (206, 207, 209, 208), "aarch64": (0, 1, 2, 4)}
"""io_setup, io_destroy, io_submit, io_getevents: their numbers per architecture."""
_IOCB_CMD_FDSYNC = 3
_IOCB_FLAG_RESFD = 1
_MAX_EVENTS = 64


class _Iocb(ctypes.Structure):
    """``struct iocb`` (linux/aio_abi.h), little-endian layout."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class AioSync:
    """One AIO context and one eventfd: submit flushes, poll ``eventfd``, then
    :meth:`collect`. Not thread-safe: the event loop alone uses it."""

    def __init__(self) -> None:
        machine = platform.machine()
        if not sys.platform.startswith("linux") or machine not in _SYSCALLS:
            raise OSError(f"no Linux AIO here ({sys.platform}, {machine})")
        self._nr_setup, self._nr_destroy, self._nr_submit, self._nr_getevents = _SYSCALLS[machine]
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._ctx = ctypes.c_ulong(0)
        if self._libc.syscall(self._nr_setup, _MAX_EVENTS, ctypes.byref(self._ctx)) != 0:
            raise OSError(ctypes.get_errno(), f"io_setup: {os.strerror(ctypes.get_errno())}")
        self.eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.pending = 0
        """Flushes submitted and not yet collected."""
        self._iocbs: list[_Iocb] = []  # kept alive until their completions are collected
        self._closed = False

    def submit(self, fds: Sequence[int]) -> None:
        """Start an fdatasync of each of ``fds``; returns at once. Raises OSError if the
        kernel refused (then nothing was started)."""
        if len(fds) + self.pending > _MAX_EVENTS:
            raise OSError(f"too many flushes in flight ({self.pending} + {len(fds)})")
        iocbs = []
        for fd in fds:
            cb = _Iocb()
            cb.aio_lio_opcode = _IOCB_CMD_FDSYNC
            cb.aio_fildes = fd
            cb.aio_flags = _IOCB_FLAG_RESFD
            cb.aio_resfd = self.eventfd
            iocbs.append(cb)
        pointers = (ctypes.POINTER(_Iocb) * len(iocbs))(*(ctypes.pointer(c) for c in iocbs))
        started = self._libc.syscall(self._nr_submit, self._ctx, len(iocbs), pointers)
        if started != len(iocbs):
            err = ctypes.get_errno() if started < 0 else 0
            if started > 0:
                # partly started: the rest cannot be retried as one batch; wait them out
                self.pending += started
                self._iocbs.extend(iocbs[:started])
            raise OSError(err, f"io_submit started {started} of {len(iocbs)} flushes")
        self.pending += started
        self._iocbs.extend(iocbs)

    def collect(self) -> list[int]:
        """The results of the flushes completed so far (0, or a negative errno), without
        waiting; [] if none (wait for ``eventfd`` to be readable first)."""
        try:
            os.eventfd_read(self.eventfd)
        except BlockingIOError:
            return []
        events = (_IoEvent * _MAX_EVENTS)()
        n = self._libc.syscall(self._nr_getevents, self._ctx, 0, _MAX_EVENTS, events, None)
        if n < 0:
            raise OSError(ctypes.get_errno(), "io_getevents")
        self.pending -= n
        if not self.pending:
            self._iocbs.clear()
        return [events[i].res for i in range(n)]

    def close(self) -> None:
        """Waits for flushes still in flight (io_destroy does), then frees the context."""
        if self._closed:
            return
        self._closed = True
        self._libc.syscall(self._nr_destroy, self._ctx)
        os.close(self.eventfd)
        self._iocbs.clear()


def open_aio() -> AioSync | None:
    """An :class:`AioSync`, or None where Linux AIO is unavailable (then: the worker)."""
    try:
        return AioSync()
    except OSError as exc:
        log.info("no AIO fdatasync (%s): the disk worker flushes the log", exc)
        return None
