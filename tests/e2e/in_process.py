"""Nodes inside the test's own trio program (``open_node``), on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from raftsql.cluster import free_ports
from raftsql.server.config import NodeConfig
from raftsql.server.node import Node, open_node


async def wait_leader(nodes: list[Node]) -> Node:
    """The node that leads and has committed its term's first entry (within 20 s)."""
    with trio.fail_after(20):
        while True:
            for n in nodes:
                if n.status()["role"] == "leader" and n.core.commit >= 1:
                    return n
            await trio.sleep(0.02)


@asynccontextmanager
async def three_nodes(tmp_path: Path, **settings: object) -> AsyncIterator[list[Node]]:
    """Three nodes with ``settings`` (NodeConfig fields), all stopped at the end."""
    async with some_nodes(tmp_path, 3, **settings) as nodes:
        yield nodes


@asynccontextmanager
async def some_nodes(tmp_path: Path, n: int, **settings: object) -> AsyncIterator[list[Node]]:
    """``n`` nodes with ``settings`` (NodeConfig fields), all stopped at the end."""
    ports = free_ports(n)
    peers = {i + 1: ("127.0.0.1", p) for i, p in enumerate(ports)}
    async with AsyncExitStack() as stack:
        nodes = []
        for i in peers:
            config = replace(NodeConfig(id=i, peers=peers, data_dir=tmp_path / f"n{i}"), **settings)
            nodes.append(await stack.enter_async_context(open_node(config)))
        yield nodes
