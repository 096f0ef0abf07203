"""Flow control: a gateway queue between admission and routing (upstream ``--flow-control`` at
4e179804, cluster-policies.md section 3.7).

With flow control on, an admitted request joins the gateway queue instead of going straight to
routing. The queue dispatches its head (in the selected dispatch order) only while the
saturation detector says the cluster is below 1: once right after each enqueue, and after each
instance event in which requests finished, up to once per finished request while dispatching
succeeds. There is no timer, so a queue that stays saturated with nothing left to finish keeps
its requests to the end of the run (``Gateway Queue Depth (horizon)``). At
``--max-gateway-queue-depth`` the lowest-priority, latest request is shed; a newcomer displaces
a queued request only with a strictly higher SLO priority.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

import attrs

from blis_core.events import DISAGGREGATION, ROUTING
from blis_core.slo import slo_priority


@attrs.frozen
class FlowControlConfig:
    """The gateway queue of a run: detector and dispatch order plugins by name, the detector's
    constructor parameters, and the queue's capacity (0 = unlimited)."""

    detector: str = "never"
    dispatch_order: str = "fifo"
    max_queue_depth: int = 0
    detector_params: dict = attrs.field(factory=dict)


class GatewayQueue:
    """Admitted requests waiting for dispatch, with capacity shedding.

    Entries are ``(order key, seq, priority, request)``; ``seq`` (the cluster's event sequence
    number at enqueue) is unique, so ties of the key dispatch first come first.
    """

    __slots__ = ("heap", "key", "max_depth", "slo_priorities", "shed")

    def __init__(self, order, max_depth: int = 0, slo_priorities: dict | None = None) -> None:
        self.heap: list = []
        self.key = order.key
        self.max_depth = max_depth
        self.slo_priorities = slo_priorities
        self.shed = 0                       # requests dropped for capacity

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, req, seq: int) -> bool:
        """Queue ``req``; True when ``req`` itself was shed because the queue is full."""
        priority = slo_priority(req.slo_class, self.slo_priorities)
        entry = (self.key(req, priority), seq, priority, req)
        heap = self.heap
        if 0 < self.max_depth <= len(heap):
            victim = min(range(len(heap)), key=lambda i: (heap[i][2], -heap[i][1]))
            self.shed += 1
            _key, v_seq, v_priority, _req = heap[victim]
            if not (priority > v_priority or (priority == v_priority and seq < v_seq)):
                return True
            last = heap.pop()
            if victim < len(heap):
                heap[victim] = last
                heapify(heap)
        heappush(heap, entry)
        return False

    def pop(self):
        return heappop(self.heap)[3]

    def requests(self) -> list:
        """The queued requests, in dispatch order."""
        return [entry[3] for entry in sorted(self.heap, key=lambda e: (e[0], e[1]))]


class Gateway:
    """The cluster's flow control: its gateway queue and saturation detector."""

    def __init__(self, cluster, queue: GatewayQueue, detector) -> None:
        self.cluster = cluster
        self.queue = queue
        self.detector = detector
        self.finished = 0           # requests that left an instance in the current event

    def admit(self, req, time: int) -> None:
        """An admitted request joins the queue and one dispatch is tried."""
        cluster = self.cluster
        req.gateway_enqueue_time = time
        seq = cluster.seq           # gateway entries share the cluster's event counter
        cluster.seq += 1
        if self.queue.push(req, seq):
            req.gateway_enqueue_time = 0
            return
        self.try_dispatch()

    def try_dispatch(self) -> bool:
        """Send the head to routing unless the cluster is saturated; False if nothing left."""
        queue = self.queue
        if not queue:
            return False
        cluster = self.cluster
        if self.detector.saturation(cluster.router_state(None)) >= 1.0:
            return False
        req = queue.pop()
        time = cluster.clock
        req.gateway_dispatch_time = time
        if cluster.pd is not None:
            cluster._push(time, DISAGGREGATION, req)
        else:
            cluster._push(time + cluster.routing_latency, ROUTING, req)
        return True

    def after_instance_event(self) -> None:
        """Each request that finished may make room for one queued request."""
        finished, self.finished = self.finished, 0
        for _ in range(finished):
            if not self.try_dispatch():
                break
