"""Build a cluster from a configuration, run a workload through it, return the results."""

from __future__ import annotations

import inspect

import attrs

from blis_core.autoscaling import Elasticity
from blis_core.cluster import Cluster, TenantBudgets
from blis_core.collector import collector_relaxed
from blis_core.config import SimulationConfig
from blis_core.decisions import DecisionTrace
from blis_core.disaggregation import Disaggregation
from blis_core.flowcontrol import Gateway, GatewayQueue
from blis_core.gorand import PartitionedRNG
from blis_core.infrastructure import ACTIVE, LOADING, Placement, transition
from blis_core.instance import Instance
from blis_core.kvcache import KVCache, TieredKVCache
from blis_core.metrics import Summary, cluster_summary, instance_summary
from blis_core.plugins import get_registry
from blis_core.timeseries import TimeSeries


@attrs.frozen
class SimulationResult:
    """What a finished run leaves behind: the instances (with their requests) and summaries."""

    config: SimulationConfig
    instances: list
    cluster: Cluster
    summary: Summary
    instance_summaries: list
    timeseries: TimeSeries | None = None   # the samples, when the config's sample_interval > 0

    @property
    def decisions(self) -> list[dict]:
        """The decision trace's records (empty unless the trace level is "decisions")."""
        trace = self.cluster.trace
        return trace.records if trace is not None else []

    @property
    def elasticity(self):
        """What the autoscaler did (an ``autoscaling.ElasticityMetrics``), or None without node
        pools and autoscaler. Instances still holding GPUs count until the run's end."""
        elastic = self.cluster.elastic
        if elastic is None:
            return None
        return elastic.metrics(self.summary.counters["sim_ended_time"])

    @property
    def requests(self) -> list:
        merged = {}
        for inst in self.instances:
            merged.update(inst.requests)
        return list(merged.values())


def _make_kv(config: SimulationConfig, reference: bool):
    kv = config.kv
    if kv.cpu_blocks > 0:
        return TieredKVCache(kv.total_blocks, kv.block_size, kv.cpu_blocks,
                             kv.transfer_bandwidth, kv.transfer_base_latency,
                             lazy_mirror=not reference)
    return KVCache(kv.total_blocks, kv.block_size)


def _construct(cls, params: dict, **services):
    """Instantiate a policy with its parameters plus the services its constructor asks for
    (for example ``rng``, the policy's own random stream)."""
    accepted = inspect.signature(cls).parameters
    extra = {name: value for name, value in services.items()
             if name in accepted and name not in params}
    return cls(**params, **extra)


def _instance_policy(cls):
    """One priority policy or scheduler object per instance, or None for a no-op class
    (``noop = True``: constant priority, FCFS), which the step then skips entirely."""
    if getattr(cls, "noop", False):
        return None
    return cls()


def build_cluster(config: SimulationConfig, sessions=None, registry=None,
                  audit: bool = False, reference: bool = False) -> Cluster:
    """``reference`` turns off the engine's shortcuts (implicit decoding, lazy CPU-tier
    mirroring) so tests can check that they change nothing."""
    registry = registry or get_registry()
    policies = config.policies
    admission = registry.get("admission", policies.admission or "always-admit")(
        **policies.admission_params)
    routing = _construct(registry.get("routing", policies.routing), policies.routing_params,
                         rng=PartitionedRNG(config.seed).for_subsystem("router"),
                         block_size=config.kv.block_size)
    priority_cls = registry.get("priority", policies.priority or "constant")
    scheduler_cls = registry.get("scheduler", policies.scheduler or "fcfs")
    heap: list = []
    instances = []

    def make_instance(index: int, inst_config: SimulationConfig = config) -> Instance:
        return Instance(index, inst_config.batch, inst_config.latency,
                        _make_kv(inst_config, reference), heap, config.horizon,
                        priority_policy=_instance_policy(priority_cls),
                        scheduler=_instance_policy(scheduler_cls), cruise=not reference)

    placement = Placement(config.node_pools) if config.node_pools else None
    tp = config.tp if config.tp >= 1 else 1
    for i in range(config.num_instances):
        pool = None
        if placement is not None:
            # Upstream places startup instances first-fit on any pool; one that does not fit is
            # never built (nothing provisions nodes at 4e179804).
            pool = placement.place(f"instance_{i}", "", tp)
            if pool is None:
                continue
        inst = make_instance(len(instances), _pool_config(config, i))
        inst.id = f"instance_{i}"
        if pool is not None:
            inst.gpu_type, inst.tp_degree = pool.gpu_type, tp
            inst.cost_per_hour = placement.cost_of(pool.gpu_type)
            transition(inst, LOADING)
        else:
            inst.gpu_type = config.hardware
        transition(inst, ACTIVE)
        instances.append(inst)
    cluster = Cluster(instances, admission, routing, horizon=config.horizon,
                   admission_latency=config.admission_latency,
                   routing_latency=config.routing_latency, model=config.model,
                   sessions=sessions, audit=audit,
                   snapshot_refresh_interval=config.snapshot_refresh_interval,
                   cache_signal_delay=config.cache_signal_delay,
                   tenant_budgets=_tenant_budgets(config),
                   trace=(DecisionTrace(config.trace.counterfactual_k)
                          if config.trace.records else None))
    cluster.heap = heap    # the instances' heap, even when no startup instance was placed
    if config.pd is not None:
        cluster.pd = _disaggregation(cluster, config, registry)
    if config.flow_control is not None:
        cluster.gateway = _gateway(cluster, config, registry)
    if placement is not None or config.autoscaler is not None:
        cluster.elastic = _elasticity(cluster, config, registry, placement, make_instance, tp)
    return cluster


