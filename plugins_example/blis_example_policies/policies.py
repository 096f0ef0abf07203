"""The policies. Each class carries the ``name`` users select it by; its docstring's first
line is the summary ``blis plugins list`` shows."""

from __future__ import annotations

from collections import deque

from blis_core import RoutingDecision


class ShortestQueue:
    """Route to the instance with the fewest waiting requests (lowest index on ties)."""

    name = "shortest-queue"

    def route(self, request, state) -> RoutingDecision:
        snapshots = state.snapshots
        best = min(range(len(snapshots)), key=lambda i: (snapshots[i].queue_depth, i))
        return RoutingDecision(snapshots[best].id, f"shortest-queue (depth={snapshots[best].queue_depth})")


class Lifo:
    """Serve the most recently arrived waiting request first."""

    name = "lifo"

    def order(self, queue):
        # A stable sort keeps equal arrival times in their queue order.
        return deque(sorted(queue, key=lambda r: -r.arrival_time))
