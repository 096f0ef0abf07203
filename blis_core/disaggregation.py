"""Prefill/decode disaggregation, prefill-first as upstream at 4e179804.

With pools configured, ``instance_0..P-1`` prefill and ``instance_P..P+D-1`` decode. A request the
decider splits becomes a parent with two sub-requests: the prefill sub-request (the prompt, no
output) runs on a prefill instance; when it completes, its KV blocks travel to the decode pool
(a duration from the KV bytes and the link bandwidth, optionally shared among concurrent
transfers); then the decode sub-request is routed, its KV allocated on arrival, and it decodes
the whole output. The cluster's summary then counts each parent once, with its latencies
projected from the two halves (cluster-policies.md section 7.3).
"""

from __future__ import annotations

import logging
import math
import sys

import attrs

from blis_core.events import (DECODE_ROUTING, KV_TRANSFER_DONE, KV_TRANSFER_START,
                              PREFILL_ROUTING, ROUTING)
from blis_core.request import COMPLETED, TIMED_OUT, Request

log = logging.getLogger("blis")

_EMPTY_TOKENS = None   # set lazily: an empty int32 array for prefill sub-requests


@attrs.frozen
class PoolEngine:
    """A pool's own engine, from its per-pool overrides (``--prefill-tp`` and the like)."""

    latency: object
    total_kv_blocks: int
    max_model_len: int


@attrs.frozen
class PDConfig:
    """The pools and the KV link (``--prefill-instances`` and the ``--pd-*`` flags)."""

    prefill_instances: int
    decode_instances: int
    decider: str = "never"
    threshold: int = 512                 # offered to a decider whose constructor takes it
    transfer_bandwidth_gbps: float = 25.0
    transfer_base_latency_ms: float = 0.05
    transfer_contention: bool = False
    kv_bytes_per_token: float = 0.0
    prefill_routing: tuple = ()          # (name, params) of a pool's own router; () = the main one
    decode_routing: tuple = ()
    prefill_engine: PoolEngine | None = None   # None: the pool runs the model's engine
    decode_engine: PoolEngine | None = None


class Parent:
    """One disaggregated request and what happened to its halves."""

    __slots__ = ("request", "prefill", "decode", "num_kv_blocks", "prefill_instance",
                 "decode_instance", "prefill_enqueue_time", "prefill_complete_time",
                 "transfer_start", "transfer_complete", "decode_enqueue_time", "completion_time")

    def __init__(self, request, prefill, num_kv_blocks: int) -> None:
        self.request = request
        self.prefill = prefill
        self.decode = None
        self.num_kv_blocks = num_kv_blocks
        self.prefill_instance = ""
        self.decode_instance = ""
        self.prefill_enqueue_time = 0
        self.prefill_complete_time = 0
        self.transfer_start = 0
        self.transfer_complete = 0
        self.decode_enqueue_time = 0
        self.completion_time = 0


def _sub_request(req, suffix: str, output_tokens) -> Request:
    sub = Request(req.id + suffix, req.arrival_time, req.input_tokens, output_tokens,
                  req.max_output_len, req.deadline, prefix_group=req.prefix_group,
                  tenant_id=req.tenant_id, slo_class=req.slo_class, model=req.model)
    sub.hash_chain = req.hash_chain
    return sub


