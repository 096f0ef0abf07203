"""The cluster loop: one shared clock over arrival, admission, routing and every instance.

Every run goes through this loop, a single instance included, exactly as upstream's CLI does.
Cluster and instance events share one heap; see ``blis_core.events`` for the ordering key.
"""

from __future__ import annotations

from heapq import heappop, heappush

from blis_core.events import (ADMISSION, CLUSTER_ARRIVAL, CLUSTER_LANE, ROUTING)
from blis_core.protocols import RouterState, Snapshot

MAX_TICK = 2**63 - 1


class Cluster:
    """Runs requests through admission and routing into instances until the horizon."""

    def __init__(self, instances, admission, routing, *, horizon: int = MAX_TICK,
                 admission_latency: int = 0, routing_latency: int = 0, model: str = "",
                 sessions=None, audit: bool = False) -> None:
        self.instances = instances
        self.admission = admission
        self.routing = routing
        self.horizon = horizon
        self.admission_latency = admission_latency
        self.routing_latency = routing_latency
        self.model = model
        self.sessions = sessions
        self.heap: list = instances[0].heap if instances else []
        self.seq = 0
        self.clock = 0
        self.rejected = 0
        self.routing_rejections = 0
        self.by_id = {inst.id: inst for inst in instances}
        # Tests turn this on to check the clock and every instance's KV books after each event.
        self.audit = audit
        for inst in instances:
            inst.on_done = self._request_done

    def _push(self, time: int, kind: int, req) -> None:
        heappush(self.heap, (time, CLUSTER_LANE, kind, self.seq, kind, req))
        self.seq += 1

    def _request_done(self, req, tick: int) -> None:
        """Instance callback: a request left; a session may answer with its next round."""
        if self.sessions is not None:
            follow_up = self.sessions.on_complete(req, tick)
            if follow_up is not None:
                self._push(follow_up.arrival_time, CLUSTER_ARRIVAL, follow_up)

    def router_state(self, req) -> RouterState:
        snapshots = []
        clock = self.clock
        for inst in self.instances:
            if req is not None and req.model and self.model and req.model != self.model:
                continue
            kv = inst.kv
            used = kv.used_blocks()
            total = kv.total_blocks
            running = inst.running
            snapshots.append(Snapshot(
                inst.id,
                len(inst.wait),
                len(running) if running else 0,
                used / total if total > 0 else 0.0,
                total - used,
                kv.cache_hit_rate(),
                inst.in_flight,
                inst.counters.preemptions,
                self.model,
                "",
                0,
                0.0,
                total * kv.block_size,
                used * kv.block_size,
            ))
        return RouterState(snapshots, clock)

    def run(self, requests) -> None:
        for req in requests:
            self._push(req.arrival_time, CLUSTER_ARRIVAL, req)
        heap = self.heap
        horizon = self.horizon
        instances = self.instances
        while heap:
            time, lane, _prio, _seq, kind, req = heappop(heap)
            if time > horizon:
                break
            if self.audit:
                if time < self.clock:
                    raise AssertionError(f"clock went backwards: {time} < {self.clock}")
                self.clock = time
            if lane >= 0:
                instances[lane].handle(time, kind, req)
                if self.audit:
                    instances[lane].audit()
                continue
            self.clock = time
            if kind == CLUSTER_ARRIVAL:
                self._push(time + self.admission_latency, ADMISSION, req)
            elif kind == ADMISSION:
                admitted, _reason = self.admission.admit(req, self.router_state(req))
                if admitted:
                    self._push(time + self.routing_latency, ROUTING, req)
                else:
                    self.rejected += 1
            elif kind == ROUTING:
                state = self.router_state(req)
                if not state.snapshots:
                    self.routing_rejections += 1
                    continue
                target = self.by_id[self.routing.route(req, state).target]
                req.assigned_instance = target.id
                target.in_flight += 1
                target.inject(req, time)
        for inst in instances:
            inst.finalize()
