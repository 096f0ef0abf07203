"""Admission policies: who gets into the cluster (cluster-policies.md §3.2).

Every policy answers ``admit(request, state) -> (admitted, reason)`` at the admission event;
``state`` is the ``RouterState`` built for that event. A rejected request is counted (by SLO
tier) and dropped. None of these policies draws random numbers.
"""

from __future__ import annotations

import math

from blis_core.slo import slo_priority


def _finite_positive(value, what: str) -> float:
    value = float(value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{what} must be a finite value > 0, got {value:g}")
    return value


class AlwaysAdmit:
    """Admit every request (upstream's default)."""

    name = "always-admit"
    reads_router_state = False    # the cluster may pass None instead of building one

    def admit(self, request, state) -> tuple[bool, str]:
        return True, ""


class TokenBucket:
    """One global token bucket: a request costs its input length in tokens.

    The bucket starts full (``capacity`` tokens) and refills at ``refill_rate`` tokens per
    second of cluster clock, capped at the capacity; a request is admitted iff the bucket holds
    at least its cost, which is then taken out.
    """

    name = "token-bucket"

    def __init__(self, capacity: float = 10000.0, refill_rate: float = 1000.0) -> None:
        self.capacity = _finite_positive(capacity, "token-bucket capacity")
        self.refill_rate = _finite_positive(refill_rate, "token-bucket refill rate")
        self.tokens = self.capacity
        self.last_refill = 0

    def admit(self, request, state) -> tuple[bool, str]:
        clock = state.clock
        elapsed = clock - self.last_refill
        if elapsed > 0:
            # float64(elapsed) * rate / 1e6, in that order, as upstream computes it.
            self.tokens = min(self.capacity,
                              self.tokens + float(elapsed) * self.refill_rate / 1e6)
            self.last_refill = clock
        cost = float(request.num_input)
        if self.tokens >= cost:
            self.tokens -= cost
            return True, ""
        return False, "insufficient tokens"


class RejectAll:
    """Pathological template: reject every request."""

    name = "reject-all"
    pathological = True
    reads_router_state = False

    def admit(self, request, state) -> tuple[bool, str]:
        return False, "reject-all"


class TierShed:
    """Under overload, shed requests whose SLO tier priority is below a minimum.

    Overload means the largest effective load (queued + running + in flight) over the routable
    instances exceeds ``threshold``; then a request whose class priority is below
    ``min_priority`` is rejected. Upstream's CLI path leaves ``min_priority`` at 0 (a policy
    bundle that selects tier-shed defaults it to 3).
    """

    name = "tier-shed"

    def __init__(self, threshold: int = 0, min_priority: int = 0,
                 slo_priorities: dict | None = None) -> None:
        if threshold < 0:
            raise ValueError(f"tier-shed threshold must be >= 0, got {threshold}")
        self.threshold = int(threshold)
        self.min_priority = int(min_priority)
        self.slo_priorities = dict(slo_priorities or {})

    def admit(self, request, state) -> tuple[bool, str]:
        max_load = 0
        for snap in state.snapshots:
            load = snap.effective_load
            if load > max_load:
                max_load = load
        if max_load <= self.threshold:
            return True, ""
        cls = request.slo_class
        priority = slo_priority(cls, self.slo_priorities)
        if priority < self.min_priority:
            return False, (f"tier-shed: class={cls} priority={priority} "
                           f"< min={self.min_priority} load={max_load}")
        return True, ""


class GaieLegacy:
    """Shed sheddable requests (SLO priority < 0) while the cluster is saturated (GAIE legacy).

    Saturation is the mean over the routable instances of
    ``max(queue_depth / qd_threshold, kv_utilization / kv_threshold)`` (1.0 with no instance);
    a sheddable request is rejected when it reaches 1.0. Other requests are always admitted.
    """

    name = "gaie-legacy"

    def __init__(self, qd_threshold: float = 5.0, kv_threshold: float = 0.8,
                 slo_priorities: dict | None = None) -> None:
        self.qd_threshold = _finite_positive(qd_threshold, "gaie-legacy queue-depth threshold")
        kv_threshold = float(kv_threshold)
        if not 0 < kv_threshold <= 1:
            raise ValueError(f"gaie-legacy KV threshold must be in (0, 1], got {kv_threshold:g}")
        self.kv_threshold = kv_threshold
        self.slo_priorities = dict(slo_priorities or {})

    def saturation(self, state) -> float:
        snapshots = state.snapshots
        if not snapshots:
            return 1.0
        total = 0.0
        for snap in snapshots:
            qd = float(snap.queue_depth) / self.qd_threshold
            kv = snap.kv_utilization / self.kv_threshold
            total += max(qd, kv)
        return total / float(len(snapshots))

    def admit(self, request, state) -> tuple[bool, str]:
        cls = request.slo_class
        if slo_priority(cls, self.slo_priorities) >= 0:
            return True, ""
        sat = self.saturation(state)
        if sat >= 1.0:
            return False, f"gaie-saturated: class={cls} saturation={sat:.2f}"
        return True, ""
