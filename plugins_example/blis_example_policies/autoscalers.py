"""An autoscaler: keep each replica's outstanding requests near a target."""

from __future__ import annotations

import math

from blis_core.protocols import ScaleDecision


class QueueTarget:
    """Size the fleet so that each replica has about `target` requests queued or in flight,
    one replica per tick toward that size. New replicas go to the first GPU type with room;
    drains come from the first replica's GPU type."""

    name = "queue-target"

    # blis passes the bundle's autoscaler.params as keyword arguments.
    def __init__(self, target: float = 8, max_replicas: float = 16) -> None:
        if target <= 0:
            raise ValueError(f"target must be > 0, got {target:g}")
        self.target = target
        self.max_replicas = int(max_replicas)

    def decide(self, state):
        out = []
        for signals in state.models:
            replicas = signals.replicas
            load = sum(r.queue_depth + r.in_flight for r in replicas)
            wanted = min(max(1, math.ceil(load / self.target)), self.max_replicas)
            if wanted > len(replicas):
                room = [v for v in state.variants if v.free_gpus >= v.tp]
                if room:
                    out.append(ScaleDecision(signals.model, room[0].gpu_type, room[0].tp, 1))
            elif wanted < len(replicas):
                first = replicas[0]
                out.append(ScaleDecision(signals.model, first.gpu_type, first.tp, -1))
        return out
