"""The replicated state machine: SQL in, identical SQLite databases out, on every node.

A pure, synchronous library (no trio, no networking): statements.py decides what may be
replicated (on the leader, before proposing), command.py is the log payload and the result
format, machine.py applies committed entries to the node's SQLite file through apsw.
"""

from raftsql.sql.command import (
    CommandResult,
    Statement,
    StatementResult,
    WriteCommand,
    statement,
)
from raftsql.sql.lexer import ParamStyle, split_script
from raftsql.sql.machine import MachineError, Snapshot, StateMachine, snapshot_index
from raftsql.sql.statements import Classification, check_params, classify

__all__ = [
    "Classification",
    "CommandResult",
    "MachineError",
    "ParamStyle",
    "Snapshot",
    "StateMachine",
    "Statement",
    "StatementResult",
    "WriteCommand",
    "check_params",
    "classify",
    "snapshot_index",
    "split_script",
    "statement",
]
