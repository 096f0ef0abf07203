"""What ``blis run`` and ``blis replay`` print: upstream's text report or a table for people.

``render_text`` reproduces upstream's stdout byte for byte (cluster-policies.md §2.8 and §5):
the summary JSON blocks, then the Fitness, Anomaly, KV, per-SLO, per-model and per-tenant
sections and the trace summary, each only under upstream's condition. ``render_table`` shows the same numbers as an
aligned table for a terminal.
"""

from __future__ import annotations

from blis_core.decisions import TraceSummary
from blis_core.disaggregation import ParentView, pd_metrics
from blis_core.evaluation import AnomalyCounters, EvaluationResult, FitnessResult, RawMetrics
from blis_core.metrics import go_json, percentile

FORMATS = ("auto", "json", "table")


def fitness_section(fitness: FitnessResult | None) -> list[str]:
    if fitness is None:
        return []
    lines = ["=== Fitness Evaluation ===", f"Score: {fitness.score:.6f}"]
    lines += [f"  {key}: {fitness.components[key]:.6f}" for key in sorted(fitness.components)]
    return lines


def anomaly_section(counters: AnomalyCounters, elastic: bool = False) -> list[str]:
    """``elastic``: a blis-only autoscaler ran, so the block also counts its oscillations
    (never with upstream's wva pipeline, whose stdout stays upstream's)."""
    if not counters.any_printed() and not (elastic and counters.scale_oscillations):
        return []
    lines = ["=== Anomaly Counters ===",
             f"Priority Inversions: {counters.priority_inversions}",
             f"HOL Blocking Events: {counters.hol_blocking_events}",
             f"Rejected Requests (Admission): {counters.rejected_requests}"]
    for tier in sorted(counters.shed_by_tier):
        lines.append(f"  Shed ({tier}): {counters.shed_by_tier[tier]}")
    lines += [f"Rejected Requests (Routing): {counters.routing_rejections}",
              f"Dropped Unservable: {counters.dropped_unservable}",
              f"Length-Capped Requests: {counters.length_capped_requests}"]
    if counters.gateway_queue_depth > 0:
        lines.append(f"Gateway Queue Depth (horizon): {counters.gateway_queue_depth}")
    if counters.gateway_queue_shed > 0:
        lines.append(f"Gateway Queue Shed: {counters.gateway_queue_shed}")
    if elastic:
        lines.append(f"Scale Oscillations: {counters.scale_oscillations}")
    return lines


def autoscaling_section(elasticity) -> list[str]:
    """``=== Autoscaling Metrics ===`` (blis only), printed for blis-only autoscalers."""
    e = elasticity
    return ["=== Autoscaling Metrics ===",
            f"Scale-Ups: {e.scale_ups}",
            f"Scale-Downs: {e.scale_downs}",
            f"Failed Placements: {e.failed_placements}",
            f"Replicas: min={e.min_replicas} mean={e.mean_replicas:.2f} max={e.max_replicas}",
            f"Replica-Seconds: {e.replica_seconds:.2f}",
            f"GPU Cost: {e.gpu_cost:.4f}"]


def shows_elasticity(simulation) -> bool:
    """Whether stdout carries the blis-only elasticity lines: an autoscaler other than
    upstream's ``wva`` ran (so upstream's own cases print exactly what upstream prints)."""
    scaling = getattr(getattr(simulation, "config", None), "autoscaler", None)
    return scaling is not None and scaling.policy != "wva"


def kv_section(metrics: RawMetrics) -> list[str]:
    values = (metrics.preemption_rate, metrics.cache_hit_rate, metrics.kv_thrashing_rate)
    if not any(values):
        return []
    return ["=== KV Cache Metrics ===",
            f"Preemption Rate: {values[0]:.4f}",
            f"Cache Hit Rate: {values[1]:.4f}",
            f"KV Thrashing Rate: {values[2]:.4f}"]


def per_slo_section(metrics: RawMetrics) -> list[str]:
    classes = metrics.per_slo_class
    if len(classes) < 2:
        return []
    lines = ["=== Per-SLO Metrics ==="]
    for cls in sorted(classes):
        m = classes[cls]
        lines += [f"  {cls}:",
                  f"    TTFT: mean={m.ttft_us.mean:.2f} p99={m.ttft_us.p99:.2f} "
                  f"(n={m.ttft_us.count})",
                  f"    E2E:  mean={m.e2e_us.mean:.2f} p99={m.e2e_us.p99:.2f} "
                  f"(n={m.e2e_us.count})"]
    return lines


