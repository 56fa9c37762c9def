"""`raftsql node | cluster up|down|status | status | shell | tui`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from raftsql import timing
from raftsql.cluster import DEFAULT_DIR, LocalCluster


def _peers(text: str) -> dict[int, tuple[str, int]]:
    from raftsql.server.config import parse_address

    peers = {}
    for item in text.split(","):
        ident, sep, addr = item.partition("=")
        if not sep or not ident.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected id=host:port, got {item!r}")
        peers[int(ident)] = parse_address(addr.strip())
    return peers


def cmd_node(args: argparse.Namespace) -> int:
    import trio

    from raftsql.server import gcpolicy
    from raftsql.server.config import NodeConfig
    from raftsql.server.node import serve_node

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s",
    )
    if args.id not in args.peers:
        print(f"error: --id {args.id} is not in --peers", file=sys.stderr)
        return 2
    config = NodeConfig(
        id=args.id,
        peers=args.peers,
        data_dir=Path(args.data_dir),
        tick_seconds=args.tick,
        election_ticks=args.election_ticks,
        heartbeat_ticks=args.heartbeat_ticks,
        snapshot_every=args.snapshot_every,
        snapshot_retain=args.snapshot_retain,
        quorum_first=args.quorum_first,
    )
    gcpolicy.settle()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve_node, config)
    return 0


def _cluster(args: argparse.Namespace) -> LocalCluster:
    return LocalCluster(directory=Path(args.dir), n=getattr(args, "nodes", 3))


def cmd_cluster(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if args.action == "up":
        cluster.start()
        print(f"raftsql cluster of {cluster.n} nodes is up in {cluster.directory}")
        print(f"connect: raftsql shell {','.join(cluster.addresses())}")
        print(f"   or in Python: raftsql.connect({cluster.url()!r})")
    elif args.action == "down":
        cluster.stop()
        print(f"raftsql cluster in {cluster.directory} is down")
    else:
        cluster._load()
        return _print_status(cluster.addresses())
    return 0


def _print_status(hosts: list[str]) -> int:
    from raftsql.client.client import Client

    statuses: dict[str, dict[str, Any] | Exception] = {}
    for host in hosts:
        try:
            with Client([host], timeout=1.0) as c:
                statuses[host] = c.status()
        except Exception as exc:
            statuses[host] = exc
    # the leader knows which followers are spares (quorum-first: sent entries once a tick)
    spares = {
        int(pid)
        for st in statuses.values()
        if isinstance(st, dict) and st["role"] == "leader"
        for pid, p in (st.get("progress") or {}).items()
        if p.get("spare")
    }
    rows = []
    for host, st in statuses.items():
        if isinstance(st, dict):
            role = st["role"] + (" (spare)" if st["id"] in spares else "")
            rows.append(
                [
                    str(st["id"]),
                    host,
                    role,
                    str(st["term"]),
                    str(st["leader"]),
                    str(st["commit"]),
                    str(st["applied"]),
                    f"{st['first_index']}..{st['last_index']}",
                    str(st["snapshot_index"]),
                    "up",
                ]
            )
        else:
            rows.append(["?", host, "-", "-", "-", "-", "-", "-", "-", f"unreachable ({st})"])
    head = ["id", "address", "role", "term", "leader", "commit", "applied", "log", "snap", "state"]
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0 if all(r[-1] == "up" for r in rows) else 1


def cmd_status(args: argparse.Namespace) -> int:
    if args.hosts:
        from raftsql.client.client import parse_hosts

        return _print_status([f"{h}:{p}" for h, p in parse_hosts(args.hosts)])
    cluster = _cluster(args)
    cluster._load()
    if not cluster.ports:
        print(f"no local cluster in {cluster.directory}: start one with `raftsql cluster up`")
        return 1
    return _print_status(cluster.addresses())


def cmd_shell(args: argparse.Namespace) -> int:
    from raftsql.shell import run_shell

    history = Path(args.history).expanduser() if args.history else None
    return run_shell(
        args.hosts,
        Path(args.dir),
        command=args.command,
        history=history,
        mode=args.mode,
        timeout=args.timeout,
    )


def cmd_tui(args: argparse.Namespace) -> int:
    if args.hosts:
        hosts = args.hosts
    else:
        cluster = _cluster(args)
        cluster._load()
        if not cluster.ports:
            print(f"no local cluster in {cluster.directory}: start one with `raftsql cluster up`")
            return 1
        hosts = ",".join(cluster.addresses())
    from tui.app import run  # lazily: Textual is slow to import and only this command needs it

    return run(hosts, interval=args.interval)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftsql", description="A replicated SQL database.")
    sub = p.add_subparsers(dest="cmd", required=True)

    node = sub.add_parser("node", help="run one node in the foreground")
    node.add_argument("--id", type=int, required=True)
    node.add_argument("--peers", type=_peers, required=True, help="1=127.0.0.1:7001,2=...")
    node.add_argument("--data-dir", required=True)
    node.add_argument("--tick", type=float, default=timing.TICK_SECONDS, help="seconds per tick")
    node.add_argument("--election-ticks", type=int, default=timing.ELECTION_TICKS)
    node.add_argument("--heartbeat-ticks", type=int, default=timing.HEARTBEAT_TICKS)
    node.add_argument("--snapshot-every", type=int, default=10_000)
    node.add_argument("--snapshot-retain", type=int, default=1_000)
    node.add_argument(
        "--quorum-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send new entries at once only to the followers a quorum needs, the others "
        "every tick (default; --no-quorum-first: to every follower at once)",
    )
    node.add_argument("-v", "--verbose", action="store_true")
    node.set_defaults(func=cmd_node)

    cluster = sub.add_parser("cluster", help="a local cluster of node processes")
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.add_argument("--nodes", type=int, default=3)
    cluster.add_argument("--dir", default=str(DEFAULT_DIR))
    cluster.set_defaults(func=cmd_cluster)

    status = sub.add_parser("status", help="each node's role, term, indexes, reachability")
    status.add_argument("hosts", nargs="?", help="h1:p1,h2:p2 (default: the local cluster)")
    status.add_argument("--dir", default=str(DEFAULT_DIR))
    status.set_defaults(func=cmd_status)

    shell = sub.add_parser("shell", help="an SQL shell (default: the local cluster)")
    shell.add_argument("hosts", nargs="?", help="h1:p1,h2:p2 (default: the local cluster)")
    shell.add_argument("-c", "--command", help="run this SQL (or dot-command) and exit")
    shell.add_argument("--dir", default=str(DEFAULT_DIR))
    shell.add_argument(
        "--mode",
        choices=["table", "csv", "json", "line"],
        default="table",
        help="output mode (as .mode; csv and json suit scripts)",
    )
    shell.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds a statement may take, retries through leader changes included",
    )
    shell.add_argument(
        "--history",
        help="history file (default: $RAFTSQL_HISTORY, else `history` in the cluster "
        "directory, or in $RAFTSQL_HOME or ~/.raftsql for other clusters)",
    )
    shell.set_defaults(func=cmd_shell)

    tui = sub.add_parser("tui", help="a live cluster-health screen (default: the local cluster)")
    tui.add_argument("hosts", nargs="?", help="h1:p1,h2:p2 (default: the local cluster)")
    tui.add_argument("--dir", default=str(DEFAULT_DIR))
    tui.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    tui.set_defaults(func=cmd_tui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
