"""etcd, the reference Raft store, under the same load shape as raftsql, on the same machine.

A real 3-member etcd cluster (one process each, loopback, default fsync behaviour) is
started in a temp dir, and its leader's HTTP/JSON gateway is driven by wrk at each client
count (closed loop: one request in flight per connection):

- ``put``: ``/v3/kv/put`` of a 100-byte value, keys cycling over 10,000 names;
- ``range_linearizable``: ``/v3/kv/range`` of one of those keys (written beforehand),
  linearizable, which is etcd's default.

The wrk scripts (``benchmarks/wrk/*.lua``) report the request count, errors and latency
percentiles; a response that is not HTTP 200, or lacks what a success carries, counts as an
error and not as an op. Every process started here is stopped on the way out, Ctrl-C and
SIGTERM included.

    python -m benchmarks.peers_etcd [--quick] [--clients 1,16,64] [--duration 5]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common
from raftsql.cluster import free_ports

HOST = "127.0.0.1"
KEYS = 10_000
VALUE = b"x" * 100
TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the preload writes this many keys per transaction."""
WRK_DIR = Path(__file__).parent / "wrk"
WORKLOADS = {"put": "put.lua", "range_linearizable": "range.lua"}
INSTALL = "apt-get install etcd-server wrk"


def key_name(i: int) -> bytes:
    """The i-th benchmark key; the Lua scripts build the same names."""
    return f"bench/{i:05d}".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def require(tool: str) -> str:
    """The path of ``tool``, or a RuntimeError saying how to install it: a missing peer
    must fail loudly, since a silently skipped comparison looks like a finished one."""
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed; the etcd comparison needs it: {INSTALL}")
    return path


