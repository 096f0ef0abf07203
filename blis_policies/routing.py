"""Routing policies: which instance serves an admitted request."""

from __future__ import annotations

from blis_core.protocols import RoutingDecision


class RoundRobin:
    """Cycle through the routable instances in order (upstream's default)."""

    name = "round-robin"

    def __init__(self) -> None:
        # One counter per policy object, spanning changing snapshot sets, as upstream's does.
        self.counter = 0

    def route(self, request, state) -> RoutingDecision:
        snapshots = state.snapshots
        target = snapshots[self.counter % len(snapshots)]
        self.counter += 1
        return RoutingDecision(target.id, f"round-robin[{self.counter - 1}]")


class LeastLoaded:
    """Send each request to the least loaded instance (queued + running + in flight).

    Ties are broken with the router random stream, as upstream does.
    """

    name = "least-loaded"

    def __init__(self, rng=None) -> None:
        self.rng = rng

    def route(self, request, state) -> RoutingDecision:
        snapshots = state.snapshots
        loads = [s.queue_depth + s.batch_size + s.in_flight_requests for s in snapshots]
        least = min(loads)
        tied = [i for i, load in enumerate(loads) if load == least]
        pick = tied[self.rng.intn(len(tied))] if len(tied) > 1 else tied[0]
        return RoutingDecision(snapshots[pick].id, f"least-loaded (load={least})")


class AlwaysBusiest:
    """Pathological template: send every request to the most loaded instance."""

    name = "always-busiest"
    pathological = True

    def route(self, request, state) -> RoutingDecision:
        snapshots = state.snapshots
        best = 0
        best_load = snapshots[0].effective_load
        for i in range(1, len(snapshots)):
            load = snapshots[i].effective_load
            if load > best_load:
                best, best_load = i, load
        return RoutingDecision(snapshots[best].id, f"always-busiest (load={best_load})")
