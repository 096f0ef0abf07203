"""What a policy researcher takes away from a run: raw metrics, anomaly counters, per-class
breakdowns and one fitness number, bundled as an :class:`EvaluationResult`.

Definitions follow upstream BLIS at 4e179804 (``cluster-policies.md`` §5): distributions are in
ticks (µs) with upstream's linear-interpolation percentiles, fitness components are normalized
to [0, 1] against fixed references and combined with unnormalized weights. Everything here is
computed after the run from the finished instances; nothing runs on the simulation's hot path.
"""

from __future__ import annotations

import logging
import math
from typing import Mapping

import attrs

from blis_core.metrics import CountedValues, jain_fairness, percentile, sequential_mean

# Fitness normalization references (upstream's referenceRPS, referenceTPS, referenceTicks).
log = logging.getLogger("blis")

REFERENCE_RPS = 100.0
REFERENCE_TPS = 10_000.0
REFERENCE_TICKS = 1000.0

FITNESS_KEYS = ("gpu_cost", "mean_e2e", "mean_ttft", "p50_e2e", "p50_ttft", "p99_e2e",
                "p99_ttft", "replica_seconds", "scale_oscillations", "throughput",
                "tokens_per_sec")
# Scales of the blis-only elasticity keys (lower is better: 1 / (1 + v / scale)).
REFERENCE_COST = 1.0              # dollars
REFERENCE_REPLICA_SECONDS = 3600.0


class FitnessError(ValueError):
    """Malformed ``--fitness-weights``: unknown key, missing ``:``, or a weight that is not a
    finite number >= 0. The message is one line naming the offending entry."""


# -- distributions --------------------------------------------------------------------------------
@attrs.frozen
class Distribution:
    """Summary statistics of a set of values (ticks unless the field name says otherwise).

    An empty set has ``count == 0`` and every statistic 0.0, as upstream's Distribution does, so
    that fitness stays defined; :meth:`to_dict` reports those statistics as ``null`` instead, so
    a JSON reader cannot mistake "no data" for "zero latency".
    """

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    min: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, values) -> "Distribution":
        """From raw values, or from a :class:`~blis_core.metrics.CountedValues` multiset."""
        ordered = values if isinstance(values, CountedValues) else sorted(values)
        n = len(ordered)
        if n == 0:
            return cls()
        mean = ordered.mean() if isinstance(ordered, CountedValues) else sequential_mean(ordered)
        return cls(count=n, mean=float(mean),
                   p50=percentile(ordered, 50.0, 1.0), p90=percentile(ordered, 90.0, 1.0),
                   p95=percentile(ordered, 95.0, 1.0), p99=percentile(ordered, 99.0, 1.0),
                   min=float(ordered[0]), max=float(ordered[n - 1]))

    def to_dict(self) -> dict:
        stats = ("mean", "p50", "p90", "p95", "p99", "min", "max")
        if self.count == 0:
            return {"count": 0, **{name: None for name in stats}}
        return {"count": self.count, **{name: getattr(self, name) for name in stats}}


@attrs.frozen
class ClassMetrics:
    """Latencies of one SLO class (``""`` counts as ``default``), in ticks."""

    ttft_us: Distribution        # requests with a first token
    itl_us: Distribution         # per-request mean ITL of completed requests
    e2e_us: Distribution         # completed requests

    def to_dict(self) -> dict:
        return {"ttft_us": self.ttft_us.to_dict(), "itl_us": self.itl_us.to_dict(),
                "e2e_us": self.e2e_us.to_dict()}


@attrs.frozen
class TenantMetrics:
    completed_requests: int
    output_tokens: int           # decoded tokens of the tenant's completed requests

    def to_dict(self) -> dict:
        return {"completed_requests": self.completed_requests,
                "output_tokens": self.output_tokens}


