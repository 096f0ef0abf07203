"""Admission policies, priority policies and schedulers: upstream's rules as properties.

The built-in policies (``blis_policies``) are checked one by one against the rules of
cluster-policies.md §3.2-3.5, then inside random clusters: every admitted request reaches
exactly one instance, round-robin stays even, and the engine's shortcuts still change nothing
when a priority policy and a scheduler reorder the wait queue every step.
"""

from __future__ import annotations

from collections import Counter, deque
from functools import cmp_to_key

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blis_core.config import KVConfig, PolicyConfig, SimulationConfig
from blis_core.instance import BatchConfig
from blis_core.latency import BlackboxLatency
from blis_core.evaluation import priority_inversions
from blis_core.metrics import go_json
from blis_core.plugins import get_registry
from blis_core.protocols import RouterState, Snapshot
from blis_core.request import Request
from blis_core.simulation import build_cluster, simulate
from blis_policies.admission import (GaieLegacy, RejectAll, TierShed, TokenBucket,
                                     slo_priority)
from blis_policies.priority import ConstantPriority, InvertedSLOPriority, SLOBasedPriority
from blis_policies.scheduler import FCFS, SJF, PriorityFCFS, ReversePriority

ALPHA = [232.46191091038054, 1.752360364195244, 3357.4400353290152]
BETA = [5752.705191348184, 17.25086436834028, 5.999143920128404]
SLO_CLASSES = ["", "critical", "standard", "batch", "sheddable", "background", "custom"]

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def request(i: int, arrival: int = 0, n_in: int = 1, n_out: int = 1, slo: str = "") -> Request:
    return Request(f"request_{i}", arrival, np.zeros(n_in, np.int32), np.zeros(n_out, np.int32),
                   max_output_len=n_out, slo_class=slo)


def state(clock: int = 0, loads=()) -> RouterState:
    """Snapshots with the given (queue_depth, batch_size, in_flight, kv_utilization) tuples."""
    return RouterState([Snapshot(f"instance_{i}", qd, bs, kv, in_flight_requests=fl)
                        for i, (qd, bs, fl, kv) in enumerate(loads)], clock)


# -- admission --------------------------------------------------------------------------------
@SETTINGS
@given(capacity=st.floats(1, 5000), rate=st.floats(1, 5000),
       calls=st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(0, 3000)),
                      min_size=1, max_size=60))
def test_token_bucket_never_admits_beyond_capacity_plus_refill(capacity, rate, calls):
    bucket = TokenBucket(capacity, rate)
    clock = 0
    admitted_cost = 0
    for i, (gap, cost) in enumerate(calls):
        clock += gap
        before = bucket.tokens
        ok, reason = bucket.admit(request(i, n_in=cost), state(clock))
        if ok:
            admitted_cost += cost
            assert reason == ""
        else:
            assert reason == "insufficient tokens"
        # Never more than the capacity, never negative, and a refusal changes only the refill.
        assert -1e-9 <= bucket.tokens <= capacity
        if not ok:
            assert bucket.tokens >= before and cost > bucket.tokens
        # Everything admitted so far fits in a full bucket plus what refilled since time 0.
        assert admitted_cost <= capacity + clock * rate / 1e6 + 1e-6 * (1 + admitted_cost)


def test_token_bucket_follows_upstreams_arithmetic():
    bucket = TokenBucket(100.0, 1000.0)          # 1 token per ms
    assert bucket.admit(request(0, n_in=100), state(0)) == (True, "")
    assert bucket.admit(request(1, n_in=1), state(0)) == (False, "insufficient tokens")
    assert bucket.admit(request(2, n_in=5), state(5000)) == (True, "")     # refilled 5
    assert bucket.tokens == 0.0
    assert bucket.admit(request(3, n_in=101), state(10**9)) == (False, "insufficient tokens")
    assert bucket.tokens == 100.0                 # capped at the capacity
    assert bucket.admit(request(4, n_in=0), state(10**9)) == (True, "")  # cost 0 always fits


@pytest.mark.parametrize("capacity,rate", [(0, 1), (1, 0), (-1, 1), (float("inf"), 1),
                                           (1, float("nan"))])
def test_token_bucket_rejects_bad_parameters(capacity, rate):
    with pytest.raises(ValueError):
        TokenBucket(capacity, rate)


def test_reject_all_rejects_everything_and_is_pathological():
    assert RejectAll().admit(request(0), state()) == (False, "reject-all")
    assert RejectAll.pathological is True


def test_slo_priority_map_is_upstreams():
    assert [slo_priority(c) for c in SLO_CLASSES] == [3, 4, 3, -1, -2, -3, 3]
    assert slo_priority("batch", {"batch": 7}) == 7


