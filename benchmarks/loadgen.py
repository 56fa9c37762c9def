"""A closed-loop load generator for raftsql's wire protocol: N connections, each with one
request in flight, like wrk's connections.

Why not the :class:`raftsql.client.Client` in N threads: on 2 shared cores, N Python
threads fighting over the GIL would measure the load generator, not the database. This is
one thread on one ``epoll`` loop, non-blocking sockets and frames built by plain byte
concatenation, so it costs a few microseconds per request (check its own CPU time in the
result: ``loadgen_cpu_s``).

Every reply is decoded and checked: an error answer counts as an error, never as an op.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftsql.net.framing import FrameDecoder, encode_frame

RequestMaker = Callable[[int, int], dict[str, Any]]
"""``(client_index, request_number) -> request map`` (without "id": the loop sets it)."""


@dataclass
class LoadResult:
    ops: int
    seconds: float
    latencies: list[float]
    errors: int
    error_samples: list[str] = field(default_factory=list)
    loadgen_cpu_s: float = 0.0
    probes: list[Any] = field(default_factory=list)
    """What ``probe`` returned when the measured window opened and when it closed."""
    errors_outside: int | None = None
    """Error answers to requests sent in the warmup (not in ``errors``): the C driver
    counts them (a request that failed there left no row); None if not counted."""


@dataclass
class _Conn:
    index: int
    sock: socket.socket
    decoder: FrameDecoder
    sent_at: float = 0.0
    number: int = 0
    outbox: bytes = b""
    writing: bool = False


def closed_loop(
    addresses: Sequence[tuple[str, int]],
    clients: int,
    make_request: RequestMaker,
    duration: float,
    warmup: float = 0.5,
    probe: Callable[[], Any] | None = None,
) -> LoadResult:
    """Drive ``clients`` connections (spread round-robin over ``addresses``) for
    ``warmup + duration`` seconds; only requests sent after the warmup are counted.

    ``probe`` (e.g. reading the nodes' CPU time) is called as the measured window opens
    and as it closes; its two results are in ``LoadResult.probes``."""
    sel = selectors.DefaultSelector()
    conns = [_open(i, addresses[i % len(addresses)]) for i in range(clients)]
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    probes: list[Any] = []
    try:
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
            _send_next(c, make_request, sel)
        inflight = len(conns)
        while inflight:
            window_edge = measure_from if not probes else stop_at
            if probe is not None and len(probes) < 2 and time.perf_counter() >= window_edge:
                probes.append(probe())
            for key, events in sel.select(timeout=0.1 if probe is not None else 1.0):
                c = key.data
                if events & selectors.EVENT_WRITE:
                    _flush(c, sel)
                if not events & selectors.EVENT_READ:
                    continue
                data = c.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError(f"node closed connection {c.index}")
                for reply in c.decoder.feed(data):
                    now = time.perf_counter()
                    if c.sent_at >= measure_from:
                        if isinstance(reply, dict) and reply.get("ok"):
                            latencies.append(now - c.sent_at)
                        else:
                            errors += 1
                            if len(samples) < 5:
                                samples.append(repr(reply)[:300])
                    if now < stop_at:
                        _send_next(c, make_request, sel)
                    else:
                        if probe is not None and len(probes) == 1:
                            probes.append(probe())  # the window closes with this reply
                        inflight -= 1
            if time.perf_counter() > stop_at + 30:
                raise TimeoutError(f"{inflight} requests unanswered 30 s after the end")
    finally:
        for c in conns:
            c.sock.close()
        sel.close()
    seconds = min(time.perf_counter(), stop_at) - measure_from
    return LoadResult(
        len(latencies), seconds, latencies, errors, samples, time.process_time() - cpu0, probes
    )


def _open(index: int, address: tuple[str, int]) -> _Conn:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode_frame({"hello": "client"}))
    sock.setblocking(False)
    return _Conn(index, sock, FrameDecoder(1 << 26))


def _send_next(c: _Conn, make_request: RequestMaker, sel: selectors.BaseSelector) -> None:
    c.number += 1
    request = make_request(c.index, c.number)
    request["id"] = c.number
    c.outbox = encode_frame(request)
    c.sent_at = time.perf_counter()
    _flush(c, sel)


def _flush(c: _Conn, sel: selectors.BaseSelector) -> None:
    try:
        sent = c.sock.send(c.outbox)
    except BlockingIOError:
        sent = 0
    c.outbox = c.outbox[sent:]
    if bool(c.outbox) != c.writing:  # epoll_ctl only when the interest changes
        c.writing = bool(c.outbox)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.writing else 0)
        sel.modify(c.sock, events, c)


def sessions(clients: int) -> list[bytes]:
    """One session id per client connection, so writes are deduplicated as a real
    client's are (each request ``seq`` = its request number)."""
    return [os.urandom(16) for _ in range(clients)]
