"""Instance schedulers: the order of the wait queue before every batch formation (§3.5).

``order(queue)`` receives the wait queue (a ``deque``) after the priorities of this step have
been assigned and returns the queue to use. Every sort is stable, with upstream's keys (IDs
compare as strings, which for UTF-8 is upstream's byte order).
"""

from __future__ import annotations

from collections import deque


class FCFS:
    """Keep the wait queue in enqueue order (upstream's default; costs nothing per step)."""

    name = "fcfs"
    # The engine skips a no-op scheduler.
    noop = True

    def order(self, queue):
        return queue


def _priority_first(req):
    return (-req.priority, req.arrival_time, req.id)


def _shortest_first(req):
    return (req.num_input, req.arrival_time, req.id)


def _lowest_priority_first(req):
    return (req.priority, req.arrival_time, req.id)


class PriorityFCFS:
    """Highest priority first, then earliest arrival, then request ID."""

    name = "priority-fcfs"

    def order(self, queue):
        return deque(sorted(queue, key=_priority_first))


class SJF:
    """Shortest job first: fewest input tokens, then earliest arrival, then request ID."""

    name = "sjf"

    def order(self, queue):
        return deque(sorted(queue, key=_shortest_first))


class ReversePriority:
    """Pathological template: lowest priority first, then earliest arrival, then request ID."""

    name = "reverse-priority"
    pathological = True

    def order(self, queue):
        return deque(sorted(queue, key=_lowest_priority_first))