@SETTINGS
@given(threshold=st.integers(0, 10), min_priority=st.integers(-4, 5),
       slo=st.sampled_from(SLO_CLASSES),
       loads=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8),
                                st.just(0.0)), max_size=4))
def test_tier_shed_rule(threshold, min_priority, slo, loads):
    ok, reason = TierShed(threshold, min_priority).admit(request(0, slo=slo), state(0, loads))
    max_load = max([qd + bs + fl for qd, bs, fl, _ in loads], default=0)
    expected = max_load <= threshold or slo_priority(slo) >= min_priority
    assert ok == expected
    if not ok:
        assert reason == (f"tier-shed: class={slo} priority={slo_priority(slo)} "
                          f"< min={min_priority} load={max_load}")


@SETTINGS
@given(slo=st.sampled_from(SLO_CLASSES),
       loads=st.lists(st.tuples(st.integers(0, 12), st.just(0), st.just(0),
                                st.floats(0, 1)), max_size=4))
def test_gaie_legacy_rule(slo, loads):
    ok, reason = GaieLegacy().admit(request(0, slo=slo), state(0, loads))
    if slo_priority(slo) >= 0:
        assert ok and reason == ""
        return
    sat = (sum(max(qd / 5.0, kv / 0.8) for qd, _, _, kv in loads) / len(loads)
           if loads else 1.0)
    assert ok == (sat < 1.0)
    if not ok:
        assert reason == f"gaie-saturated: class={slo} saturation={sat:.2f}"


# -- priority policies -------------------------------------------------------------------------
@given(arrival=st.integers(0, 10**12), age=st.integers(0, 10**12))
def test_priority_policies(arrival, age):
    req = request(0, arrival)
    now = arrival + age
    assert ConstantPriority().compute(req, now) == 0.0
    assert SLOBasedPriority().compute(req, now) == 1e-6 * age
    assert InvertedSLOPriority().compute(req, now) == -(1e-6 * age)


# -- schedulers --------------------------------------------------------------------------------
@st.composite
def wait_queues(draw):
    n = draw(st.integers(0, 30))
    queue = deque()
    for i in draw(st.permutations(range(n))):
        req = request(i, draw(st.integers(0, 5)), draw(st.integers(1, 5)))
        req.priority = draw(st.sampled_from([0.0, -1.5, 1.5, 2.0, 1e-6]))
        queue.append(req)
    return queue


def _upstream_less(key_fields):
    """A comparison spelled out field by field, independent of the schedulers' tuple keys."""
    def compare(a, b):
        for field, descending in key_fields:
            x, y = field(a), field(b)
            if x != y:
                return (-1 if x > y else 1) if descending else (-1 if x < y else 1)
        return 0
    return cmp_to_key(compare)


PRIORITY = (lambda r: r.priority, True)
PRIORITY_ASC = (lambda r: r.priority, False)
ARRIVAL = (lambda r: r.arrival_time, False)
ID = (lambda r: r.id.encode(), False)
LENGTH = (lambda r: r.num_input, False)


@SETTINGS
@given(wait_queues())
def test_priority_fcfs_dequeues_in_priority_then_arrival_order(queue):
    original = list(queue)
    ordered = PriorityFCFS().order(queue)
    assert isinstance(ordered, deque) and sorted(map(id, ordered)) == sorted(map(id, original))
    popped = [ordered.popleft() for _ in range(len(ordered))]
    for a, b in zip(popped, popped[1:]):
        assert a.priority > b.priority or (
            a.priority == b.priority and (a.arrival_time, a.id.encode())
            <= (b.arrival_time, b.id.encode()))
    assert popped == sorted(original, key=_upstream_less([PRIORITY, ARRIVAL, ID]))


@SETTINGS
@given(wait_queues())
def test_sjf_never_puts_a_longer_request_before_a_shorter_one(queue):
    original = list(queue)
    ordered = list(SJF().order(queue))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            assert a.num_input <= b.num_input
    assert ordered == sorted(original, key=_upstream_less([LENGTH, ARRIVAL, ID]))


@SETTINGS
@given(wait_queues())
def test_reverse_priority_and_fcfs(queue):
    original = list(queue)
    assert list(ReversePriority().order(deque(original))) == \
        sorted(original, key=_upstream_less([PRIORITY_ASC, ARRIVAL, ID]))
    same = deque(original)
    assert FCFS().order(same) is same


def test_schedulers_sort_stably():
    # Equal keys (here: duplicate ids, which the engine never produces) keep the queue order.
    a, b = request(1, 5, 3), request(1, 5, 3)
    for scheduler in (PriorityFCFS(), SJF(), ReversePriority()):
        assert list(scheduler.order(deque([a, b]))) == [a, b]
        assert list(scheduler.order(deque([b, a]))) == [b, a]


