"""Durability: the Raft log, the hard state and snapshot files, on real disks with fsync.

Synchronous, plain Python on purpose: the server calls it from a worker thread
(``trio.to_thread``) so that an fsync never stalls the event loop, heartbeats included
(etcd #7312). Nothing here knows about Raft's rules beyond what must survive a crash.
"""

from raftsql.storage.hardstate import CorruptHardStateError, HardStateStore
from raftsql.storage.logstore import (
    DEFAULT_SEGMENT_BYTES,
    CorruptLogError,
    LogStore,
    RecoveryReport,
    StorageError,
)
from raftsql.storage.recovery import Recovered, Storage, open_storage, recover
from raftsql.storage.snapshots import SnapshotError, SnapshotStore

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "CorruptHardStateError",
    "CorruptLogError",
    "HardStateStore",
    "LogStore",
    "Recovered",
    "RecoveryReport",
    "SnapshotError",
    "SnapshotStore",
    "Storage",
    "StorageError",
    "open_storage",
    "recover",
]