class Disaggregation:
    """The P/D state of one run; the cluster hands it its P/D events and instance events."""

    def __init__(self, cluster, config: PDConfig, decider, prefill_router, decode_router,
                 block_size: int, post_decode_overhead: int) -> None:
        self.cluster = cluster
        self.config = config
        self.decider = decider
        self.observe = getattr(decider, "observe", None)
        instances = cluster.instances
        p, d = config.prefill_instances, config.decode_instances
        self.prefill_ids = {inst.id for inst in instances[:p]}
        self.decode_ids = {inst.id for inst in instances[p:p + d]}
        self.prefill_router = prefill_router or cluster.routing
        self.decode_router = decode_router or cluster.routing
        self.block_size = block_size
        self.post_decode_overhead = post_decode_overhead
        self.parents: dict[str, Parent] = {}
        self.pending_prefill: dict[str, Parent] = {}    # prefill sub-request id -> parent
        self.pending_decode: dict[str, Parent] = {}
        self.prefill_done: list = []                    # finished in the current instance event
        self.decode_done: list = []
        self.prefill_completed = 0
        self.decode_completed = 0
        self.decode_timed_out = 0
        self.dropped_at_decode_kv = 0
        self.transfers_initiated = 0
        self.transfers_completed = 0
        self.active_transfers = 0
        self.peak_transfers = 0
        self.transfer_depth_sum = 0
        self.transfer_starts = 0
        self.corrupted = False

    # -- events -----------------------------------------------------------------------------------
    def decide(self, time: int, req) -> None:
        """DisaggregationDecisionEvent: split the request, or route it as usual."""
        cluster = self.cluster
        split = bool(self.decider.decide(req))
        if cluster.trace is not None:
            cluster.trace.record({"kind": "disaggregation", "request_id": req.id,
                                  "clock": time, "disaggregate": split})
        if not split:
            cluster._push(time + cluster.routing_latency, ROUTING, req)
            return
        global _EMPTY_TOKENS
        if _EMPTY_TOKENS is None:
            _EMPTY_TOKENS = req.output_tokens[:0]
        prefill = _sub_request(req, "_prefill", _EMPTY_TOKENS)
        parent = Parent(req, prefill, -(-req.num_input // self.block_size))
        self.parents[req.id] = parent
        cluster._push(time + cluster.routing_latency, PREFILL_ROUTING, parent)

    def route_prefill(self, time: int, parent: Parent) -> None:
        cluster = self.cluster
        sub = parent.prefill
        state = cluster.pool_state(sub, self.prefill_ids)
        if not state.snapshots:
            cluster.routing_rejections += 1
            return
        decision = self.prefill_router.route(sub, state)
        target = cluster.by_id[decision.target]
        sub.assigned_instance = target.id
        parent.prefill_instance = target.id
        parent.prefill_enqueue_time = time
        if cluster.trace is not None:
            cluster.trace.routing(sub.id, time, decision, state.snapshots, kind="prefill_routing",
                                  parent_id=parent.request.id)
        self.pending_prefill[sub.id] = parent
        cluster.deliver(sub, target, time)
        if self.observe is not None:
            self.observe(sub, target.id)

    def observe_routing(self, req, instance_id: str) -> None:
        """After a standard routing decision (the decider learns from every routed prompt)."""
        if self.observe is not None:
            self.observe(req, instance_id)

    def start_transfer(self, time: int, parent: Parent) -> None:
        self.transfers_initiated += 1
        parent.transfer_start = time
        config = self.config
        bandwidth = config.transfer_bandwidth_gbps * 1000.0          # bytes per microsecond
        if config.transfer_contention:
            self.active_transfers += 1
            if self.active_transfers > self.peak_transfers:
                self.peak_transfers = self.active_transfers
            self.transfer_depth_sum += self.active_transfers
            self.transfer_starts += 1
            if self.active_transfers > 1:
                bandwidth /= self.active_transfers
        duration = config.transfer_base_latency_ms * 1000.0
        if bandwidth > 0:
            transfer_bytes = parent.num_kv_blocks * (self.block_size * config.kv_bytes_per_token)
            duration += transfer_bytes / bandwidth
        ticks = max(1, math.ceil(duration))
        self.cluster._push(time + ticks, KV_TRANSFER_DONE, parent)

    def finish_transfer(self, time: int, parent: Parent) -> None:
        self.transfers_completed += 1
        parent.transfer_complete = time
        if self.config.transfer_contention:
            self.active_transfers -= 1
            if self.active_transfers < 0:
                self.active_transfers = 0
                self.corrupted = True
        req = parent.request
        decode = _sub_request(req, "_decode", req.output_tokens)
        decode.pd_decode = True
        parent.decode = decode
        self.cluster._push(time, DECODE_ROUTING, parent)

    def route_decode(self, time: int, parent: Parent) -> None:
        cluster = self.cluster
        sub = parent.decode
        state = cluster.pool_state(sub, self.decode_ids)
        if not state.snapshots:
            self.dropped_at_decode_kv += 1
            parent.completion_time = time
            return
        decision = self.decode_router.route(sub, state)
        target = cluster.by_id[decision.target]
        sub.assigned_instance = target.id
        if not target.kv.allocate(sub, 0, sub.num_input, None):
            self.dropped_at_decode_kv += 1
            parent.completion_time = time
            return
        sub.progress = sub.num_input
        parent.decode_instance = target.id
        parent.decode_enqueue_time = time
        trace = cluster.trace
        if trace is not None:
            trace.record({"kind": "kv_transfer", "request_id": parent.request.id, "clock": time,
                          "transfer_start": parent.transfer_start,
                          "transfer_duration": max(0, parent.transfer_complete
                                                   - parent.transfer_start),
                          "num_kv_blocks": parent.num_kv_blocks,
                          "prefill_instance": parent.prefill_instance,
                          "decode_instance": target.id})
            trace.routing(sub.id, time, decision, state.snapshots, kind="decode_routing",
                          parent_id=parent.request.id)
        self.pending_decode[sub.id] = parent
        cluster.deliver(sub, target, time, decode_with_kv=True)

    # -- instance events --------------------------------------------------------------------------
    def request_left(self, req) -> bool:
        """Instance callback for every request that left; True for a sub-request (whose session
        follow-up, if any, belongs to its parent)."""
        rid = req.id
        if rid in self.pending_prefill:
            if req.state == COMPLETED:
                self.prefill_done.append(rid)
            return True
        if rid in self.pending_decode:
            if req.state == COMPLETED or req.state == TIMED_OUT:
                self.decode_done.append(rid)
            return True
        return False

    def after_instance_event(self, time: int) -> None:
        """Upstream's detectPrefillCompletions / detectDecodeCompletions after an event."""
        cluster = self.cluster
        if self.prefill_done:
            done, self.prefill_done = sorted(self.prefill_done), []
            for rid in done:
                parent = self.pending_prefill.pop(rid)
                parent.prefill_complete_time = time
                self.prefill_completed += 1
                cluster._push(time, KV_TRANSFER_START, parent)
        if self.decode_done:
            done, self.decode_done = self.decode_done, []
            completed = sorted(r for r in done if self.pending_decode[r].decode.state == COMPLETED)
            timed_out = sorted(r for r in done if self.pending_decode[r].decode.state != COMPLETED)
            for rid in completed:
                parent = self.pending_decode.pop(rid)
                parent.completion_time = time + self.post_decode_overhead
                self.decode_completed += 1
                cluster.parent_done(parent.request, parent.decode, COMPLETED,
                                    parent.completion_time)
            for rid in timed_out:
                parent = self.pending_decode.pop(rid)
                parent.completion_time = time
                self.decode_timed_out += 1
                cluster.parent_done(parent.request, parent.decode, TIMED_OUT, time)

    def handle(self, time: int, kind: int, payload) -> None:
        if kind == PREFILL_ROUTING:
            self.route_prefill(time, payload)
        elif kind == KV_TRANSFER_START:
            self.start_transfer(time, payload)
        elif kind == KV_TRANSFER_DONE:
            self.finish_transfer(time, payload)
        elif kind == DECODE_ROUTING:
            self.route_decode(time, payload)
        else:
            self.decide(time, payload)

    # -- the end of the run -----------------------------------------------------------------------
    def in_transfer(self) -> int:
        return (self.prefill_completed - self.decode_completed - self.decode_timed_out
                - self.dropped_at_decode_kv - len(self.pending_decode))


class ParentView:
    """A disaggregated request as the cluster summary sees it: the original request with the
    latencies projected from its halves."""

    __slots__ = ("id", "arrival_time", "num_input", "num_output", "slo_class", "tenant_id",
                 "model", "length_capped", "state", "ttft_set", "first_token_time", "e2e",
                 "itl_mean", "scheduling_delay", "assigned_instance", "gateway_enqueue_time",
                 "gateway_dispatch_time")

    def __init__(self, parent: Parent) -> None:
        req = parent.request
        prefill, decode = parent.prefill, parent.decode
        self.id = req.id
        self.arrival_time = req.arrival_time
        self.num_input = req.num_input
        self.num_output = req.num_output
        self.slo_class = req.slo_class
        self.tenant_id = req.tenant_id
        self.model = req.model
        self.gateway_enqueue_time = req.gateway_enqueue_time
        self.gateway_dispatch_time = req.gateway_dispatch_time
        self.length_capped = False
        self.state = COMPLETED        # upstream also projects a parent whose decode timed out
        self.assigned_instance = parent.decode_instance
        self.scheduling_delay = prefill.scheduling_delay
        e2e = parent.completion_time - req.arrival_time
        self.e2e = e2e if e2e >= 0 else 0
        ttft = prefill.first_token_time if prefill.ttft_set else 0
        self.ttft_set = prefill.ttft_set
        if decode.state == COMPLETED and decode.first_itl is not None:
            ttft += (parent.transfer_complete - parent.transfer_start) + decode.first_itl
        else:
            log.warning("PD projection: no decode data for %s; its TTFT is the prefill TTFT",
                        req.id)
        self.first_token_time = ttft
        self.itl_mean = decode.itl_mean if decode.state == COMPLETED else 0.0


def completed_parents(pd: Disaggregation) -> list[Parent]:
    return [p for p in pd.parents.values() if p.completion_time > 0 and p.decode_instance]


@attrs.frozen
class PDMetrics:
    disaggregated: int
    dropped_at_decode_kv: int
    prefill_throughput: float
    decode_throughput: float
    load_imbalance_ratio: float
    parent_ttft: object            # Distribution (ticks)
    transfer_duration: object      # Distribution (ticks)
    peak_transfers: int | None
    mean_transfer_depth: float | None

    def lines(self) -> list[str]:
        ratio = self.load_imbalance_ratio
        out = ["=== PD Metrics ===",
               f"Disaggregated Requests: {self.disaggregated}",
               f"Dropped at Decode KV: {self.dropped_at_decode_kv}",
               f"Prefill Throughput: {self.prefill_throughput:.4f} sub-req/s",
               f"Decode Throughput: {self.decode_throughput:.4f} sub-req/s",
               "Load Imbalance Ratio: " + ("inf (one pool idle)" if ratio == sys.float_info.max
                                           else f"{ratio:.4f}")]
        for label, dist in (("Parent TTFT (us)", self.parent_ttft),
                            ("KV Transfer Duration (us)", self.transfer_duration)):
            if dist.count > 0:
                out.append(f"{label}: mean={dist.mean:.1f} p50={dist.p50:.1f} "
                           f"p95={dist.p95:.1f} p99={dist.p99:.1f}")
        if self.peak_transfers is not None:
            out.append(f"Peak Concurrent Transfers: {self.peak_transfers}")
            out.append(f"Mean Transfer Queue Depth: {self.mean_transfer_depth:.4f}")
        return out


def pd_metrics(pd: Disaggregation, instances, sim_ended_time: int,
               parent_views: list) -> PDMetrics | None:
    from blis_core.evaluation import Distribution

    if not pd.parents:
        return None
    parents = list(pd.parents.values())
    seconds = sim_ended_time / 1e6

    def throughput(ids) -> float:
        completed = sum(inst.counters.completed for inst in sorted(instances, key=lambda i: i.id)
                        if inst.id in ids)
        return completed / seconds if seconds > 0 else 0.0

    prefill, decode = throughput(pd.prefill_ids), throughput(pd.decode_ids)
    if prefill == 0 and decode == 0:
        ratio = 1.0
    elif prefill == 0 or decode == 0:
        ratio = sys.float_info.max
    else:
        ratio = max(prefill, decode) / min(prefill, decode)
    contention = pd.config.transfer_contention
    return PDMetrics(
        disaggregated=sum(1 for p in parents if p.transfer_complete > 0),
        dropped_at_decode_kv=sum(1 for p in parents
                                 if p.transfer_complete > 0 and not p.decode_instance),
        prefill_throughput=prefill, decode_throughput=decode, load_imbalance_ratio=ratio,
        parent_ttft=Distribution.of([v.first_token_time for v in parent_views
                                     if v.ttft_set and v.first_token_time > 0]),
        transfer_duration=Distribution.of([p.transfer_complete - p.transfer_start
                                           for p in parents if p.transfer_start > 0
                                           and p.transfer_complete >= p.transfer_start]),
        peak_transfers=pd.peak_transfers if contention else None,
        mean_transfer_depth=((pd.transfer_depth_sum / pd.transfer_starts
                              if pd.transfer_starts else 0.0) if contention else None),
    )