def tool_version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the benchmark dies without cleaning up
    (e.g. SIGKILL), so no etcd outlives it. Best effort; Linux only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def post(port: int, path: str, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """One JSON request to a member's gRPC gateway."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read()))


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class EtcdCluster:
    """Three etcd processes on loopback; a context manager that always stops them."""

    directory: Path
    size: int = 3
    members: list[Member] = field(default_factory=list)

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _argv(self, etcd: str, m: Member, initial: str) -> list[str]:
        client, peer = f"http://{HOST}:{m.client_port}", f"http://{HOST}:{m.peer_port}"
        return [
            etcd,
            "--name",
            m.name,
            "--data-dir",
            str(self.directory / m.name),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            f"bench-{os.getpid()}",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]

    def start(self) -> None:
        etcd = require("etcd")
        self.members = [
            Member(f"m{i}", *free_ports(2), self.directory / f"m{i}.log")
            for i in range(1, self.size + 1)
        ]
        initial = ",".join(f"{m.name}=http://{HOST}:{m.peer_port}" for m in self.members)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        for m in self.members:
            with m.log.open("wb") as log:
                m.process = subprocess.Popen(
                    self._argv(etcd, m, initial),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # before any thread of ours starts
                )

    def _healthy(self, m: Member) -> bool:
        try:
            url = f"http://{HOST}:{m.client_port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every member reports healthy (which needs an elected leader)."""
        deadline = time.monotonic() + timeout
        pending = list(self.members)
        while pending:
            for m in pending:
                assert m.process is not None
                if m.process.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited early:\n{self.tail(m)}")
            pending = [m for m in pending if not self._healthy(m)]
            if pending and time.monotonic() > deadline:
                names = ", ".join(m.name for m in pending)
                raise RuntimeError(
                    f"etcd not healthy after {timeout} s ({names}):\n" + self.tail(pending[0])
                )
            if pending:
                time.sleep(0.1)

    def leader(self) -> Member:
        """The member whose own id is the leader id it reports."""
        for m in self.members:
            status = post(m.client_port, "/v3/maintenance/status", {})
            if status.get("leader") and status["header"]["member_id"] == status["leader"]:
                return m
        raise RuntimeError("no etcd member reports itself as leader")

    def tail(self, m: Member, lines: int = 15) -> str:
        try:
            return "\n".join(m.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the members one at a time: SIGTERM the process group, SIGKILL after 5 s.

        One at a time because a leader given SIGTERM first hands leadership to a peer and
        stalls until the SIGKILL if every peer is shutting down at once.
        """
        for m in self.members:
            if m.process is None or m.process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.process.pid, signal.SIGTERM)
            try:
                m.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.process.pid, signal.SIGKILL)
                m.process.wait(timeout=5)


def preload(port: int) -> None:
    """Write every benchmark key (transactions of ``TXN_OPS`` puts), so the range
    workload only reads keys that exist."""
    value = b64(VALUE)
    for start in range(0, KEYS, TXN_OPS):
        puts = [
            {"request_put": {"key": b64(key_name(i)), "value": value}}
            for i in range(start, min(KEYS, start + TXN_OPS))
        ]
        reply = post(port, "/v3/kv/txn", {"success": puts}, timeout=30)
        if not reply.get("succeeded"):
            raise RuntimeError(f"etcd preload transaction failed: {reply}")


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    non200: int
    bad_body: int
    cdf_ms: list[tuple[float, float]]


def parse_wrk(stdout: str) -> WrkResult:
    """Read the ``wrk.*`` lines the scripts' ``done`` hook prints."""
    values: dict[str, list[str]] = {}
    latencies: list[float] = []
    for line in stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name == "wrk.latency_us":
            latencies.append(int(rest.split()[1]) / 1000)
        elif name.startswith("wrk."):
            values[name[4:]] = rest.split()
    if "requests" not in values or len(latencies) != len(common.CDF_QUANTILES):
        raise RuntimeError(f"wrk did not report its summary; output was:\n{stdout}")
    kinds = ["connect", "read", "write", "status", "timeout"]
    return WrkResult(
        requests=int(values["requests"][0]),
        duration_s=int(values["duration_us"][0]) / 1e6,
        errors=dict(zip(kinds, map(int, values["errors"]), strict=True)),
        non200=int(values["non200"][0]),
        bad_body=int(values["bad_body"][0]),
        cdf_ms=list(zip(common.CDF_QUANTILES, latencies, strict=True)),
    )


def run_wrk(port: int, script: str, clients: int, seconds: int) -> WrkResult:
    """One closed-loop wrk run against ``port``: ``clients`` connections for ``seconds``.

    wrk needs at least as many connections as threads; two threads (one per core) carry
    anything above a single client.
    """
    threads = 1 if clients == 1 else 2
    argv = [
        require("wrk"),
        f"-t{threads}",
        f"-c{clients}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_DIR / script),
        f"http://{HOST}:{port}",
    ]
    env = {
        **os.environ,
        "WRK_KEYS": str(KEYS),
        "WRK_PERCENTILES": ",".join(f"{q * 100:g}" for q in common.CDF_QUANTILES),
    }
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}\n{out.stdout}")
    return parse_wrk(out.stdout)


def measure(port: int, workload: str, clients: int, seconds: int) -> dict[str, Any]:
    """A point for ``workload`` at ``clients``; failed responses are errors, not ops."""
    r = run_wrk(port, WORKLOADS[workload], clients, seconds)
    socket_errors = r.errors["connect"] + r.errors["read"] + r.errors["write"]
    socket_errors += r.errors["timeout"]
    failed = r.non200 + r.bad_body
    return common.point(
        "etcd",
        workload,
        clients,
        r.requests - failed,
        r.duration_s,
        cdf_ms=r.cdf_ms,
        errors=socket_errors + failed,
        wrk_errors=r.errors,
        non200=r.non200,
        bad_body=r.bad_body,
        wrk_threads=1 if clients == 1 else 2,
    )


def run(
    quick: bool = False,
    clients: list[int] | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    """Start the cluster, measure every workload at every client count, always stop it."""
    etcd, wrk = require("etcd"), require("wrk")
    levels = clients or (common.QUICK_CLIENTS if quick else common.CLIENTS)
    seconds = max(1, round(duration or (1 if quick else 5)))  # wrk takes whole seconds
    points: list[dict[str, Any]] = []
    with common.sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="raftsql-etcd-") as tmp:
        began = time.monotonic()
        with EtcdCluster(Path(tmp)) as cluster:
            cluster.wait_healthy()
            startup_s = time.monotonic() - began
            leader = cluster.leader()
            common.progress(f"etcd cluster healthy in {startup_s:.1f} s, leader {leader.name}")
            began = time.monotonic()
            preload(leader.client_port)
            preload_s = time.monotonic() - began
            common.progress(f"preloaded {KEYS} keys in {preload_s:.1f} s")
            server_version = post(leader.client_port, "/v3/maintenance/status", {})["version"]
            for workload in WORKLOADS:
                for n in levels:
                    p = measure(cluster.leader().client_port, workload, n, seconds)
                    common.progress(common.describe(p))
                    points.append(p)
    data = {
        "points": points,
        "duration_s": seconds,
        "etcd_version": tool_version([etcd, "--version"]),
        "etcd_server_version": server_version,
        "wrk_version": tool_version([wrk, "--version"]),
        "members": 3,
        "startup_s": round(startup_s, 2),
        "preload_s": round(preload_s, 2),
        "keys": KEYS,
        "value_bytes": len(VALUE),
        "fsync": "etcd default (fsync on)",
        "client": "wrk over HTTP/1.1 keep-alive to the leader's JSON gateway",
    }
    common.save("peers_etcd", data, quick)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s per point, 1 and 4 clients")
    p.add_argument("--clients", help="comma-separated, e.g. 1,16,64")
    p.add_argument("--duration", type=float, help="seconds per point (whole seconds, default 5)")
    args = p.parse_args()
    try:
        run(
            args.quick,
            [int(c) for c in args.clients.split(",")] if args.clients else None,
            args.duration,
        )
    except KeyboardInterrupt:
        common.progress("interrupted; every etcd process started was stopped")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
