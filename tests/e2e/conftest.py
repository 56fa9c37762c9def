"""Real node processes on loopback, one fresh cluster directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsql.cluster import LocalCluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[object]:
    """``make_cluster(n=3, **settings)`` starts a cluster; every one is stopped at the end."""
    started: list[LocalCluster] = []

    def make(n: int = 3, **settings: object) -> LocalCluster:
        cluster = LocalCluster(directory=tmp_path / f"cluster{len(started)}", n=n, **settings)
        started.append(cluster)
        return cluster.start(timeout=30)

    yield make
    for cluster in started:
        cluster.stop()
