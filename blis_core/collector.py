"""How long phases of blis hold back Python's cyclic garbage collector.

A young-generation collection runs after every 700 net container allocations and every tenth
one of those scans an older generation; the oldest, the whole heap. Workload generation and the
simulation allocate objects by the hundred thousand and keep nearly all of them, so those
passes find nothing while their cost grows with the heap (about 5% of a roofline run).
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

# The young generation's threshold inside ``collector_relaxed``: a pass per 10k allocations
# still frees any cycles a policy leaves behind, at a fourteenth of the passes.
RELAXED_THRESHOLD = 10_000

_lock = threading.Lock()
_relaxed_depth = 0
_saved_threshold = None


@contextmanager
def collector_paused():
    """No cyclic collection at all: for a phase that provably creates no garbage cycles
    (it only builds objects it returns)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def collector_relaxed():
    """Collections of objects made in this phase only, and rarely: what exists on entry is
    frozen (no pass scans it) and the young threshold is raised. For the simulation, where
    third-party policy code runs, so cycles must still be freed. Nested and concurrent uses
    share one setting; the outermost exit restores the collector."""
    global _relaxed_depth, _saved_threshold
    with _lock:
        if _relaxed_depth == 0:
            _saved_threshold = gc.get_threshold()
            gc.freeze()
            young = _saved_threshold[0]
            # 0 means the caller switched collection off; keep it off.
            gc.set_threshold(young and max(RELAXED_THRESHOLD, young), *_saved_threshold[1:])
        _relaxed_depth += 1
    try:
        yield
    finally:
        with _lock:
            _relaxed_depth -= 1
            if _relaxed_depth == 0:
                gc.set_threshold(*_saved_threshold)
                gc.unfreeze()
