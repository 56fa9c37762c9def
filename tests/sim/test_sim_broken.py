"""The simulator must catch each deliberately broken core (tests/sim/broken.py).

For every variant, seeds are scanned in order until one breaks an invariant that this bug
should break; the test fails if none does within ``BUDGET`` seeds. The seed that caught it
is printed and shown in the terminal summary, and can be replayed with
``PYTHONPATH=. python -m tests.sim.simulator SEED --core NAME``.
"""

from __future__ import annotations

import pytest

from .broken import BROKEN
from .simulator import SimulationFailure, run_seed

BUDGET = 2000


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_core_is_caught(name: str, record_property: pytest.RecordProperty) -> None:
    variant = BROKEN[name]
    other: list[str] = []
    for seed in range(BUDGET):
        try:
            run_seed(
                seed,
                core_cls=variant.core,
                profile=variant.profile,
                liveness=variant.liveness,
                check_votes=variant.check_votes,
            )
        except SimulationFailure as e:
            if e.invariant in variant.invariants:
                first_line = str(e).splitlines()[0]
                line = f"broken core {name!r} caught by seed {seed} [{e.invariant}] ({first_line})"
                print(line)
                record_property("sim_summary", line)
                return
            other.append(f"{seed} ({e.invariant})")
    raise AssertionError(
        f"broken core {name!r} ({variant.core.__name__}) survived {BUDGET} seeds; "
        f"unexpected failures: {other}"
    )