# -- anomalies ------------------------------------------------------------------------------------
@attrs.frozen
class AnomalyCounters:
    """Symptoms a pathological policy produces (definitions in docs/metrics.md)."""

    priority_inversions: int = 0
    hol_blocking_events: int = 0
    rejected_requests: int = 0               # by admission, tenant-budget shed included
    shed_by_tier: Mapping[str, int] = attrs.field(factory=dict)
    routing_rejections: int = 0
    dropped_unservable: int = 0
    length_capped_requests: int = 0
    timed_out_requests: int = 0
    preemptions: int = 0
    gateway_queue_depth: int = 0             # flow control: still in the gateway queue at the end
    gateway_queue_shed: int = 0              # flow control: dropped for the queue's capacity
    scale_oscillations: int = 0              # autoscaler direction reversals (blis only)

    def any_printed(self) -> bool:
        """Whether upstream prints the ``=== Anomaly Counters ===`` block (timed-out requests and
        preemptions do not trigger it)."""
        return any((self.priority_inversions, self.hol_blocking_events, self.rejected_requests,
                    self.routing_rejections, self.dropped_unservable,
                    self.length_capped_requests, self.gateway_queue_depth,
                    self.gateway_queue_shed))

    def to_dict(self) -> dict:
        out = attrs.asdict(self)
        out["shed_by_tier"] = {k: self.shed_by_tier[k] for k in sorted(self.shed_by_tier)}
        return out


def priority_inversions(instances, priority_policy: str) -> int:
    """Upstream's priority-inversion count (cluster-policies.md §5.3).

    0 when the priority policy is ``constant`` or empty. Otherwise, per instance, the completed
    requests are grouped by SLO class; within a class, ordered by arrival, every pair ``i < j``
    with ``e2e_i > 2 * e2e_j`` is one inversion. Upstream sorts by arrival with an unstable
    sort, so its count is not determined when arrivals tie within a class; blis orders such
    ties by e2e, so they never count (a documented deviation). Ordering them by request ID
    instead made the count depend on how IDs are spelled: a run names a session's follow-up
    after its session, a replay of the run's trace after its row.
    """
    if priority_policy in ("", "constant"):
        return 0
    total = 0
    for inst in instances:
        groups: dict = {}
        for r in inst.requests.values():
            if r.state == "completed":
                groups.setdefault(r.slo_class or "default", []).append(r)
        for cls in sorted(groups):
            ordered = sorted(groups[cls], key=lambda r: (r.arrival_time, r.e2e))
            total += _count_inversions([r.e2e for r in ordered])
    return total


def _count_inversions(values) -> int:
    """Pairs ``i < j`` with ``values[i] > 2 * values[j]``, in O(n log n) with a Fenwick tree."""
    from bisect import bisect_right

    distinct = sorted(set(values))
    size = len(distinct)
    tree = [0] * (size + 1)
    count = 0
    for seen, v in enumerate(values):
        # earlier values > 2v = seen - (earlier values <= 2v)
        k = bisect_right(distinct, 2 * v)
        at_most = 0
        while k > 0:
            at_most += tree[k]
            k -= k & -k
        count += seen - at_most
        k = bisect_right(distinct, v)  # 1-based position of v
        while k <= size:
            tree[k] += 1
            k += k & -k
    return count


def hol_blocking_events(instances) -> int:
    """Instances whose mean wait-queue length exceeds twice the cluster mean (>= 2 instances).

    It counts instances, not events, as upstream does; an instance that never stepped has mean 0
    and still counts towards the cluster mean.
    """
    if len(instances) < 2:
        return 0
    averages = [inst.wait_samples / inst.step_count if inst.step_count else 0.0
                for inst in instances]
    mean = sum(averages) / len(averages)
    if mean <= 0:
        return 0
    return sum(1 for avg in averages if avg > 2 * mean)


def anomaly_counters(result) -> AnomalyCounters:
    c = result.summary.counters
    elasticity = getattr(result, "elasticity", None)
    cluster = result.cluster
    gateway = cluster.gateway
    return AnomalyCounters(
        priority_inversions=priority_inversions(result.instances, result.config.policies.priority),
        hol_blocking_events=hol_blocking_events(result.instances),
        rejected_requests=cluster.rejected,
        shed_by_tier=dict(cluster.shed_by_tier),
        routing_rejections=cluster.routing_rejections,
        dropped_unservable=c["dropped_unservable"],
        length_capped_requests=c["length_capped"],
        timed_out_requests=c["timed_out"],
        preemptions=c["preemptions"],
        gateway_queue_depth=len(gateway.queue) if gateway is not None else 0,
        gateway_queue_shed=gateway.queue.shed if gateway is not None else 0,
        scale_oscillations=elasticity.scale_oscillations if elasticity is not None else 0,
    )


