"""From a :class:`RunConfig` to results: checks, latency resolution, the engine configuration,
a freshly built workload (:func:`prepare_run`), and :func:`evaluate`, which runs one.

Checks run in upstream's order and fail with the CLI's one-line messages (they name the flag a
field comes from, ``--max-num-running-reqs must be > 0``; docs/cli.md lists the field of every
flag). The workload comes from the workload-source plugin the description selects, so
blis_core never imports a workload package.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable

import attrs

from blis_core.autoscaling import AutoscalerConfig, InstanceLifecycle
from blis_core.bundle import autoscaler_plugin
from blis_core.config import MAX_TICK, KVConfig, PolicyConfig, SimulationConfig
from blis_core.decisions import TRACE_LEVELS, TraceConfig
from blis_core.disaggregation import PDConfig, PoolEngine
from blis_core.flowcontrol import FlowControlConfig
from blis_core.modelconfig import HardwareConfig, kv_bytes_per_token
from blis_core.resolve import ResolveError
from blis_core.evaluation import (EvaluationResult, FitnessError, compute_fitness, empty_metrics,
                                  evaluate_result, parse_fitness_weights)
from blis_core.infrastructure import NodePoolSpec
from blis_core.instance import BatchConfig
from blis_core.plugins import PluginError, get_registry
from blis_core.protocols import RunWorkload
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_core.simulation import simulate

log = logging.getLogger("blis")

# The policy of each kind when the description leaves it "" (upstream's flag defaults).
POLICY_DEFAULTS = {"admission": "always-admit", "routing": "round-robin",
                   "priority": "constant", "scheduler": "fcfs"}


@attrs.frozen
class PreparedRun:
    """A checked run: the engine configuration, its workload and the fitness weights, plus the
    description it came from and the source that built the workload (to write its trace)."""

    simulation: SimulationConfig
    workload: RunWorkload
    fitness_weights: dict
    config: RunConfig | None = None
    source: object = None


def _policy_names(config: RunConfig) -> dict[str, str]:
    b = config.policies
    chosen = {"admission": b.admission.policy, "routing": b.routing.policy,
              "priority": b.priority.policy, "scheduler": b.scheduler}
    return {kind: name or POLICY_DEFAULTS[kind] for kind, name in chosen.items()}


def _latency_options(config: RunConfig):
    from blis_core.resolve import LatencyOptions

    m, e = config.model, config.engine
    return LatencyOptions(
        model=m.name.lower(),
        latency_model=m.latency_model or "roofline",
        latency_model_given=m.latency_model is not None,
        alpha=m.alpha_coeffs if m.alpha_coeffs is not None else (0.0, 0.0, 0.0),
        alpha_given=m.alpha_coeffs is not None,
        beta=m.beta_coeffs if m.beta_coeffs is not None else (0.0, 0.0, 0.0),
        beta_given=m.beta_coeffs is not None,
        hardware=m.hardware, tp=m.tp, vllm_version=m.vllm_version,
        total_kv_blocks=e.total_kv_blocks if e.total_kv_blocks is not None else 1_000_000,
        total_kv_blocks_given=e.total_kv_blocks is not None,
        block_size=e.block_size_in_tokens,
        gpu_memory_utilization=m.gpu_memory_utilization,
        max_model_len=e.max_model_len if e.max_model_len is not None else 0,
        max_model_len_given=e.max_model_len is not None,
        model_config_folder=m.model_config_folder, hardware_config=m.hardware_config,
        defaults_filepath=m.defaults_filepath or "defaults.yaml",
        defaults_filepath_given=m.defaults_filepath is not None,
    )


def _resolve(config: RunConfig, quiet: bool = False):
    """Resolve the latency flags, logging upstream's warnings unless ``quiet``."""
    from blis_core.resolve import ResolveError, resolve_latency

    options = _latency_options(config)
    try:
        resolved = resolve_latency(options)
    except ResolveError as exc:
        if not quiet:
            for warning in exc.warnings:
                log.warning(warning)
        raise ConfigurationError(str(exc)) from None
    if not quiet:
        for warning in resolved.warnings:
            log.warning(warning)
    return resolved


