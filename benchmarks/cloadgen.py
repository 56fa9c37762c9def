"""The C load generator (``cload/cload.c``): built on first use, run like :func:`closed_loop`.

Why a second driver: etcd is driven by wrk, in C. The Python driver (``loadgen.py``)
costs ~90 us of CPU per request at one client and ~30 us at 64, on the same 2 cores as the
three nodes, and at one client that time is on every request's path: part of what it
measured was itself. ``cload`` sends the same requests (``raftsql_load.WORKLOADS``),
checks every answer the same way and counts the same window, for a few microseconds a
request. Without a C compiler the benchmarks fall back to the Python driver and say so.

The measured window is opened and closed by ``cload``'s clock (CLOCK_MONOTONIC, which
``time.monotonic`` reads too): ``probe`` is called here at the same two instants.
"""

from __future__ import annotations

import array
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cbor2

from benchmarks.loadgen import LoadResult

SOURCE = Path(__file__).with_name("cload") / "cload.c"


class CloadUnavailable(RuntimeError):
    """No C compiler, or the build failed: use the Python driver."""


def build() -> Path:
    """The compiled driver, built once per source version (cached in the temp dir)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"raftsql-cload-{digest}"
    if binary.exists():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise CloadUnavailable("no C compiler (cc, gcc or clang) on PATH")
    partial = binary.with_suffix(".tmp")
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise CloadUnavailable(f"building {SOURCE.name} failed:\n{done.stderr[-2000:]}")
    partial.replace(binary)  # atomic: a concurrent build never sees half a binary
    return binary


def closed_loop_c(
    addresses: Sequence[tuple[str, int]],
    clients: int,
    workload: dict[str, str],
    duration: float,
    warmup: float = 0.5,
    probe: Callable[[], Any] | None = None,
    depth: int = 1,
) -> LoadResult:
    """Drive ``clients`` connections with ``cload`` for ``warmup + duration`` seconds,
    ``depth`` requests in flight on each (1: one caller per connection, waiting for each
    answer; more: an asynchronous caller that keeps that many outstanding).

    ``workload`` holds cload's flags: ``workload`` (insert_param, insert_literal, txn10,
    read), ``insert_sql``, ``read_sql``, ``payload``, ``keys``, ``consistency``.
    """
    binary = build()
    flags = {
        "workload": "-W",
        "insert_sql": "-i",
        "read_sql": "-r",
        "payload": "-p",
        "keys": "-k",
        "consistency": "-C",
    }
    with tempfile.NamedTemporaryFile(prefix="cload-latencies-") as lat:
        args = [str(binary), "-c", str(clients), "-d", str(duration), "-w", str(warmup)]
        args += ["-D", str(depth)]
        args += ["-o", lat.name]
        for host, port in addresses:
            args += ["-a", f"{host}:{port}"]
        for key, value in workload.items():
            args += [flags[key], str(value)]
        probes: list[Any] = []
        with subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None
                first = proc.stdout.readline()
                if first.startswith("start ") and probe is not None:
                    start = float(first.split()[1])
                    for edge in (start + warmup, start + warmup + duration):
                        time.sleep(max(0.0, edge - time.monotonic()))
                        probes.append(probe())
                out, err = proc.communicate(timeout=duration + warmup + 60)
            except BaseException:
                proc.kill()
                raise
        if proc.returncode != 0:
            raise RuntimeError(f"cload failed ({proc.returncode}): {err.strip()[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        latencies = array.array("d")
        latencies.frombytes(Path(lat.name).read_bytes())
    samples = [repr(cbor2.loads(bytes.fromhex(h)))[:300] for h in summary["error_samples"]]
    return LoadResult(
        summary["ops"],
        summary["seconds"],
        latencies.tolist(),
        summary["errors"],
        samples,
        summary["cpu_s"],
        probes,
        summary["errors_outside"],
    )