# -- raw metrics ----------------------------------------------------------------------------------
@attrs.frozen
class RawMetrics:
    """The cluster's numbers behind fitness: distributions in ticks (µs), rates per second,
    request conservation, cache rates, and per-class and per-tenant breakdowns.

    Conservation: ``injected == completed + still_queued + still_running + dropped_unservable
    + timed_out`` for the requests that reached an instance, and ``arrived == injected +
    rejected_requests + routing_rejections`` (+ the gateway queue's depth and shed requests with
    flow control) for all requests offered to the cluster.
    """

    ttft_us: Distribution
    e2e_us: Distribution
    itl_us: Distribution                     # every ITL entry of every completed request
    scheduling_delay_us: Distribution
    requests_per_sec: float
    tokens_per_sec: float
    sim_duration_us: int
    arrived: int
    injected: int
    completed: int
    still_queued: int
    still_running: int
    dropped_unservable: int
    timed_out: int
    rejected_requests: int
    routing_rejections: int
    total_input_tokens: int
    total_output_tokens: int
    preemption_rate: float
    cache_hit_rate: float
    kv_thrashing_rate: float
    per_slo_class: Mapping[str, ClassMetrics]
    per_tenant: Mapping[str, TenantMetrics]
    jain_fairness: float | None              # over tenants' output tokens; None without tenants
    # Elasticity (blis only): what node pools cost and what the autoscaler did; None without
    # node pools and autoscaler, when the three figures below are 0.
    elasticity: object = None                # an autoscaling.ElasticityMetrics
    gpu_cost: float = 0.0
    replica_seconds: float = 0.0
    scale_oscillations: int = 0

    def to_dict(self) -> dict:
        out = {}
        for field in attrs.fields(RawMetrics):
            value = getattr(self, field.name)
            if isinstance(value, Distribution):
                value = value.to_dict()
            elif field.name == "elasticity":
                value = value.to_dict() if value is not None else None
            elif field.name in ("per_slo_class", "per_tenant"):
                value = {k: value[k].to_dict() for k in sorted(value)}
            out[field.name] = value
        return out


def raw_metrics(result) -> RawMetrics:
    """The RawMetrics of a finished :class:`~blis_core.simulation.SimulationResult`."""
    summary = result.summary
    c = summary.counters
    duration_us = c["sim_ended_time"]
    seconds = duration_us / 1e6
    completed = c["completed"]
    productive = completed > 0 and seconds > 0
    injected = (completed + c["still_queued"] + c["still_running"] + c["dropped_unservable"]
                + c["timed_out"])
    cluster = result.cluster
    elasticity = getattr(result, "elasticity", None)
    classes: dict = {}
    tenants: dict = {}
    for r in summary.requests:
        # A class appears once one of its requests has a first token, as upstream's per-SLO
        # maps are keyed by the requests with a TTFT or an E2E.
        if not (r.ttft_set or r.state == "completed"):
            continue
        ttft, itl, e2e = classes.setdefault(r.slo_class or "default", ([], [], []))
        if r.ttft_set:
            ttft.append(r.first_token_time)
        if r.state == "completed":
            itl.append(r.itl_mean)
            e2e.append(r.e2e)
            if r.tenant_id:
                count, tokens = tenants.get(r.tenant_id, (0, 0))
                tenants[r.tenant_id] = (count + 1, tokens + r.num_output)
    per_class = {cls: ClassMetrics(Distribution.of(t), Distribution.of(i), Distribution.of(e))
                 for cls, (t, i, e) in sorted(classes.items())}
    per_tenant = {name: TenantMetrics(*tenants[name]) for name in sorted(tenants)}
    return RawMetrics(
        ttft_us=Distribution.of(summary.ttfts),
        e2e_us=Distribution.of(summary.e2es),
        itl_us=Distribution.of(summary.itl),
        scheduling_delay_us=Distribution.of(summary.delays),
        requests_per_sec=completed / seconds if productive else 0.0,
        tokens_per_sec=c["total_output_tokens"] / seconds if productive else 0.0,
        sim_duration_us=duration_us,
        arrived=(injected + cluster.rejected + cluster.routing_rejections
                 + (len(cluster.gateway.queue) + cluster.gateway.queue.shed
                    if cluster.gateway is not None else 0)),
        injected=injected,
        completed=completed,
        still_queued=c["still_queued"],
        still_running=c["still_running"],
        dropped_unservable=c["dropped_unservable"],
        timed_out=c["timed_out"],
        rejected_requests=cluster.rejected,
        routing_rejections=cluster.routing_rejections,
        total_input_tokens=c["total_input_tokens"],
        total_output_tokens=c["total_output_tokens"],
        preemption_rate=c["preemptions"] / completed if completed > 0 else 0.0,
        cache_hit_rate=summary.cache_hit_rate,
        kv_thrashing_rate=summary.thrashing_rate,
        per_slo_class=per_class,
        per_tenant=per_tenant,
        jain_fairness=(jain_fairness([per_tenant[n].output_tokens for n in per_tenant])
                       if per_tenant else None),
        elasticity=elasticity,
        gpu_cost=elasticity.gpu_cost if elasticity is not None else 0.0,
        replica_seconds=elasticity.replica_seconds if elasticity is not None else 0.0,
        scale_oscillations=elasticity.scale_oscillations if elasticity is not None else 0,
    )