def _admission_params(config: RunConfig, policy: str) -> dict:
    """The admission policy's constructor parameters (cluster-policies.md §4.1)."""
    a = config.policies.admission
    if policy == "token-bucket":
        values = {"capacity": a.token_bucket_capacity if a.token_bucket_capacity is not None
                  else 10_000.0,
                  "refill_rate": a.token_bucket_refill_rate if a.token_bucket_refill_rate
                  is not None else 1_000.0}
        for flag, value in (("token-bucket-capacity", values["capacity"]),
                            ("token-bucket-refill-rate", values["refill_rate"])):
            if not value > 0 or math.isinf(value):
                raise ConfigurationError(f"--{flag} must be a finite value > 0 for "
                                         f"--admission-policy token-bucket, got {value:g}")
        return values
    slo = dict(a.slo_priorities) if a.slo_priorities is not None else None
    if policy == "tier-shed":
        chosen_in_bundle = a.policy == "tier-shed"
        threshold = a.tier_shed_threshold
        min_priority = a.tier_shed_min_priority
        if min_priority is None and chosen_in_bundle:
            min_priority = 3
        params = {"threshold": threshold or 0, "min_priority": min_priority or 0}
        if slo is not None:
            params["slo_priorities"] = slo
        return params
    if policy == "gaie-legacy":
        params = {}
        if a.gaie_qd_threshold is not None:
            params["qd_threshold"] = a.gaie_qd_threshold
        if a.gaie_kv_threshold is not None:
            params["kv_threshold"] = a.gaie_kv_threshold
        if slo is not None:
            params["slo_priorities"] = slo
        return params
    return {}


def _check_fitness(weights) -> dict:
    weights = dict(weights)
    try:
        for key, weight in weights.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise FitnessError(f"invalid weight for {key!r}: must be a finite non-negative "
                                   f"number, got {weight}")
        compute_fitness(empty_metrics(), weights)     # refuses unknown keys
    except FitnessError as exc:
        raise ConfigurationError(f"--fitness-weights: {exc}") from None
    return weights


