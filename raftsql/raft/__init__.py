"""The Raft protocol as a pure, deterministic state machine (no I/O, no clock, no trio).

The caller drives a :class:`RaftCore` with ``tick()``, ``step(message)``, ``propose(data)``,
``read_index(ctx)`` and ``transfer_leader(target)``, then drains a :class:`Ready` with
``ready()``, persists/sends/applies what it says, and acknowledges with ``advance(ready)``.
"""

from raftsql.raft.config import Config, Restored
from raftsql.raft.core import RaftCore, Role
from raftsql.raft.errors import NotLeader, ProposalDropped, RaftError
from raftsql.raft.ready import Ready

__all__ = [
    "Config",
    "NotLeader",
    "ProposalDropped",
    "RaftCore",
    "RaftError",
    "Ready",
    "Restored",
    "Role",
]
