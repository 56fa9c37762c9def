"""raftsql as a library inside a trio program, and the command line around a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from raftsql import errors
from raftsql.cluster import free_ports
from raftsql.server.config import NodeConfig
from raftsql.server.node import Node, open_node
from tests.e2e.cli_runner import run_cli
from tests.e2e.in_process import wait_leader

pytestmark = pytest.mark.timeout(120)


async def test_three_nodes_inside_one_trio_program(tmp_path: Path) -> None:
    ports = free_ports(3)
    peers = {i + 1: ("127.0.0.1", p) for i, p in enumerate(ports)}
    configs = [NodeConfig(id=i, peers=peers, data_dir=tmp_path / f"n{i}") for i in peers]
    async with open_node(configs[0]) as a, open_node(configs[1]) as b, open_node(configs[2]) as c:
        nodes = [a, b, c]
        leader = await wait_leader(nodes)
        follower = next(n for n in nodes if n is not leader)
        with pytest.raises(errors.NotLeaderError) as err:
            await follower.write([("CREATE TABLE t (x)", ())], forwarded=True)
        assert err.value.leader_addr == f"127.0.0.1:{peers[leader.config.id][1]}"
        await follower.write([("CREATE TABLE t (x)", ())])  # forwarded to the leader
        outcome = await leader.write(
            [("INSERT INTO t VALUES (?)", (1,)), ("INSERT INTO t VALUES (?)", (2,))],
            atomic=True,
            session=b"lib",
            seq=1,
        )
        (first, second) = outcome.unwrap()
        assert first.rowcount == second.rowcount == 1
        result = await follower.read("SELECT sum(x) FROM t")  # linearizable, on a follower
        assert result.rows == [(3,)]
        stale = await follower.read("SELECT count(*) FROM t", consistency="stale")
        assert stale.rows[0][0] in (0, 2)


async def test_a_single_node_restarts_with_its_data(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = NodeConfig(id=1, peers={1: ("127.0.0.1", port)}, data_dir=tmp_path / "solo")
    async with open_node(config) as node:
        await wait_leader([node])
        await node.write([("CREATE TABLE t (x)", ()), ("INSERT INTO t VALUES (42)", ())])
    async with open_node(config) as node:
        await wait_leader([node])
        assert (await node.read("SELECT x FROM t")).rows == [(42,)]


def test_cluster_up_status_shell_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = run_cli("cluster", "up", "--dir", str(home), home=home)
    try:
        assert up.returncode == 0, up.stderr
        assert "raftsql shell" in up.stdout
        status = run_cli("status", "--dir", str(home), home=home)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("leader") >= 1 and status.stdout.count(" up") == 3
        script = (
            "CREATE TABLE t (x);\nINSERT INTO t\n  VALUES (1), (2);\nSELECT sum(x) AS s FROM t;\n"
        )
        shell = run_cli("shell", "--dir", str(home), home=home, stdin=script)
        assert shell.returncode == 0, shell.stderr
        assert "s" in shell.stdout and "3" in shell.stdout
        bad = run_cli("shell", "--dir", str(home), "-c", "SELEC 1", home=home)
        assert bad.returncode == 1 and "error" in bad.stderr
        again = run_cli("shell", "--dir", str(home), "-c", "SELECT count(*) FROM t", home=home)
        assert "2" in again.stdout  # data persists between shell sessions
        # both followers replicate by now: one of them is the leader's spare
        replicating = run_cli("status", "--dir", str(home), home=home)
        assert replicating.stdout.count("follower (spare)") == 1, replicating.stdout
    finally:
        down = run_cli("cluster", "down", "--dir", str(home), home=home)
    assert down.returncode == 0
    after = run_cli("status", "--dir", str(home), home=home)
    assert after.returncode == 1 and "unreachable" in after.stdout


async def test_a_read_on_a_leader_that_lost_its_quorum_ends_in_an_error(tmp_path: Path) -> None:
    """The callback read path (what client connections use) never hangs and never answers
    from a leader that cannot confirm it still leads: with both followers gone, a read
    ends in RequestTimeout or NotLeaderError within the request timeout."""
    ports = free_ports(3)
    peers = {i + 1: ("127.0.0.1", p) for i, p in enumerate(ports)}
    configs = {
        i: NodeConfig(id=i, peers=peers, data_dir=tmp_path / f"n{i}", request_timeout=2.0)
        for i in peers
    }
    nodes: dict[int, Node] = {}
    stops = {i: trio.Event() for i in peers}

    async def run(i: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_node(configs[i]) as node:
            nodes[i] = node
            task_status.started()
            await stops[i].wait()

    async with trio.open_nursery() as nursery:
        for i in peers:
            await nursery.start(run, i)
        leader = await wait_leader(list(nodes.values()))
        await leader.write([("CREATE TABLE t (x)", ()), ("INSERT INTO t VALUES (7)", ())])
        ended: list[object] = []
        done = trio.Event()

        def on_done(slot: object) -> None:
            ended.append(slot)
            done.set()

        leader.start_read("SELECT x FROM t", (), "linearizable", on_done)
        with trio.fail_after(10):
            await done.wait()
        assert ended[0].error is None and ended[0].result.rows == [(7,)]  # type: ignore[attr-defined]
        for i in peers:
            if i != leader.config.id:
                stops[i].set()
        await trio.sleep(0.2)
        ended.clear()
        done = trio.Event()
        try:
            leader.start_read("SELECT x FROM t", (), "linearizable", on_done)
        except errors.NotLeaderError:
            pass  # it already stepped down (CheckQuorum): refused at once, also fine
        else:
            with trio.fail_after(10):
                await done.wait()
            error = ended[0].error  # type: ignore[attr-defined]
            assert isinstance(error, errors.RequestTimeout | errors.NotLeaderError), error
        stops[leader.config.id].set()
