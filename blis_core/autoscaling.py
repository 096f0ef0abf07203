"""The autoscaler loop: scaling ticks, actuation, instance lifecycle and elasticity metrics.

Upstream at 4e179804 (cluster-policies.md §7.4) runs, every ``interval_us`` from t = 0, a
*scaling tick* (cluster event priority 8): it collects the routable instances' snapshots into
per-model signals, asks the autoscaler for scale decisions and, if any, schedules a *scale
actuation* (priority 9) one HPA scrape delay later. Actuating ``+1`` places a new instance
``autoscale-<model>-<%06d>`` first-fit on the node pools (a placement that does not fit is
logged and skipped, its sequence number spent); ``-1`` drains the lexicographically smallest
Active instance of that model and variant, which stops being routable and is terminated, its
GPUs released, after one of its own events finds it idle. Ticks stop rescheduling themselves in
a run without a horizon once no arrival is pending and nothing is in flight.

blis extensions, all off by default (docs/autoscaling.md): a model loading delay, node
provisioning when a scale-up finds no room (``autoscaler.provision_nodes``), a warm-up of an
added instance's first steps, and the drain policies IMMEDIATE and REDIRECT beside upstream's
WAIT behaviour.

Which autoscaler decides is a plugin (protocol ``blis_core.protocols.Autoscaler``): upstream's
pipeline is ``wva`` (blis_policies.autoscalers). This module owns only the mechanics and the
elasticity metrics (scale-ups, scale-downs, replica-seconds, cost, oscillations), which
upstream does not produce.
"""

from __future__ import annotations

import logging

import attrs

from blis_core.events import (ARRIVAL, INSTANCE_LOADED, MAX_TICK, NODE_READY, QUEUED, ROUTING,
                              SCALE_ACTUATION, SCALING_TICK, TIMEOUT)
from blis_core.infrastructure import (ACTIVE, DRAINING, LOADING, NODE_PROVISIONING, NODE_READY as
                                      NODE_IS_READY, SCHEDULING, TERMINATED, WARMING_UP,
                                      transition)
from blis_core.protocols import ModelSignals, ReplicaMetrics, ScalingState, VariantInfo

log = logging.getLogger("blis")

__all__ = ["DRAIN_POLICIES", "AutoscalerConfig", "Elasticity", "ElasticityMetrics",
           "InstanceLifecycle", "sample_delay"]

# Upstream's declared drain policy names (not wired at 4e179804); WAIT is its behaviour.
DRAIN_POLICIES = ("IMMEDIATE", "REDIRECT", "WAIT")


@attrs.frozen
class InstanceLifecycle:
    """How the instances an autoscaler adds come up and how drained ones go (blis extensions;
    the defaults are upstream's behaviour)."""

    loading_delay: tuple = (0.0, 0.0)       # (mean, stddev) seconds before it is routable
    warm_up_steps: int = 0                  # its first steps once loaded ...
    warm_up_factor: float = 1.0             # ... take this many times their step time
    drain_policy: str = "WAIT"
    provision_nodes: bool = False           # a scale-up with no room provisions a node


@attrs.frozen
class AutoscalerConfig:
    """The autoscaler of a run: which plugin, its parameters and the loop's timing."""

    interval_us: int                        # tick period (upstream truncates the bundle float)
    policy: str = "wva"
    params: dict = attrs.field(factory=dict)
    scrape_delay_mean: float = 0.0          # HPA scrape delay, seconds
    scrape_delay_stddev: float = 0.0
    # blis: two scale actions in opposite directions at most this far apart are an oscillation
    # (0: three tick intervals, long enough for a reversal on the next tick or the one after).
    oscillation_window_us: int = 0

    @property
    def oscillation_window(self) -> int:
        return self.oscillation_window_us or 3 * self.interval_us


def sample_delay(mean: float, stddev: float, rng) -> int:
    """Upstream DelaySpec.Sample: seconds to ticks, Gaussian clamped at 0 when stddev > 0."""
    secs = mean if stddev <= 0 else max(0.0, rng.norm_float64() * stddev + mean)
    return int(secs * 1e6)


@attrs.frozen
class ElasticityMetrics:
    """What the autoscaler did over a run (blis only; upstream reports none of it)."""

    scale_ups: int = 0                      # instances the autoscaler created
    scale_downs: int = 0                    # instances it set draining
    failed_placements: int = 0              # scale-ups that found no free GPUs
    scale_oscillations: int = 0             # direction reversals within the window
    replica_seconds: float = 0.0            # time instances held GPUs, summed
    gpu_cost: float = 0.0                   # replica-seconds priced at their pool's cost/hour
    min_replicas: int = 0                   # fewest / most routable replicas at any time
    max_replicas: int = 0
    mean_replicas: float = 0.0              # time-weighted over the run
    timeline: tuple = ()                    # (tick, routable replicas) at every change
    # Drain policies: requests an IMMEDIATE drain abandoned (also in dropped_unservable, so
    # conservation holds) and queued requests a REDIRECT drain sent back through routing.
    drain_dropped: int = 0
    drain_redirected: int = 0
    nodes_provisioned: int = 0

    def to_dict(self) -> dict:
        out = attrs.asdict(self)
        out["timeline"] = [list(point) for point in self.timeline]
        return out