def simulation_config(config: RunConfig, registry=None) -> SimulationConfig:
    """Check the engine, cluster and policy fields and build the engine configuration."""
    from blis_core.latency import LatencyConfigError, build_latency_model

    registry = registry or get_registry()
    m, e, c = config.model, config.engine, config.cluster
    if not m.name:
        raise ConfigurationError("--model: LLM name not provided")
    if not 0 < m.gpu_memory_utilization <= 1 or not math.isfinite(m.gpu_memory_utilization):
        raise ConfigurationError(f"--gpu-memory-utilization must be a finite value in (0, 1.0], "
                                 f"got {m.gpu_memory_utilization}")
    if e.block_size_in_tokens <= 0:
        raise ConfigurationError("--block-size-in-tokens must be > 0")
    if e.max_model_len is not None and e.max_model_len < 0:
        raise ConfigurationError("--max-model-len must be >= 0")
    resolved = _resolve(config)
    checks = [
        (c.num_instances < 1, "--num-instances must be >= 1"),
        (resolved.total_kv_blocks <= 0, "--total-kv-blocks must be > 0"),
        (e.max_num_running_reqs <= 0, "--max-num-running-reqs must be > 0"),
        (e.max_num_scheduled_tokens <= 0, "--max-num-scheduled-tokens must be > 0"),
        (e.long_prefill_token_threshold < 0, "--long-prefill-token-threshold must be >= 0"),
        (config.horizon is not None and config.horizon <= 0, "--horizon must be > 0"),
        (e.kv_cpu_blocks < 0, "--kv-cpu-blocks must be >= 0"),
        (not 0 <= e.kv_offload_threshold <= 1,
         "--kv-offload-threshold must be a finite value in [0, 1]"),
        (e.kv_cpu_blocks > 0 and not e.kv_transfer_bandwidth > 0,
         "--kv-transfer-bandwidth must be a finite value > 0 when --kv-cpu-blocks > 0"),
        (e.kv_transfer_base_latency < 0, "--kv-transfer-base-latency must be >= 0"),
        (c.admission_latency < 0, "--admission-latency must be >= 0"),
        (c.routing_latency < 0, "--routing-latency must be >= 0"),
        (c.snapshot_refresh_interval < 0, "--snapshot-refresh-interval must be >= 0"),
        (c.cache_signal_delay < 0, "--cache-signal-delay must be >= 0"),
    ]
    for bad, message in checks:
        if bad:
            raise ConfigurationError(message)
    names = _policy_names(config)
    for kind, flag in (("admission", "--admission-policy"), ("routing", "--routing-policy"),
                       ("priority", "--priority-policy"), ("scheduler", "--scheduler")):
        try:
            registry.get(kind, names[kind])
        except PluginError as exc:
            raise ConfigurationError(f"{flag}: {exc}") from None
    admission_params = _admission_params(config, names["admission"])
    problems = config.problems_of_policies(registry)
    if problems:
        raise ConfigurationError(problems[0])
    if names["admission"] == "tier-shed" and config.policies.admission.policy != "tier-shed":
        threshold = admission_params["threshold"]
        floor = admission_params["min_priority"]
        log.warning("tier-shed admission selected by --admission-policy: tier_shed_threshold "
                    "is %d and tier_shed_min_priority is %d, which admits every tier with "
                    "priority >= %d under overload", threshold, floor, floor)
    if e.kv_cpu_blocks > 0 and e.kv_offload_threshold != 0:
        log.warning("--kv-offload-threshold is deprecated and ignored")
    trace = _trace_config(config)
    flow_control = _flow_control_config(config, registry)
    warn = _once(log.warning)  # upstream prints the blackbox deprecation once per process
    pd = _pd_config(config, resolved, registry, warn)
    block_size = e.block_size_in_tokens
    mml = resolved.max_model_len
    if mml > 0 and -(-mml // block_size) > resolved.total_kv_blocks:
        raise ConfigurationError(
            f"KV cache too small for MaxModelLen: need {-(-mml // block_size)} blocks "
            f"(ceil({mml}/{block_size})) but TotalKVBlocks={resolved.total_kv_blocks}")
    try:
        latency = build_latency_model(resolved.backend, list(resolved.alpha), list(resolved.beta),
                                      resolved.model_config, resolved.hardware_config,
                                      resolved.tp, warn=warn)
    except LatencyConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    scorers = config.policies.routing.scorers
    routing_params = ({"scorers": [(s.name, s.weight) for s in scorers]}
                      if names["routing"] == "weighted" and scorers else {})
    b = config.policies
    return SimulationConfig(
        latency=latency,
        batch=BatchConfig(e.max_num_running_reqs, e.max_num_scheduled_tokens,
                          e.long_prefill_token_threshold, mml),
        kv=KVConfig(resolved.total_kv_blocks, block_size, e.kv_cpu_blocks,
                    e.kv_transfer_bandwidth, e.kv_transfer_base_latency),
        policies=PolicyConfig(admission=names["admission"], routing=names["routing"],
                              priority=names["priority"], scheduler=names["scheduler"],
                              admission_params=admission_params,
                              routing_params=routing_params),
        num_instances=c.num_instances,
        horizon=config.horizon if config.horizon is not None else MAX_TICK,
        seed=config.engine_seed,
        admission_latency=c.admission_latency,
        routing_latency=c.routing_latency,
        model=resolved.model,
        snapshot_refresh_interval=c.snapshot_refresh_interval,
        cache_signal_delay=c.cache_signal_delay,
        tenant_budgets=dict(b.tenant_budgets) if b.tenant_budgets is not None else None,
        slo_priorities=(dict(b.admission.slo_priorities)
                        if b.admission.slo_priorities is not None else None),
        trace=trace,
        pd=pd,
        flow_control=flow_control,
        sample_interval=_sample_interval(config),
        hardware=resolved.hardware,
        tp=resolved.tp,
        node_pools=tuple(NodePoolSpec(p.name, p.gpu_type, p.gpus_per_node, p.initial_nodes,
                                      p.min_nodes, p.max_nodes, p.cost_per_hour,
                                      (p.provisioning_delay.mean, p.provisioning_delay.stddev))
                         for p in b.node_pools),
        autoscaler=_autoscaler_config(b.autoscaler),
        lifecycle=_lifecycle(b, pd),
    )


def _lifecycle(b, pd) -> InstanceLifecycle:
    life = b.instance_lifecycle
    if life.drain_policy == "REDIRECT" and pd is not None:
        # A P/D sub-request re-routed by the plain router would skip its pool's routing.
        raise ConfigurationError("instance_lifecycle.drain_policy: REDIRECT is not supported "
                                 "with P/D disaggregation (--prefill-instances)")
    return InstanceLifecycle(
        loading_delay=(life.loading_delay.mean, life.loading_delay.stddev),
        warm_up_steps=life.warm_up_steps, warm_up_factor=life.warm_up_factor,
        drain_policy=life.drain_policy or "WAIT",
        provision_nodes=b.autoscaler.provision_nodes)


def _flow_control_config(config: RunConfig, registry) -> FlowControlConfig | None:
    """Check the flow-control flags (only with ``--flow-control``, as upstream) and build the
    gateway's configuration; the detector's constructor checks the values it uses."""
    f = config.flow_control
    if not f.enabled:
        return None
    detector = f.saturation_detector or "never"
    try:
        detector_cls = registry.get("saturation", detector)
    except PluginError as exc:
        raise ConfigurationError(f"--saturation-detector: {exc}") from None
    try:
        registry.get("dispatch", f.dispatch_order)
    except PluginError as exc:
        raise ConfigurationError(f"--dispatch-order: {exc}") from None
    if f.max_gateway_queue_depth < 0:
        raise ConfigurationError(f"--max-gateway-queue-depth must be >= 0, got "
                                 f"{f.max_gateway_queue_depth}")
    params = {"queue_depth_threshold": f.queue_depth_threshold,
              "kv_cache_util_threshold": f.kv_cache_util_threshold,
              "max_concurrency": f.max_concurrency}
    accepted = inspect.signature(detector_cls).parameters
    params = {name: value for name, value in params.items() if name in accepted}
    try:
        detector_cls(**params)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if detector == "never":
        log.warning("--flow-control enabled but --saturation-detector is %s (pass-through); "
                    "specify 'utilization' or 'concurrency' for actual gating",
                    json.dumps(f.saturation_detector))
    return FlowControlConfig(detector, f.dispatch_order, f.max_gateway_queue_depth, params)


def _sample_interval(config: RunConfig) -> int:
    """Ticks between two time-series samples; 0 when no series is asked for."""
    o = config.output
    if o.timeseries_interval <= 0:
        raise ConfigurationError(f"--timeseries-interval must be > 0, got {o.timeseries_interval}")
    return o.timeseries_interval if o.timeseries else 0


def _once(emit: Callable[[str], None]) -> Callable[[str], None]:
    """``emit``, but each distinct message only the first time."""
    seen: set[str] = set()

    def emit_once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            emit(message)
    return emit_once




def _autoscaler_config(section) -> AutoscalerConfig | None:
    """The run's autoscaler: upstream enables it iff the interval is > 0 (§4.1)."""
    if not section.interval_us > 0:
        return None
    name, params = autoscaler_plugin(section)
    return AutoscalerConfig(int(section.interval_us), name, params,
                            section.hpa_scrape_delay.mean, section.hpa_scrape_delay.stddev,
                            int(section.oscillation_window_us))


def _pd_config(config: RunConfig, resolved, registry, warn) -> PDConfig | None:
    """Check the P/D flags (upstream's messages) and build the pools' configuration."""
    from blis_core.latency import BLACKBOX_DEPRECATION_WARNING

    d = config.disaggregation
    p_count, d_count = d.prefill_instances, d.decode_instances
    for flag, value in (("--prefill-instances", p_count), ("--decode-instances", d_count)):
        if value < 0:
            raise ConfigurationError(f"{flag} must be >= 0, got {value}")
    if not math.isfinite(d.transfer_bandwidth) or d.transfer_bandwidth <= 0:
        raise ConfigurationError("--pd-transfer-bandwidth must be a finite positive number, got "
                                 f"{_go_float_v(d.transfer_bandwidth)}")
    if not math.isfinite(d.transfer_base_latency) or d.transfer_base_latency < 0:
        raise ConfigurationError("--pd-transfer-base-latency must be a finite non-negative "
                                 f"number, got {_go_float_v(d.transfer_base_latency)}")
    if p_count == 0 and d_count == 0:
        if d.transfer_contention:
            raise ConfigurationError("--pd-transfer-contention requires PD disaggregation "
                                     "(--prefill-instances and --decode-instances must be set)")
        if d.decider not in ("", "never"):
            log.warning("--pd-decider=%s has no effect because --prefill-instances=0 "
                        "(disaggregation is disabled); set --prefill-instances and "
                        "--decode-instances to enable", json.dumps(d.decider))
        return None
    if p_count == 0 or d_count == 0:
        raise ConfigurationError("Invalid PD pool topology: both --prefill-instances and "
                                 "--decode-instances must be set when PD disaggregation is "
                                 f"enabled (got prefill={p_count}, decode={d_count})")
    n = config.cluster.num_instances
    if p_count + d_count > n:
        raise ConfigurationError(f"Invalid PD pool topology: prefill-instances ({p_count}) + "
                                 f"decode-instances ({d_count}) = {p_count + d_count} exceeds "
                                 f"num-instances ({n})")
    for name in ("prefill_tp", "decode_tp", "prefill_max_model_len", "decode_max_model_len"):
        if getattr(d, name) < 0:
            raise ConfigurationError(f"--{name.replace('_', '-')} must be >= 0, got "
                                     f"{getattr(d, name)}")
    engines = []
    for role in ("prefill", "decode"):
        engine = _pool_engine(config, resolved, role, warn)
        if engine is None and resolved.backend == "blackbox":
            # Upstream builds the pools' instances in order, each with its own latency model: a
            # pool that keeps the run's blackbox model prints the deprecation notice here.
            warn(BLACKBOX_DEPRECATION_WARNING)
        engines.append(engine)
    decider = d.decider or "never"
    try:
        decider_cls = registry.get("disaggregation", decider)
    except PluginError as exc:
        raise ConfigurationError(f"--pd-decider: {exc}") from None
    if "threshold" in inspect.signature(decider_cls).parameters:
        if d.prefix_threshold < 0:
            raise ConfigurationError(f"--pd-prefix-threshold must be >= 0, got "
                                     f"{d.prefix_threshold}")
    elif d.prefix_threshold != 512:
        log.warning("--pd-prefix-threshold=%d is ignored when --pd-decider=%s (only applies to "
                    "the prefix-threshold decider)", d.prefix_threshold, json.dumps(decider))
    mc = resolved.model_config
    try:
        if mc is None:
            from blis_core.resolve import resolve_model_config

            mc = resolve_model_config(_latency_options(config))
        prefill_tp = d.prefill_tp or resolved.tp
        per_token = kv_bytes_per_token(mc, prefill_tp if prefill_tp > 0 else 1)
    except (ValueError, ResolveError) as exc:
        raise ConfigurationError("PD disaggregation requires model architecture for KV "
                                 f"transfer sizing: {exc}") from None
    routers = []
    for flag, text in (("--prefill-routing-scorers", d.prefill_routing_scorers),
                       ("--decode-routing-scorers", d.decode_routing_scorers)):
        if not text:
            routers.append(())
            continue
        try:
            registry.get("routing", "weighted")(scorers=text)
        except ValueError as exc:
            raise ConfigurationError(f"{flag}: {exc}") from None
        entries = [(item.partition(":")[0].strip(), float(item.partition(":")[2]))
                   for item in text.split(",")]
        routers.append(("weighted", {"scorers": entries}))
    return PDConfig(p_count, d_count, decider, d.prefix_threshold, d.transfer_bandwidth,
                    d.transfer_base_latency, d.transfer_contention, per_token,
                    routers[0], routers[1], engines[0], engines[1])


def _pool_engine(config: RunConfig, resolved, role: str, warn) -> PoolEngine | None:
    """A pool's own step-time model, KV cache size and MaxModelLen when its flags override the
    model's TP, GPU, latency model or MaxModelLen; None when they do not.

    As upstream at 4e179804: the pool's step time uses its TP and latency model but the run's
    GPU and the run's resolved coefficients (whatever backend they were resolved for); an
    analytical pool whose TP or GPU differs gets its KV blocks recomputed for them (even over
    --total-kv-blocks); its MaxModelLen is capped at its KV capacity.
    """
    from blis_core.latency import LatencyConfigError, build_latency_model
    from blis_core.modelconfig import calculate_kv_blocks

    d = config.disaggregation
    tp = getattr(d, f"{role}_tp") or resolved.tp
    gpu = getattr(d, f"{role}_hardware") or resolved.hardware
    backend = getattr(d, f"{role}_latency_model") or resolved.backend
    max_model_len = getattr(d, f"{role}_max_model_len")
    if (tp, gpu, backend) == (resolved.tp, resolved.hardware, resolved.backend) \
            and not max_model_len:
        return None
    alpha, beta = list(resolved.alpha), list(resolved.beta)
    if backend == "blackbox":  # no architecture needed, and its KV cache is the run's
        try:
            latency = build_latency_model("blackbox", alpha, beta, warn=warn)
        except LatencyConfigError as exc:
            raise ConfigurationError(f"{role} pool: {exc}") from None
        return PoolEngine(latency, resolved.total_kv_blocks,
                          max_model_len or resolved.max_model_len)
    # The pool is resolved only for its architecture, GPU and KV capacity: its coefficients are
    # the run's, so the coefficient flags take no part (and cannot clash with its backend).
    pool = config.replace(**{"model.tp": tp, "model.hardware": resolved.hardware,
                             "model.latency_model": backend, "model.alpha_coeffs": None,
                             "model.beta_coeffs": None})
    if max_model_len:
        pool = pool.replace(**{"engine.max_model_len": max_model_len})
    try:
        # Upstream resolves the flags once; the pool's pass must not repeat the run's warnings.
        pool_resolved = _resolve(pool, quiet=True)
        blocks = pool_resolved.total_kv_blocks
        if backend != "blackbox" and (tp, gpu) != (resolved.tp, resolved.hardware):
            from blis_core.resolve import resolve_hardware

            hardware = resolve_hardware(_latency_options(pool), gpu)
            blocks = calculate_kv_blocks(pool_resolved.model_config, hardware, tp,
                                         config.engine.block_size_in_tokens,
                                         config.model.gpu_memory_utilization)
            pool_resolved = _resolve(pool.replace(**{"engine.total_kv_blocks": blocks}), quiet=True)
        hardware = pool_resolved.hardware_config
        if resolved.hardware_config is None:
            # A blackbox run never loads its GPU's specification: upstream hands the pool an empty
            # one, which the analytical model's checks then refuse.
            hardware = HardwareConfig(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        latency = build_latency_model(pool_resolved.backend, alpha, beta, pool_resolved.model_config,
                                      hardware, pool_resolved.tp, warn=warn)
    except (ConfigurationError, LatencyConfigError, ResolveError, ValueError) as exc:
        raise ConfigurationError(f"{role} pool: {exc}") from None
    return PoolEngine(latency, blocks, pool_resolved.max_model_len)


def _go_float_v(x: float) -> str:
    """Go's %f, which spells infinities +Inf and -Inf."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    return f"{x:f}"


def _trace_config(config: RunConfig) -> TraceConfig:
    t = config.decision_trace
    level = t.level or "none"
    if level not in TRACE_LEVELS:
        raise ConfigurationError(f"--trace-level: unknown trace level {level!r} (valid: "
                                 f"{', '.join(TRACE_LEVELS)})")
    if t.counterfactual_k < 0:
        raise ConfigurationError(f"--counterfactual-k must be >= 0, got {t.counterfactual_k}")
    if level == "none":
        if t.counterfactual_k > 0:
            log.warning("--counterfactual-k=%d has no effect without --trace-level decisions",
                        t.counterfactual_k)
        if t.summarize:
            log.warning("--summarize-trace has no effect without --trace-level decisions")
    return TraceConfig(level, t.counterfactual_k, t.summarize)


def workload_source(config: RunConfig, registry=None):
    """The workload-source plugin object that builds this description's requests."""
    registry = registry or get_registry()
    name = config.workload.source
    try:
        return registry.get("source", name)()
    except PluginError as exc:
        raise ConfigurationError(f"workload: {exc} (is blis_workloads installed?)") from None


def prepare_run(config: RunConfig, registry=None) -> PreparedRun:
    """Check ``config`` and build its run; every problem is a :class:`ConfigurationError`
    raised before anything is simulated."""
    registry = registry or get_registry()
    w = config.workload
    if w.trace is not None and w.spec is not None:
        raise ConfigurationError("workload: spec and trace are mutually exclusive")
    simulation = simulation_config(config, registry)
    weights = _check_fitness(config.fitness_weights)
    source = workload_source(config, registry)
    workload = source.build(config, registry)
    if workload.horizon is not None:
        simulation = attrs.evolve(simulation, horizon=workload.horizon)
    return PreparedRun(simulation, workload, weights, config, source)


def run_progress(simulation: SimulationConfig, requests, always: bool = True):
    """The progress line of a run of ``requests`` (on stderr); ``always`` False (chosen
    automatically) writes nothing for a run over before the first refresh."""
    from blis_core.progress import Progress

    total = len(requests) if hasattr(requests, "__len__") else None
    return Progress(total, simulation.horizon, always=always)


def evaluate(config, bundle=None, *, fitness_weights=None, workload=None,
             registry=None) -> EvaluationResult:
    """Run one configuration under one policy bundle and evaluate it.

    ``config`` is a :class:`~blis_core.runconfig.RunConfig` or the ``blis run`` arguments it is
    built from (a string or a list of strings). ``bundle`` is a PolicyBundle YAML path or a
    loaded :class:`~blis_core.bundle.PolicyBundle`; it fills every policy setting the arguments
    do not set explicitly, exactly as ``--policy-config`` does. ``fitness_weights`` (a mapping
    or ``"key:w,..."``) replaces the arguments' ``--fitness-weights``.

    ``config`` may also be a :class:`~blis_core.config.SimulationConfig` for a hand-built
    engine; ``workload`` is then required: a callable returning fresh requests sorted by
    arrival (the engine consumes them), and policies come from the config (no bundle).

    Bad configurations raise :class:`~blis_core.runconfig.ConfigurationError` carrying the
    CLI's one-line message; bad fitness weights raise :class:`FitnessError`.
    """
    if isinstance(fitness_weights, str):
        fitness_weights = parse_fitness_weights(fitness_weights)
    elif fitness_weights is not None:
        fitness_weights = dict(fitness_weights)
        compute_fitness(empty_metrics(), fitness_weights)     # refuse unknown keys before running
    if isinstance(config, SimulationConfig):
        if workload is None:
            raise ConfigurationError("evaluate: a SimulationConfig needs workload=, a callable "
                                     "returning the requests")
        if bundle is not None:
            raise ConfigurationError("evaluate: a bundle applies to a RunConfig; set the "
                                     "policies of a SimulationConfig in its PolicyConfig")
        simulation, weights = config, fitness_weights or {}
        requests, sessions = workload(), None
    else:
        if not isinstance(config, RunConfig):
            config = RunConfig.from_args(config)
        prepared = config.prepare(bundle, registry)
        simulation = prepared.simulation
        weights = prepared.fitness_weights if fitness_weights is None else fitness_weights
        if workload is not None:
            requests, sessions = workload(), None
        else:
            requests, sessions = prepared.workload.requests, prepared.workload.sessions
    progress = None
    if isinstance(config, RunConfig) and config.output.progress:
        progress = run_progress(simulation, requests)
    start = time.perf_counter()
    result = simulate(simulation, requests, sessions, registry=registry, progress=progress)
    return evaluate_result(result, weights, time.perf_counter() - start)
