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
