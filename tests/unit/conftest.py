"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftsql.sql.machine import StateMachine


@pytest.fixture
def open_machine(tmp_path: Path) -> Iterator[Callable[..., StateMachine]]:
    """Opens state machines in the test's folder (by file name) and closes them after."""
    machines: list[StateMachine] = []

    def make(name: str = "node.db", **kw: int) -> StateMachine:
        m = StateMachine(str(tmp_path / name), **kw)
        machines.append(m)
        return m

    yield make
    for m in machines:
        m.close()