class Elasticity:
    """Drives the autoscaler inside a cluster: ticks, actuations, drains and terminations."""

    def __init__(self, cluster, config: AutoscalerConfig | None, autoscaler, placement,
                 make_instance, rng, tp: int, lifecycle: InstanceLifecycle = InstanceLifecycle(),
                 loading_rng=None, provisioning_rng=None) -> None:
        self.cluster = cluster
        self.config = config
        self.autoscaler = autoscaler
        self.placement = placement
        self.make_instance = make_instance
        self.rng = rng
        self.tp = tp if tp >= 1 else 1
        self.lifecycle = lifecycle
        self.loading_delay = lifecycle.loading_delay
        self.loading_rng = loading_rng
        self.provisioning_rng = provisioning_rng
        self.drain_dropped = self.drain_redirected = self.nodes_provisioned = 0
        self.loaded: dict = {}              # instance id -> tick it became routable
        self.seq = 0
        self.scale_ups = self.scale_downs = self.failed_placements = 0
        self.oscillations = 0
        self._last_action = None            # (tick, direction) of the previous scale action
        self.started: dict = {}             # instance id -> tick it started holding GPUs
        self.drained: dict = {}             # instance id -> tick it left routing
        self.ended: dict = {}               # instance id -> tick it released them
        self.timeline: list = []

    # -- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        for inst in self.cluster.instances:
            self.started[inst.id] = 0
            self.loaded[inst.id] = 0
        self._record_replicas(0)
        if self.config is not None and self.config.interval_us > 0:
            self.cluster._push(0, SCALING_TICK, None)

    def handle(self, now: int, kind: int, payload) -> None:
        if kind == SCALING_TICK:
            self.tick(now)
        elif kind == SCALE_ACTUATION:
            self.actuate(now, payload)
        elif kind == INSTANCE_LOADED and payload.state == LOADING:
            self._activate(payload, now)
            self.cluster.start_routing(payload)
            self.loaded[payload.id] = now
            self._record_replicas(now)
        elif kind == NODE_READY:
            self._node_ready(payload, now)

    def tick(self, now: int) -> None:
        cluster = self.cluster
        state = self.collect(cluster.router_state(None), now)
        decisions = [d for d in self.autoscaler.decide(state) if d.delta != 0]
        if decisions:
            c = self.config
            at = now + sample_delay(c.scrape_delay_mean, c.scrape_delay_stddev, self.rng)
            cluster._push(at, SCALE_ACTUATION, decisions)
        if (cluster.horizon == MAX_TICK and cluster.pending_arrivals() <= 0
                and sum(inst.in_flight for inst in cluster.instances) == 0):
            return
        cluster._push(now + self.config.interval_us, SCALING_TICK, None)

    def collect(self, router_state, now: int) -> ScalingState:
        """Upstream DefaultCollector: routable snapshots grouped by model (models sorted)."""
        by_model: dict = {}
        for s in router_state.snapshots:
            if not s.model or not s.gpu_type:
                continue
            by_model.setdefault(s.model, []).append(ReplicaMetrics(
                s.id, s.gpu_type, max(s.tp_degree, 1), s.kv_utilization, s.queue_depth,
                s.in_flight_requests, s.cost_per_hour, s.total_kv_capacity_tokens,
                s.kv_tokens_in_use))
        models = tuple(ModelSignals(model, tuple(by_model[model])) for model in sorted(by_model))
        variants = []
        placement = self.placement
        if placement is not None:
            for gpu_type in dict.fromkeys(pool.gpu_type for pool in placement.pools):
                free = placement.free_gpus(gpu_type)
                if self.lifecycle.provision_nodes:
                    free += placement.provisionable_gpus(gpu_type)
                variants.append(VariantInfo(gpu_type, self.tp, placement.cost_of(gpu_type),
                                            free))
        return ScalingState(now, models, tuple(variants), self.cluster.model)

    def actuate(self, now: int, decisions) -> None:
        for d in decisions:
            if d.delta > 0:
                for _ in range(d.delta):
                    self._scale_up(now, d)
            else:
                for _ in range(-d.delta):
                    self._scale_down(now, d)

    def _scale_up(self, now: int, d) -> None:
        self.seq += 1
        inst_id = f"autoscale-{d.model}-{self.seq:06d}"
        placement = self.placement
        pool = node = None
        if placement is not None:
            pool = placement.place(inst_id, d.gpu_type, d.tp)
            if pool is None and self.lifecycle.provision_nodes:
                # blis extension: wait for a node that is coming up, or bring one up.
                pool = placement.place(inst_id, d.gpu_type, d.tp, NODE_PROVISIONING)
                if pool is None:
                    node = placement.provision(d.gpu_type, d.tp)
                    if node is not None:
                        self._provisioning(node, now)
                        pool = placement.place(inst_id, d.gpu_type, d.tp, NODE_PROVISIONING)
        if pool is None:
            self.failed_placements += 1
            log.error("[autoscaler] scale-up of %s (%s, TP %d): no free GPUs", inst_id,
                      d.gpu_type, d.tp)
            return
        inst = self.make_instance(len(self.cluster.instances))
        inst.id = inst_id
        inst.gpu_type = pool.gpu_type
        inst.tp_degree = d.tp
        inst.cost_per_hour = placement.cost_of(pool.gpu_type)
        self.started[inst_id] = now
        self.scale_ups += 1
        self._note_action(now, +1)
        if placement.node_of(inst_id).state != NODE_IS_READY:
            # Scheduling: it holds its GPUs on the node, which it loads on once Ready.
            transition(inst, SCHEDULING)
            self.cluster.add_instance(inst, routable=False)
            return
        transition(inst, LOADING)
        if self._start_loading(inst, now):
            self.cluster.add_instance(inst, routable=False)
            return
        self._activate(inst, now)
        self.cluster.add_instance(inst)
        self.loaded[inst_id] = now
        self._record_replicas(now)

    def _provisioning(self, node, now: int) -> None:
        mean, stddev = node.pool.provisioning_delay
        delay = sample_delay(mean, stddev, self.provisioning_rng) if mean > 0 or stddev > 0 else 0
        self.nodes_provisioned += 1
        self.cluster._push(now + delay, NODE_READY, node)

    def _node_ready(self, node, now: int) -> None:
        """A provisioned node is Ready: the instances waiting on it start loading, in order."""
        node.state = NODE_IS_READY
        waiting = set(node.holders)
        for inst in self.cluster.instances:
            if inst.state == SCHEDULING and inst.id in waiting:
                transition(inst, LOADING)
                if not self._start_loading(inst, now):
                    self._activate(inst, now)
                    self.cluster.start_routing(inst)
                    self.loaded[inst.id] = now
                    self._record_replicas(now)

    def _start_loading(self, inst, now: int) -> bool:
        """Queue the end of a loading delay (blis extension); False when there is none."""
        mean, stddev = self.loading_delay
        delay = sample_delay(mean, stddev, self.loading_rng) if mean > 0 or stddev > 0 else 0
        if delay > 0:
            self.cluster._push(now + delay, INSTANCE_LOADED, inst)
            return True
        return False

    def _activate(self, inst, now: int) -> None:
        """A loaded instance serves: warming up first when a warm-up is configured."""
        life = self.lifecycle
        if life.warm_up_steps > 0:
            transition(inst, WARMING_UP)
            inst.latency = WarmUp(inst, life.warm_up_steps, life.warm_up_factor)
        else:
            transition(inst, ACTIVE)

    def _scale_down(self, now: int, d) -> None:
        candidates = [inst for inst in self.cluster.instances
                      if inst.state == ACTIVE and inst.gpu_type == d.gpu_type
                      and max(inst.tp_degree, 1) == d.tp]
        if not candidates:
            return
        inst = min(candidates, key=lambda i: i.id)
        transition(inst, DRAINING)
        self.cluster.stop_routing(inst)
        self.drained[inst.id] = now
        self.scale_downs += 1
        self._note_action(now, -1)
        self._record_replicas(now)
        policy = self.lifecycle.drain_policy
        if policy == "IMMEDIATE":
            self._drain_immediate(inst, now)
        elif policy == "REDIRECT":
            self._drain_redirect(inst, now)

    def _terminate(self, inst, now: int) -> None:
        transition(inst, TERMINATED)
        if self.placement is not None:
            self.placement.release(inst.id)
        self.ended[inst.id] = now

    def _drain_immediate(self, inst, now: int) -> None:
        """IMMEDIATE: the instance stops now. What it held (queued, running, or still on its
        way in) is abandoned: each such request leaves as dropped-unservable, so the
        conservation equation still holds, and is counted in ``drain_dropped``."""
        if inst.cruisers:
            inst._materialize_all(inst.step_count + 1)
        held = list(inst.running or ()) + list(inst.wait)
        inst.running = None
        inst.wait.clear()
        for req in held:
            self._abandon(inst, req, now)

        def stopped(time: int, kind: int, req) -> bool:
            if kind in (ARRIVAL, QUEUED) and req.assigned_instance == inst.id:
                self._abandon(inst, req, time)
            return False

        inst.handle = stopped        # its pending events find a stopped instance
        self._terminate(inst, now)

    def _abandon(self, inst, req, now: int) -> None:
        inst.kv.release(req)
        inst.requests.pop(req.id, None)
        inst.counters.dropped_unservable += 1
        self.drain_dropped += 1
        inst._finish(req, now)

    def _drain_redirect(self, inst, now: int) -> None:
        """REDIRECT: requests that have not started on the instance (queued, or still on their
        way in) go back through the cluster's routing; running ones finish there."""
        wait = inst.wait
        fresh = [req for req in wait if req.progress == 0 and not req.blocks]
        if fresh:
            kept = [req for req in wait if not (req.progress == 0 and not req.blocks)]
            wait.clear()
            wait.extend(kept)
            for req in fresh:
                # Its new instance counts its prompt when it enqueues it there.
                inst.counters.total_input_tokens -= req.num_input
                self._redirect(inst, req, now)
        own_handle = inst.handle

        def redirecting(time: int, kind: int, req) -> bool:
            if kind in (ARRIVAL, QUEUED) and req.assigned_instance == inst.id:
                self._redirect(inst, req, time)
                return True
            if kind == TIMEOUT and req.assigned_instance != inst.id:
                return False     # it was redirected; its new instance keeps the deadline
            return own_handle(time, kind, req)

        inst.handle = redirecting
        if not inst.wait and not inst.running:
            self._terminate(inst, now)

    def _redirect(self, inst, req, now: int) -> None:
        inst.requests.pop(req.id, None)
        inst.in_flight -= 1
        req.assigned_instance = ""
        self.drain_redirected += 1
        cluster = self.cluster
        if cluster.tenants is not None:
            cluster.tenants.finished(req.tenant_id)     # routing starts it again
        cluster._push(now + cluster.routing_latency, ROUTING, req)

    def after_instance_event(self, inst, now: int) -> None:
        """A Draining instance whose event left it idle terminates and frees its GPUs."""
        if inst.state == DRAINING and not inst.wait and not inst.running:
            self._terminate(inst, now)

    # -- metrics ------------------------------------------------------------------------------
    def _note_action(self, now: int, direction: int) -> None:
        last = self._last_action
        window = self.config.oscillation_window if self.config is not None else 0
        if last is not None and last[1] != direction and now - last[0] <= window:
            self.oscillations += 1
        self._last_action = (now, direction)

    def _record_replicas(self, now: int) -> None:
        count = len(self.cluster.routable)
        if self.timeline and self.timeline[-1][0] == now:
            self.timeline[-1] = (now, count)
        else:
            self.timeline.append((now, count))

    def metrics(self, end: int) -> ElasticityMetrics:
        """The run's elasticity figures, with instances still holding GPUs counted to ``end``."""
        cost = {inst.id: inst.cost_per_hour for inst in self.cluster.instances}
        seconds = 0.0
        dollars = 0.0
        for inst_id in sorted(self.started):
            start = self.started[inst_id]
            stop = self.ended.get(inst_id, max(end, start))
            held = (stop - start) / 1e6
            seconds += held
            dollars += held / 3600.0 * cost.get(inst_id, 0.0)
        counts = [count for _, count in self.timeline]
        weighted = 0.0
        for (t0, count), (t1, _) in zip(self.timeline, self.timeline[1:] + [(end, 0)]):
            weighted += count * max(0, min(t1, end) - t0)
        return ElasticityMetrics(
            self.scale_ups, self.scale_downs, self.failed_placements, self.oscillations,
            seconds, dollars, min(counts, default=0), max(counts, default=0),
            weighted / end if end > 0 else float(counts[-1] if counts else 0),
            tuple(self.timeline), self.drain_dropped, self.drain_redirected,
            self.nodes_provisioned)


class WarmUp:
    """An instance's latency model while it warms up (blis extension): its first ``steps``
    steps take ``factor`` times their step time, then it is Active with its own model again.
    Everything else is the wrapped model's, so the instance's step loop is unchanged."""

    def __init__(self, inst, steps: int, factor: float) -> None:
        self.inst = inst
        self.base = inst.latency
        self.left = steps
        self.factor = factor

    def __getattr__(self, name):
        if name == "base":       # not set yet (a copy being built): no delegation loop
            raise AttributeError(name)
        return getattr(self.base, name)

    def step_time(self, *args) -> int:
        adv = int(self.base.step_time(*args) * self.factor)
        self.left -= 1
        if self.left <= 0:
            inst = self.inst
            inst.latency = self.base
            if inst.state == WARMING_UP:
                transition(inst, ACTIVE)
        return adv

