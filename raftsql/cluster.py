"""A local multi-node cluster of real `raftsql node` processes on loopback.

The embedded default for the shell, notebooks, tests and benchmarks. Its state lives in one
directory: ``cluster.json`` (ids, addresses, pids) and one data directory per node, so
``raftsql cluster up`` in one terminal and ``raftsql shell`` in another find the same
cluster, and its data survives from one run to the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftsql import timing
from raftsql.client.client import Client

DEFAULT_DIR = Path(os.environ.get("RAFTSQL_HOME", Path.home() / ".raftsql" / "local"))


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS says are free now (bind to port 0, read, close)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class LocalCluster:
    """``n`` node processes under ``directory``; ``start`` reuses a running cluster there."""

    directory: Path = DEFAULT_DIR
    n: int = 3
    host: str = "127.0.0.1"
    tick_seconds: float = timing.TICK_SECONDS
    election_ticks: int = timing.ELECTION_TICKS
    heartbeat_ticks: int = timing.HEARTBEAT_TICKS
    snapshot_every: int = 10_000
    snapshot_retain: int = 1_000
    ports: dict[int, int] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    pids: dict[int, int] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.directory / "cluster.json"

    def addresses(self) -> list[str]:
        return [f"{self.host}:{self.ports[i]}" for i in sorted(self.ports)]

    def address(self, node_id: int) -> str:
        return f"{self.host}:{self.ports[node_id]}"

    def url(self) -> str:
        return "raftsql://" + ",".join(self.addresses())

    def client(self, **kwargs: Any) -> Client:
        return Client(self.addresses(), **kwargs)

    # === lifecycle =======================================================================

    def start(self, wait: bool = True, timeout: float = 30.0) -> LocalCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load()
        if not self.ports:
            self.ports = dict(zip(range(1, self.n + 1), free_ports(self.n, self.host), strict=True))
        for i in sorted(self.ports):
            if not self.is_running(i):
                self.start_node(i)
        self._save()
        if wait:
            self.wait_for_leader(timeout)
        return self

    def start_node(self, node_id: int) -> None:
        peers = ",".join(f"{i}={self.host}:{p}" for i, p in sorted(self.ports.items()))
        data = self.directory / f"node{node_id}"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "raftsql",
            "node",
            "--id",
            str(node_id),
            "--peers",
            peers,
            "--data-dir",
            str(data),
            "--tick",
            str(self.tick_seconds),
            "--election-ticks",
            str(self.election_ticks),
            "--heartbeat-ticks",
            str(self.heartbeat_ticks),
            "--snapshot-every",
            str(self.snapshot_every),
            "--snapshot-retain",
            str(self.snapshot_retain),
        ]
        logf = open(data / "node.log", "ab")  # noqa: SIM115 (the child keeps it open)
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        self.procs[node_id] = proc
        self.pids[node_id] = proc.pid
        self._save()

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Stop one node abruptly (kill -9 by default) and wait until it is gone."""
        pid = self.pids.get(node_id)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        proc = self.procs.pop(node_id, None)
        if proc is not None:
            proc.wait(timeout=10)
        else:
            _wait_gone(pid)
        self.pids.pop(node_id, None)
        self._save()

    def restart(self, node_id: int) -> None:
        self.kill(node_id)
        self.start_node(node_id)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL for stragglers)."""
        self._load()
        for i in list(self.pids):
            self.kill(i, signal.SIGTERM)
        self.pids.clear()
        self._save()

    def is_running(self, node_id: int) -> bool:
        pid = self.pids.get(node_id)
        if pid is None:
            return False
        proc = self.procs.get(node_id)
        if proc is not None:
            return proc.poll() is None
        return _alive(pid)

    def wait_for_leader(self, timeout: float = 30.0) -> int:
        """Block until some node reports a leader whose no-op has committed."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for i in sorted(self.ports):
                if not self.is_running(i):
                    continue
                try:
                    with Client([self.address(i)], timeout=1.0) as c:
                        st = c.status()
                    if st["role"] == "leader" and st["commit"] >= 1:
                        return int(st["id"])
                except Exception as exc:  # not up yet
                    last = exc
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout}s ({last})")

    def statuses(self) -> dict[int, dict[str, Any] | None]:
        out: dict[int, dict[str, Any] | None] = {}
        for i in sorted(self.ports):
            try:
                with Client([self.address(i)], timeout=1.0) as c:
                    out[i] = c.status()
            except Exception:
                out[i] = None
        return out

    # === state file ======================================================================

    def _load(self) -> None:
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        self.host = state.get("host", self.host)
        self.ports = {int(k): int(v) for k, v in state["ports"].items()}
        self.pids = {int(k): int(v) for k, v in state.get("pids", {}).items()}
        self.n = len(self.ports)

    def _save(self) -> None:
        state = {"host": self.host, "ports": self.ports, "pids": self.pids}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
