"""How a node process uses Python's cyclic garbage collector.

Why this matters: a full collection stops the event loop for as long as it takes to scan
every tracked object, and a busy leader holds many: with 10,000 writes in flight, ~370,000
objects, and full passes of 100-270 ms, several a second, on this project's 2-core
machines. A pause that long delays heartbeats, and with a few in a row the followers
elected a new leader in the middle of the load.

Two settings, both for the node process only (a library user's process keeps its own):

- everything alive once the node's code is imported (modules, sqlglot's dialect tables:
  ~45,000 objects) is moved out of the collector's sight with ``gc.freeze()``; it lives
  as long as the process, so scanning it again and again finds nothing;
- the youngest generation is collected after 20,000 allocations instead of 700, so that
  a write's short-lived objects (its request, its waiter, its answer) are mostly freed by
  reference counting before a collection can promote them, and the older generations fill,
  and are scanned, far less often.

Nearly everything a node allocates is freed by reference counting the moment it is no
longer used; the collector is only for cycles, which the node makes few of.
"""

from __future__ import annotations

import gc
from typing import Any

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 10


def settle() -> None:
    """Call once, after the node's imports and before it runs: collect what importing
    left, freeze the rest, and raise the youngest generation's threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def describe() -> dict[str, Any]:
    """The process's collector as ``status`` shows it: thresholds, objects frozen, and
    collections so far per generation (a full pass is the one that stops the loop)."""
    return {
        "thresholds": list(gc.get_threshold()),
        "frozen": gc.get_freeze_count(),
        "collections": [generation["collections"] for generation in gc.get_stats()],
    }