# -- wiring ------------------------------------------------------------------------------------
def _config(**policies) -> SimulationConfig:
    return SimulationConfig(latency=BlackboxLatency(ALPHA, BETA), num_instances=2,
                            policies=PolicyConfig(**policies))


def test_noop_priority_and_scheduler_cost_nothing():
    cluster = build_cluster(_config())
    assert all(i.priority_policy is None and i.scheduler is None for i in cluster.instances)


def test_selected_priority_and_scheduler_get_one_object_per_instance():
    cluster = build_cluster(_config(priority="slo-based", scheduler="sjf",
                                    admission="token-bucket",
                                    admission_params={"capacity": 5.0, "refill_rate": 2.0}))
    a, b = cluster.instances
    assert isinstance(a.priority_policy, SLOBasedPriority) and isinstance(a.scheduler, SJF)
    assert a.priority_policy is not b.priority_policy and a.scheduler is not b.scheduler
    assert (cluster.admission.capacity, cluster.admission.refill_rate) == (5.0, 2.0)


def test_every_builtin_is_registered_with_its_protocol_method():
    reg = get_registry()
    method = {"admission": "admit", "priority": "compute", "scheduler": "order"}
    expected = {"admission": {"always-admit", "token-bucket", "reject-all", "tier-shed",
                              "gaie-legacy"},
                "priority": {"constant", "slo-based", "inverted-slo"},
                "scheduler": {"fcfs", "priority-fcfs", "sjf", "reverse-priority"}}
    for kind, names in expected.items():
        assert names <= set(reg.names(kind))
        for name in names:
            assert callable(getattr(reg.get(kind, name), method[kind]))


# -- inside a cluster --------------------------------------------------------------------------
@st.composite
def cluster_runs(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.integers(1, draw(st.integers(2, 200_000)), n))
    requests = []
    for i in range(n):
        prompt = rng.integers(0, 128000, int(rng.integers(1, 120))).astype(np.int32)
        output = rng.integers(0, 128000, int(rng.integers(0, 60))).astype(np.int32)
        requests.append(Request(f"request_{i}", int(arrivals[i]), prompt, output,
                                max_output_len=len(output),
                                slo_class=SLO_CLASSES[int(rng.integers(len(SLO_CLASSES)))]))
    admission = draw(st.sampled_from(["always-admit", "token-bucket", "reject-all", "tier-shed",
                                      "gaie-legacy"]))
    params = {}
    if admission == "token-bucket":
        params = {"capacity": draw(st.floats(50, 2000)), "refill_rate": draw(st.floats(1, 5000))}
    elif admission == "tier-shed":
        params = {"threshold": draw(st.integers(0, 4)), "min_priority": draw(st.integers(-3, 4))}
    config = SimulationConfig(
        latency=BlackboxLatency(ALPHA, BETA),
        batch=BatchConfig(max_running=draw(st.integers(1, 8)),
                          max_scheduled_tokens=draw(st.integers(1, 256)),
                          long_prefill_threshold=draw(st.sampled_from([0, 0, 16])),
                          max_model_len=draw(st.sampled_from([0, 0, 200]))),
        kv=KVConfig(total_blocks=draw(st.integers(1, 40)),
                    block_size=draw(st.sampled_from([1, 4, 16])),
                    cpu_blocks=draw(st.sampled_from([0, 0, 8])), transfer_bandwidth=2.0),
        policies=PolicyConfig(
            admission=admission, admission_params=params,
            routing=draw(st.sampled_from(["round-robin", "least-loaded", "always-busiest"])),
            priority=draw(st.sampled_from(["constant", "slo-based", "inverted-slo"])),
            scheduler=draw(st.sampled_from(["fcfs", "priority-fcfs", "sjf",
                                            "reverse-priority"]))),
        num_instances=draw(st.integers(1, 4)),
        horizon=int(arrivals[-1]) + 50_000_000,
    )
    return config, requests


def fresh(requests):
    return [Request(r.id, r.arrival_time, r.input_tokens, r.output_tokens, r.max_output_len,
                    slo_class=r.slo_class) for r in requests]


class _RecordingAdmission:
    def __init__(self, inner):
        self.inner = inner
        self.admitted: list = []
        self.rejected: list = []

    def admit(self, req, state):
        ok, reason = self.inner.admit(req, state)
        (self.admitted if ok else self.rejected).append(req.id)
        return ok, reason