def per_model_section(summary) -> list[str]:
    models: dict = {}
    for r in summary.requests:
        if r.model:
            models.setdefault(r.model, []).append(r)
    if not models:
        return []
    duration = summary.counters["sim_ended_time"] / 1e6
    lines = ["=== Per-Model Metrics ==="]
    for model in sorted(models):
        reqs = models[model]
        ttft = sorted(r.first_token_time for r in reqs if r.ttft_set)
        done = [r for r in reqs if r.state == "completed"]
        e2e = sorted(r.e2e for r in done)
        rps = len(done) / duration if duration > 0 else 0.0
        tps = sum(r.num_output for r in done) / duration if duration > 0 else 0.0
        lines += [f"  {model}:",
                  f"    TTFT: p50={percentile(ttft, 50.0, 1.0):.2f} "
                  f"p99={percentile(ttft, 99.0, 1.0):.2f} (n={len(ttft)})",
                  f"    E2E:  p50={percentile(e2e, 50.0, 1.0):.2f} "
                  f"p99={percentile(e2e, 99.0, 1.0):.2f} (n={len(e2e)})",
                  f"    Throughput: {rps:.2f} req/s, {tps:.2f} tok/s"]
    return lines


def per_tenant_section(metrics: RawMetrics) -> list[str]:
    tenants = metrics.per_tenant
    if not tenants:
        return []
    lines = ["=== Per-Tenant Metrics ==="]
    for name in sorted(tenants):
        t = tenants[name]
        lines.append(f"  {name}: requests={t.completed_requests}, tokens={t.output_tokens}")
    lines.append(f"  Jain Fairness Index: {metrics.jain_fairness:.4f}")
    return lines


def _sections(evaluation: EvaluationResult) -> list[str]:
    elastic = shows_elasticity(evaluation.simulation)
    return (fitness_section(evaluation.fitness)
            + anomaly_section(evaluation.anomalies, elastic)
            + kv_section(evaluation.metrics)
            + per_slo_section(evaluation.metrics)
            + per_model_section(evaluation.simulation.summary)
            + per_tenant_section(evaluation.metrics)
            + pd_section(evaluation)
            + trace_section(evaluation)
            + (autoscaling_section(evaluation.metrics.elasticity) if elastic else []))


def pd_section(evaluation: EvaluationResult) -> list[str]:
    """``=== PD Metrics ===``, when some request was disaggregated."""
    simulation = evaluation.simulation
    pd = simulation.cluster.pd
    if pd is None:
        return []
    summary = simulation.summary
    views = [r for r in summary.requests if isinstance(r, ParentView)]
    metrics = pd_metrics(pd, simulation.instances, summary.counters["sim_ended_time"], views)
    return [] if metrics is None else metrics.lines()


def trace_section(evaluation: EvaluationResult) -> list[str]:
    """``=== Trace Summary ===``, with ``--summarize-trace`` on a traced run."""
    simulation = evaluation.simulation
    if not simulation.config.trace.summarize or simulation.cluster.trace is None:
        return []
    return TraceSummary.of(simulation.decisions).lines()


def render_text(evaluation: EvaluationResult) -> str:
    """Upstream's stdout: per-instance blocks when N > 1, the cluster block, then sections."""
    out = []
    simulation = evaluation.simulation
    # Upstream prints the blocks when --num-instances > 1, however many instances were placed
    # or added by an autoscaler.
    configured = (simulation.config.num_instances if simulation is not None
                  else len(evaluation.instance_summaries))
    if configured > 1:
        for summary in evaluation.instance_summaries:
            out += ["=== Simulation Metrics ===", go_json(summary)]
    out += ["=== Simulation Metrics ===", go_json(evaluation.summary)]
    out += _sections(evaluation)
    return "\n".join(out) + "\n"


def _cell(value) -> str:
    # Three decimals keep sub-millisecond latencies visible; integers print exactly.
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(evaluation: EvaluationResult) -> str:
    """The summary objects side by side (cluster first, then each instance when N > 1), one
    row per field of the JSON, followed by the same sections as the text report."""
    columns = [evaluation.summary]
    if len(evaluation.instance_summaries) > 1:
        columns += list(evaluation.instance_summaries)
    fields = [key for key in evaluation.summary if key != "instance_id"]
    for summary in columns[1:]:
        fields += [key for key in summary if key not in fields and key != "instance_id"]
    header = ["metric"] + [str(s["instance_id"]) for s in columns]
    rows = [[key] + [_cell(s.get(key, "")) for s in columns] for key in fields]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row) -> str:
        return "  ".join([row[0].ljust(widths[0])]
                         + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *map(line, rows)]
    sections = _sections(evaluation)
    if sections:
        out += [""] + sections
    return "\n".join(out) + "\n"


def render(evaluation: EvaluationResult, fmt: str, is_terminal: bool) -> str:
    """``fmt`` is one of :data:`FORMATS`; ``auto`` is a table on a terminal, text otherwise."""
    if fmt == "table" or (fmt == "auto" and is_terminal):
        return render_table(evaluation)
    return render_text(evaluation)