def _elasticity(cluster, config: SimulationConfig, registry, placement, make_instance,
                tp: int) -> Elasticity:
    scaling = config.autoscaler
    autoscaler = None
    if scaling is not None:
        autoscaler = registry.get("autoscaler", scaling.policy)(**scaling.params)
    rng = PartitionedRNG(config.seed)
    return Elasticity(cluster, scaling, autoscaler, placement, make_instance,
                      rng.for_subsystem("autoscaler"), tp, config.lifecycle,
                      rng.for_subsystem("instance-loading"),
                      rng.for_subsystem("node-provisioning"))


def _pool_config(config: SimulationConfig, index: int) -> SimulationConfig:
    """The configuration instance ``index`` runs: its P/D pool's engine when the pool has its
    own (per-pool overrides), else the run's."""
    pd = config.pd
    if pd is None:
        return config
    if index < pd.prefill_instances:
        engine = pd.prefill_engine
    elif index < pd.prefill_instances + pd.decode_instances:
        engine = pd.decode_engine
    else:
        return config
    if engine is None:
        return config
    return attrs.evolve(config, latency=engine.latency,
                        batch=attrs.evolve(config.batch, max_model_len=engine.max_model_len),
                        kv=attrs.evolve(config.kv, total_blocks=engine.total_kv_blocks))


def _disaggregation(cluster: Cluster, config: SimulationConfig, registry) -> Disaggregation:
    pd = config.pd
    block_size = config.kv.block_size
    decider = _construct(registry.get("disaggregation", pd.decider), {},
                         threshold=pd.threshold, block_size=block_size)

    def pool_router(spec, subsystem: str):
        if not spec:
            return None
        name, params = spec
        return _construct(registry.get("routing", name), params,
                          rng=PartitionedRNG(config.seed).for_subsystem(subsystem),
                          block_size=block_size)

    return Disaggregation(cluster, pd, decider, pool_router(pd.prefill_routing, "prefill-router"),
                          pool_router(pd.decode_routing, "decode-router"), block_size,
                          (pd.decode_engine.latency if pd.decode_engine else config.latency)
                          .post_decode_fixed_overhead())


def _gateway(cluster: Cluster, config: SimulationConfig, registry) -> Gateway:
    fc = config.flow_control
    detector = _construct(registry.get("saturation", fc.detector), {}, **fc.detector_params)
    order = registry.get("dispatch", fc.dispatch_order)()
    return Gateway(cluster, GatewayQueue(order, fc.max_queue_depth, config.slo_priorities),
                   detector)


def _tenant_budgets(config: SimulationConfig):
    if config.tenant_budgets is None:
        return None
    # Upstream sizes shares against the configured slots, whatever was actually placed.
    return TenantBudgets(config.tenant_budgets, config.num_instances * config.batch.max_running,
                         config.slo_priorities)


def simulate(config: SimulationConfig, requests, sessions=None, *, registry=None,
             audit: bool = False, reference: bool = False, progress=None) -> SimulationResult:
    """Run ``requests`` (sorted by arrival) through a fresh cluster built from ``config``.

    ``audit`` checks the clock and the KV books after every event (slow; for tests).
    ``progress`` (a :class:`blis_core.progress.Progress`) reports on stderr while it runs.
    """
    with collector_relaxed():
        cluster = build_cluster(config, sessions, registry, audit, reference)
        series = TimeSeries(config.sample_interval) if config.sample_interval > 0 else None
        cluster.run(requests, series, progress)
        instances = cluster.instances
        return SimulationResult(config, instances, cluster,
                                cluster_summary(instances, cluster.pd),
                                [instance_summary(inst) for inst in instances], series)
