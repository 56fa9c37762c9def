"""The batch of work the core hands to its caller after each round of inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from raftsql.raft.messages import (
    Entry,
    HardState,
    Message,
    ReadState,
    SnapshotChunk,
    SnapshotMeta,
)


@dataclass(slots=True)
class Ready:
    """What to do, in this order, before calling ``RaftCore.advance(ready)``:

    1. send ``messages`` (they do not depend on anything below being durable: the leader's
       AppendEntries go out while it writes its own log, thesis §10.2.1);
    2. write ``snapshot_chunks`` into the staging file of their snapshot; if ``snapshot`` is
       set, install it (replace the state machine by the staged file, drop the stored log);
    3. persist ``entries`` (the first entry's index says where to truncate the stored log
       before appending) and ``hard_state``, and fsync;
    4. send ``messages_after_persist`` (votes and acknowledgements: they promise durability);
    5. apply ``committed`` entries in order;
    6. serve each read in ``read_states`` once the applied index reaches its ``index``.
    """

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    snapshot_chunks: list[SnapshotChunk] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    messages_after_persist: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.entries
            or self.snapshot
            or self.snapshot_chunks
            or self.messages
            or self.messages_after_persist
            or self.committed
            or self.read_states
        )
