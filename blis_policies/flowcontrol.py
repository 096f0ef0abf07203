"""Flow control: saturation detectors and dispatch orders of the gateway queue (upstream's
GIE-style flow control at 4e179804; blis_core.flowcontrol holds the queue itself)."""

from __future__ import annotations

import math

from blis_core.modelconfig import format_go_v


def _finite_positive(flag: str, value: float) -> float:
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{flag} must be a finite value > 0, got {format_go_v(value)}")
    return value


class NeverSaturated:
    """Never saturated: the gateway queue passes every request straight through."""

    name = "never"

    def saturation(self, state) -> float:
        return 0.0


class UtilizationDetector:
    """Mean over instances of max(queue depth / threshold, KV utilization / threshold)."""

    name = "utilization"

    def __init__(self, queue_depth_threshold: float = 5.0,
                 kv_cache_util_threshold: float = 0.8) -> None:
        self.queue_depth_threshold = _finite_positive("--queue-depth-threshold",
                                                      queue_depth_threshold)
        self.kv_cache_util_threshold = _finite_positive("--kv-cache-util-threshold",
                                                        kv_cache_util_threshold)

    def saturation(self, state) -> float:
        snapshots = state.snapshots
        if not snapshots:
            return 1.0          # no instance to send to counts as saturated
        qd, kv = self.queue_depth_threshold, self.kv_cache_util_threshold
        total = 0.0
        for s in snapshots:
            total += max(s.queue_depth / qd, s.kv_utilization / kv)
        return total / len(snapshots)


class ConcurrencyDetector:
    """Requests in flight over (instances x --max-concurrency)."""

    name = "concurrency"

    def __init__(self, max_concurrency: int = 100) -> None:
        if max_concurrency <= 0:
            raise ValueError(f"--max-concurrency must be > 0, got {max_concurrency}")
        self.max_concurrency = max_concurrency

    def saturation(self, state) -> float:
        snapshots = state.snapshots
        if not snapshots:
            return 1.0
        in_flight = sum(s.in_flight_requests for s in snapshots)
        return in_flight / (len(snapshots) * self.max_concurrency)


class FIFOOrder:
    """First come, first dispatched."""

    name = "fifo"

    def key(self, request, priority: int) -> int:
        return 0


class PriorityOrder:
    """Highest SLO priority first, first come first within a priority."""

    name = "priority"

    def key(self, request, priority: int) -> int:
        return -priority
