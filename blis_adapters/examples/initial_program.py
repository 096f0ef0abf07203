"""The starting point of an OpenEvolve run that evolves a blis routing policy.

OpenEvolve rewrites only the code between the EVOLVE-BLOCK markers. blis_adapters.openevolve
loads this file in a fresh process, registers every class in it that has a ``route`` method as
a routing policy (and one with ``order`` as a scheduler, ``compute`` as a priority policy,
``admit`` as an admission policy), runs the configured blis workload with it and scores the
run with the configured fitness weights.

The contract of a routing class (blis_core.protocols.RoutingPolicy): ``route(request, state)``
gets ``state.snapshots``, one read-only snapshot per instance (``id``, ``queue_depth``,
``batch_size``, ``in_flight_requests``, ``kv_utilization``, ``free_kv_blocks``,
``cache_hit_rate``, ...), and returns ``RoutingDecision(target_id, reason)`` naming one of them.
Randomness only from an ``rng`` constructor argument (blis passes its router stream); never
from global state, so every evaluation of a program gives the same score.
"""

from blis_core import RoutingDecision

# EVOLVE-BLOCK-START
class EvolvedRouter:
    """Send each request to the instance with the lowest weighted load (lowest index on ties)."""

    name = "evolved-router"

    # Only the wait queue counts at first: every queue is empty under light load, so this
    # piles requests onto the first instance until it queues. The other signals are there
    # for evolution to weigh in.
    queue_weight = 1.0
    in_flight_weight = 0.0
    kv_weight = 0.0

    def route(self, request, state):
        snapshots = state.snapshots

        def load(index):
            s = snapshots[index]
            return (self.queue_weight * s.queue_depth
                    + self.in_flight_weight * s.in_flight_requests
                    + self.kv_weight * s.kv_utilization, index)

        best = min(range(len(snapshots)), key=load)
        return RoutingDecision(snapshots[best].id, f"evolved (queue={snapshots[best].queue_depth})")
# EVOLVE-BLOCK-END