# -- fitness --------------------------------------------------------------------------------------
@attrs.frozen
class FitnessResult:
    """``score = Σ weight·component`` over the weighted keys (weights are not normalized)."""

    score: float
    components: Mapping[str, float]          # key -> normalized value in [0, 1]
    weights: Mapping[str, float]

    def to_dict(self) -> dict:
        return {"score": self.score,
                "components": {k: self.components[k] for k in sorted(self.components)},
                "weights": {k: self.weights[k] for k in sorted(self.weights)}}


def parse_fitness_weights(text: str) -> dict[str, float]:
    """``"key:w,key:w"`` -> weights, as upstream parses ``--fitness-weights``: entries split on
    ``,`` and trimmed, key and weight split on the first ``:``, a repeated key overwrites.
    Unlike upstream, unknown keys are refused here, before the run, not after it."""
    if text == "":
        return {}
    weights: dict[str, float] = {}
    for entry in text.split(","):
        entry = entry.strip()
        key, sep, value = entry.partition(":")
        if not sep:
            raise FitnessError(f"invalid fitness weight {entry!r}: expected key:value")
        key = key.strip()
        if key not in FITNESS_KEYS:
            raise FitnessError(f"unknown fitness key {key!r} (known: {', '.join(FITNESS_KEYS)})")
        try:
            weight = float(value.strip())
        except ValueError:
            raise FitnessError(f"invalid fitness weight for {key!r}: {value.strip()!r} is not "
                               "a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise FitnessError(f"invalid weight for {key!r}: must be a finite non-negative "
                               f"number, got {value.strip()}")
        weights[key] = weight
    return weights


def fitness_components(metrics: RawMetrics) -> dict[str, float]:
    """Every fitness key's normalized value: higher-is-better ``v / (v + ref)``, lower-is-better
    ``1 / (1 + v / 1000 ticks)``. An empty distribution counts as 0, as upstream does, which
    scores *best* on latency: check ``metrics.completed`` before trusting such a score."""
    rps, tps = metrics.requests_per_sec, metrics.tokens_per_sec

    def lower_better(v: float) -> float:
        return 1.0 / (1.0 + v / REFERENCE_TICKS)

    return {
        "mean_e2e": lower_better(metrics.e2e_us.mean),
        "mean_ttft": lower_better(metrics.ttft_us.mean),
        "p50_e2e": lower_better(metrics.e2e_us.p50),
        "p50_ttft": lower_better(metrics.ttft_us.p50),
        "p99_e2e": lower_better(metrics.e2e_us.p99),
        "p99_ttft": lower_better(metrics.ttft_us.p99),
        "throughput": rps / (rps + REFERENCE_RPS),
        "tokens_per_sec": tps / (tps + REFERENCE_TPS),
        "gpu_cost": 1.0 / (1.0 + metrics.gpu_cost / REFERENCE_COST),
        "replica_seconds": 1.0 / (1.0 + metrics.replica_seconds / REFERENCE_REPLICA_SECONDS),
        "scale_oscillations": 1.0 / (1.0 + metrics.scale_oscillations),
    }