def _run_recorded(config, requests):
    cluster = build_cluster(config)
    recorder = cluster.admission = _RecordingAdmission(cluster.admission)
    injected: list = []
    for inst in cluster.instances:
        inject = inst.inject

        def recording_inject(req, time, _inst=inst, _inject=inject):
            injected.append((req.id, _inst.id))
            _inject(req, time)
        inst.inject = recording_inject
    cluster.run(requests)
    return cluster, recorder, injected


@SETTINGS
@given(cluster_runs())
def test_every_admitted_request_is_routed_to_exactly_one_instance(run):
    config, requests = run
    requests = fresh(requests)
    cluster, recorder, injected = _run_recorded(config, requests)
    assert len(recorder.admitted) + len(recorder.rejected) == len(requests)
    assert cluster.rejected == len(recorder.rejected) == sum(cluster.shed_by_tier.values())
    by_request = Counter(rid for rid, _ in injected)
    assert set(by_request) == set(recorder.admitted)
    assert all(count == 1 for count in by_request.values())
    requests_by_id = {r.id: r for r in requests}
    for rid, instance_id in injected:
        assert requests_by_id[rid].assigned_instance == instance_id
    for rid in recorder.rejected:
        assert requests_by_id[rid].assigned_instance == ""
    expected_tiers = Counter(requests_by_id[rid].slo_class or "standard"
                             for rid in recorder.rejected)
    assert cluster.shed_by_tier == dict(expected_tiers)


@SETTINGS
@given(cluster_runs())
def test_round_robin_assigns_within_one_of_even(run):
    config, requests = run
    config = attrs.evolve(config, policies=attrs.evolve(config.policies, routing="round-robin",
                                                        admission="always-admit",
                                                        admission_params={}))
    cluster, _, injected = _run_recorded(config, fresh(requests))
    counts = Counter(instance_id for _, instance_id in injected)
    per_instance = [counts.get(inst.id, 0) for inst in cluster.instances]
    assert sum(per_instance) == len(requests)
    assert max(per_instance) - min(per_instance) <= 1
    # The first instances in order get the extra requests.
    assert per_instance == sorted(per_instance, reverse=True)


@SETTINGS
@given(cluster_runs())
def test_engine_shortcuts_change_nothing_under_any_policy(run):
    config, requests = run
    fast = simulate(config, fresh(requests))
    slow = simulate(config, fresh(requests), reference=True)
    assert go_json(fast.summary.output(with_requests=True)) == \
        go_json(slow.summary.output(with_requests=True))
    assert priority_inversions(fast.instances, config.policies.priority) == \
        priority_inversions(slow.instances, config.policies.priority)


@SETTINGS
@given(cluster_runs())
def test_policy_runs_are_audited_and_deterministic(run):
    config, requests = run
    first = simulate(config, fresh(requests), audit=True)
    second = simulate(config, fresh(requests))
    assert go_json(first.summary.output(with_requests=True)) == \
        go_json(second.summary.output(with_requests=True))


# -- tenant budgets (cluster-policies §2.3 step 4) ---------------------------------------------
def _tenant_requests(n, rng_seed):
    rng = np.random.default_rng(rng_seed)
    requests = []
    for i in range(n):
        prompt = rng.integers(0, 128000, int(rng.integers(20, 200))).astype(np.int32)
        output = rng.integers(0, 128000, int(rng.integers(5, 80))).astype(np.int32)
        requests.append(Request(f"request_{i}", 1000 * (i + 1), prompt, output,
                                max_output_len=len(output),
                                tenant_id=("greedy", "polite")[i % 2],
                                slo_class=("batch", "critical")[int(rng.integers(0, 2))]))
    return requests


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.05, 0.2]))
def test_tenant_budget_sheds_only_sheddable_requests_of_tenants_over_budget(seed, share):
    config = SimulationConfig(latency=BlackboxLatency(ALPHA, BETA),
                              batch=BatchConfig(max_running=4),
                              kv=KVConfig(total_blocks=2000, block_size=16), num_instances=2,
                              tenant_budgets={"greedy": share})
    requests = _tenant_requests(60, seed)
    result = simulate(config, requests)
    served = {r.id for inst in result.instances for r in inst.requests.values()}
    shed = [r for r in requests if r.id not in served]
    assert result.cluster.rejected == len(shed)
    for r in shed:
        # Only the budgeted tenant's sheddable ("batch") requests may be shed.
        assert r.tenant_id == "greedy" and r.slo_class == "batch"
    # Nothing is shed without budgets.
    free = simulate(attrs.evolve(config, tenant_budgets=None), _tenant_requests(60, seed))
    assert free.cluster.rejected == 0
    # The budgeted tenant's very first request finds nothing of its own in flight.
    assert requests[0].id in served