def compute_fitness(metrics: RawMetrics, weights: Mapping[str, float]) -> FitnessResult:
    unknown = sorted(set(weights) - set(FITNESS_KEYS))
    if unknown:
        raise FitnessError(f"unknown fitness key {unknown[0]!r} (known: {', '.join(FITNESS_KEYS)})")
    every = fitness_components(metrics)
    components = {key: every[key] for key in sorted(weights)}
    score = 0.0
    for key in sorted(weights):
        score += weights[key] * components[key]
    return FitnessResult(score, components, dict(sorted(weights.items())))


# -- the result -----------------------------------------------------------------------------------
@attrs.frozen
class EvaluationResult:
    """One run, evaluated: the surface framework adapters and research scripts build on.

    ``wall_time_s`` is the only field that is not a function of the configuration; it is left
    out of :meth:`to_dict`, so two evaluations of one configuration serialize byte-identically.
    """

    fitness: FitnessResult | None            # None without fitness weights
    metrics: RawMetrics
    anomalies: AnomalyCounters
    summary: dict                            # the cluster's summary object (the stdout JSON)
    instance_summaries: tuple                # one summary object per instance
    simulation: object = attrs.field(repr=False, eq=False)   # the SimulationResult
    wall_time_s: float = attrs.field(default=0.0, eq=False)

    @property
    def per_slo_class(self) -> Mapping[str, ClassMetrics]:
        return self.metrics.per_slo_class

    @property
    def decisions(self) -> list[dict]:
        """The decision trace, one dict per decision in event order (docs/decision-trace.md);
        empty unless the run's trace level is "decisions"."""
        return self.simulation.decisions

    @property
    def timeseries(self):
        """The run's :class:`~blis_core.timeseries.TimeSeries` (``output.timeseries`` set), or
        None."""
        return self.simulation.timeseries

    @property
    def score(self) -> float | None:
        return None if self.fitness is None else self.fitness.score

    def to_dict(self) -> dict:
        return {"fitness": None if self.fitness is None else self.fitness.to_dict(),
                "metrics": self.metrics.to_dict(),
                "anomalies": self.anomalies.to_dict(),
                "summary": self.summary,
                "instances": list(self.instance_summaries)}


def evaluate_result(result, fitness_weights: Mapping[str, float] | None = None,
                    wall_time_s: float = 0.0) -> EvaluationResult:
    """Evaluate a finished :class:`~blis_core.simulation.SimulationResult`."""
    metrics = raw_metrics(result)
    fitness = compute_fitness(metrics, fitness_weights) if fitness_weights else None
    if fitness is not None:
        for key in sorted(fitness.components):
            empty = metrics.e2e_us if key.endswith("_e2e") else metrics.ttft_us
            if key.endswith(("_e2e", "_ttft")) and empty.count == 0:
                # Upstream scores an empty distribution as 0 ticks, the best latency there is; a
                # policy that serves nothing must not look good without anyone noticing.
                log.warning("fitness: %s has no samples, so it scores 1.0 (an empty "
                            "distribution counts as 0, as upstream)", key)
    return EvaluationResult(
        fitness=fitness, metrics=metrics, anomalies=anomaly_counters(result),
        summary=result.summary.output(),
        instance_summaries=tuple(s.output() for s in result.instance_summaries),
        simulation=result, wall_time_s=wall_time_s)


def empty_metrics() -> RawMetrics:
    """The metrics of a run that produced nothing (fitness weights are checked against it)."""
    return _EMPTY_METRICS


_EMPTY_METRICS = RawMetrics(
    ttft_us=Distribution(), e2e_us=Distribution(), itl_us=Distribution(),
    scheduling_delay_us=Distribution(), requests_per_sec=0.0, tokens_per_sec=0.0,
    sim_duration_us=0, arrived=0, injected=0, completed=0, still_queued=0, still_running=0,
    dropped_unservable=0, timed_out=0, rejected_requests=0, routing_rejections=0,
    total_input_tokens=0, total_output_tokens=0, preemption_rate=0.0, cache_hit_rate=0.0,
    kv_thrashing_rate=0.0, per_slo_class={}, per_tenant={}, jain_fairness=None)
