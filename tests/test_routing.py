"""The ``weighted`` routing policy, its scorers and the router's view of the cluster.

Properties: normalized weights sum to 1; every scorer returns one finite score in [0, 1] per
snapshot; weighted routing always picks one of the snapshots. Then upstream's documented
behaviours (default profile, tie-breaking with the router stream, the router-side prefix index,
no-hit-lru's LRU, scorer-string errors) and the cluster side: the frozen prefix-cache view
(``cache_signal_delay``) and the periodic snapshot refresh (``snapshot_refresh_interval``).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blis_core.cluster import PrefixCacheView
from blis_core.config import KVConfig, PolicyConfig, SimulationConfig
from blis_core.gorand import PartitionedRNG
from blis_core.instance import BatchConfig
from blis_core.latency import BlackboxLatency
from blis_core.metrics import go_json
from blis_core.protocols import RouterState, Snapshot
from blis_core.request import Request
from blis_core.simulation import build_cluster, simulate
from blis_policies.prefix_index import PrefixCacheIndex
from blis_policies.scorers import DEFAULT_SCORERS, SCORERS, make_scorer
from blis_policies.weighted import WeightedScoring, normalize_weights, parse_scorers

ALPHA = [232.46191091038054, 1.752360364195244, 3357.4400353290152]
BETA = [5752.705191348184, 17.25086436834028, 5.999143920128404]
NAMES = sorted(SCORERS)


def router_rng(seed: int = 42):
    return PartitionedRNG(seed).for_subsystem("router")


def request(i: int, tokens) -> Request:
    tokens = np.asarray(tokens, dtype=np.int32)
    return Request(f"request_{i}", 0, tokens, np.zeros(4, dtype=np.int32))


@st.composite
def snapshot_lists(draw):
    n = draw(st.integers(1, 8))
    snaps = []
    for i in range(n):
        total = draw(st.integers(0, 1000))
        used = draw(st.integers(0, total))
        snaps.append(Snapshot(
            f"instance_{i}",
            queue_depth=draw(st.integers(0, 300)),
            batch_size=draw(st.integers(0, 300)),
            kv_utilization=used / total if total else 0.0,
            free_kv_blocks=total - used,
            cache_hit_rate=draw(st.floats(0, 1)),
            in_flight_requests=draw(st.integers(0, 600)),
            preemption_count=draw(st.integers(0, 50)),
            total_kv_capacity_tokens=total * 16,
            kv_tokens_in_use=used * 16,
        ))
    return snaps


@st.composite
def router_states(draw):
    snaps = draw(snapshot_lists())
    if draw(st.booleans()):
        counts = {s.id: draw(st.integers(0, 20)) for s in snaps}
        query = lambda instance_id, req: counts.get(instance_id, 0)  # noqa: E731
    else:
        query = None
    return RouterState(snaps, draw(st.integers(0, 10**9)), query)


token_lists = st.lists(st.integers(0, 50), min_size=0, max_size=80)
weights = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


# -- properties ---------------------------------------------------------------------------------
@given(st.lists(weights, min_size=1, max_size=10))
def test_normalized_weights_sum_to_one(ws):
    normalized = normalize_weights(ws)
    assert len(normalized) == len(ws)
    assert all(w > 0 for w in normalized)
    assert math.isclose(sum(normalized), 1.0, rel_tol=1e-12)


@given(st.lists(st.tuples(st.sampled_from(NAMES), weights), min_size=1, max_size=10,
                unique_by=lambda pair: pair[0]))
def test_parsed_scorer_weights_normalize_to_one(pairs):
    spec = ",".join(f" {name} : {w!r} " for name, w in pairs)
    policy = WeightedScoring(spec, rng=router_rng())
    assert policy.scorer_names == [name for name, _w in pairs]
    assert math.isclose(sum(policy.weights), 1.0, rel_tol=1e-12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.lists(st.tuples(router_states(), token_lists), min_size=1,
                                        max_size=5), st.data())
def test_every_scorer_returns_one_score_in_unit_interval(name, calls, data):
    scorer = make_scorer(name, block_size=4)
    for i, (state, tokens) in enumerate(calls):
        req = request(i, tokens)
        values = scorer.score(req, state)
        assert len(values) == len(state.snapshots)
        for v in values:
            assert isinstance(v, float)
            assert not math.isnan(v)
            assert 0.0 <= v <= 1.0, (name, v)
        if scorer.observe is not None:
            target = data.draw(st.sampled_from([s.id for s in state.snapshots]))
            scorer.observe(req, target)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(NAMES), weights), min_size=0, max_size=10,
                unique_by=lambda pair: pair[0]),
       st.integers(0, 2**31), st.lists(st.tuples(router_states(), token_lists), min_size=1,
                                       max_size=6))
def test_weighted_routing_returns_a_snapshot_id(pairs, seed, calls):
    policy = WeightedScoring(pairs, rng=router_rng(seed), block_size=4)
    for i, (state, tokens) in enumerate(calls):
        decision = policy.route(request(i, tokens), state)
        assert decision.target in {s.id for s in state.snapshots}
        assert decision.reason.startswith("weighted-scoring (score=")


# -- upstream's documented behaviour ------------------------------------------------------------
def test_default_profile_is_upstreams():
    assert parse_scorers("") == [("precise-prefix-cache", 2.0), ("queue-depth", 1.0),
                                 ("kv-utilization", 1.0)]
    assert list(DEFAULT_SCORERS) == parse_scorers("")
    policy = WeightedScoring()
    assert policy.weights == [0.5, 0.25, 0.25]
    assert policy.uses_cache_query


def test_weights_three_two_two():
    policy = WeightedScoring("prefix-affinity:3,queue-depth:2,kv-utilization:2")
    assert policy.weights == [3 / 7, 2 / 7, 2 / 7]
    assert not policy.uses_cache_query


@pytest.mark.parametrize("spec, fragment", [
    ("foo:1", "unknown scorer 'foo'"),
    ("queue-depth", "expected name:weight"),
    ("queue-depth:0", "finite positive"),
    ("queue-depth:-2", "finite positive"),
    ("queue-depth:nan", "finite positive"),
    ("queue-depth:inf", "finite positive"),
    ("queue-depth:x", "invalid weight"),
    ("queue-depth:1,queue-depth:1", "duplicate scorer"),
])
def test_bad_scorer_strings(spec, fragment):
    with pytest.raises(ValueError) as info:
        WeightedScoring(spec)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "vllm-dp" in message and "prefix-affinity" in message  # lists the known scorers


def test_full_ties_draw_the_router_stream():
    # Identical idle instances: every decision is a full tie drawn with Intn(4), as upstream
    # (cluster-policies.md §3.3: least-loaded and weighted draw the same way).
    snaps = [Snapshot(f"instance_{i}") for i in range(4)]
    state = RouterState(snaps, 0)
    policy = WeightedScoring("queue-depth:1,kv-utilization:1", rng=router_rng())
    reference = router_rng()
    for i in range(12):
        expected = f"instance_{reference.intn(4)}"
        assert policy.route(request(i, [1, 2, 3]), state).target == expected
    # The sequence upstream's binary chose on 4 idle instances with seed 42 (§3.3).
    policy = WeightedScoring("load-balance:1", rng=router_rng())
    ids = [int(policy.route(request(i, [1]), state).target[-1]) for i in range(12)]
    assert ids == [2, 0, 3, 2, 3, 3, 0, 3, 3, 2, 1, 0]


def test_single_best_does_not_draw():
    snaps = [Snapshot("instance_0", queue_depth=3), Snapshot("instance_1", queue_depth=1)]
    rng = router_rng()
    policy = WeightedScoring("queue-depth:1", rng=rng)
    assert policy.route(request(0, [1]), RouterState(snaps, 0)).target == "instance_1"
    assert rng.intn(4) == router_rng().intn(4)  # the stream was not consumed


def test_prefix_affinity_follows_its_own_routing():
    bs = 4
    policy = WeightedScoring("prefix-affinity:5,queue-depth:1", rng=router_rng(), block_size=bs)
    snaps = [Snapshot(f"instance_{i}") for i in range(3)]
    state = RouterState(snaps, 0)
    shared = list(range(100, 112))                     # three full blocks
    first = policy.route(request(0, shared + [1, 2]), state).target
    for i in range(1, 6):
        assert policy.route(request(i, shared + [i, i + 1, i + 2]), state).target == first
    scorer = policy.scorers[0]
    scores = scorer.score(request(9, shared[:8]), state)
    assert scores == [1.0 if s.id == first else 0.0 for s in snaps]
    assert scorer.score(request(10, [1, 2, 3]), state) == [0.0, 0.0, 0.0]  # < one block


def test_prefix_index_lru_capacity_and_order():
    index = PrefixCacheIndex(capacity=3)
    index.record_blocks(["a", "b", "c"], "i")
    assert index.match_length(["a", "b", "c"], "i") == 3
    index.record_blocks(["d"], "i")                    # evicts "a", the least recent
    assert index.block_count("i") == 3
    assert index.match_length(["a", "b"], "i") == 0
    assert index.match_length(["b", "c", "d", "x"], "i") == 3
    index.match_length(["b"], "i")                     # reading does not refresh recency
    index.record_blocks(["e"], "i")                    # so "b" goes next
    assert index.match_length(["b"], "i") == 0
    assert index.match_length(["x"], "unknown") == 0


def test_no_hit_lru_ranks_never_used_then_oldest():
    scorer = make_scorer("no-hit-lru")
    snaps = [Snapshot(f"instance_{i}") for i in range(3)]
    cold = RouterState(snaps, 0, lambda instance_id, req: 0)
    assert scorer.score(request(0, [1]), cold) == [1.0, 0.5, 0.0]
    scorer.observe(request(0, [1]), "instance_0")
    assert scorer.score(request(1, [1]), cold) == [0.0, 1.0, 0.5]
    scorer.observe(request(1, [1]), "instance_1")
    assert scorer.score(request(2, [1]), cold) == [0.5, 0.0, 1.0]
    warm = RouterState(snaps, 0, lambda instance_id, req: int(instance_id == "instance_2"))
    assert scorer.score(request(3, [1]), warm) == [0.5, 0.5, 0.5]
    scorer.observe(request(3, [1]), "instance_2")      # warm: the LRU does not move
    assert scorer.order == ["instance_1", "instance_0"]
    single = RouterState(snaps[:1], 0, cold.cache_query)
    assert make_scorer("no-hit-lru").score(request(0, [1]), single) == [1.0]


def test_precise_prefix_cache_min_max():
    scorer = make_scorer("precise-prefix-cache")
    snaps = [Snapshot(f"instance_{i}") for i in range(3)]
    counts = {"instance_0": 2, "instance_1": 6, "instance_2": 4}
    state = RouterState(snaps, 0, lambda instance_id, req: counts[instance_id])
    assert scorer.score(request(0, [1]), state) == [0.0, 1.0, 0.5]
    assert scorer.score(request(0, [1]), RouterState(snaps, 0)) == [1.0, 1.0, 1.0]


# -- the cluster side ---------------------------------------------------------------------------
def _workload(seed: int, n: int, shared_len: int):
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 1000, shared_len).astype(np.int32)
    t = 0
    out = []
    for i in range(n):
        t += int(rng.integers(1, 40_000))
        prompt = rng.integers(0, 1000, int(rng.integers(1, 60))).astype(np.int32)
        if rng.random() < 0.7:
            prompt = np.concatenate([shared, prompt])
        output = rng.integers(0, 1000, int(rng.integers(1, 40))).astype(np.int32)
        out.append(Request(f"request_{i}", t, prompt, output, max_output_len=len(output)))
    return out


def _config(scorers: str, **kw) -> SimulationConfig:
    return SimulationConfig(
        latency=BlackboxLatency(ALPHA, BETA),
        batch=BatchConfig(max_running=8, max_scheduled_tokens=256),
        kv=KVConfig(total_blocks=kw.pop("blocks", 60), block_size=4),
        policies=PolicyConfig(routing="weighted", routing_params={"scorers": scorers}),
        num_instances=kw.pop("instances", 3), **kw)


def _run(config, requests):
    fresh = [Request(r.id, r.arrival_time, r.input_tokens, r.output_tokens, r.max_output_len)
             for r in requests]
    result = simulate(config, fresh)
    return go_json(result.summary.output(with_requests=True))


ALL_SCORERS = ",".join(f"{name}:{i + 1}" for i, name in enumerate(NAMES))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(1, 60), st.integers(0, 40))
def test_interval_one_equals_live(seed, n, shared_len):
    # Without closed-loop sessions no instance event happens between two router states built
    # at the same tick, so refreshing whenever the clock moved (1) is the live view (0); at
    # tick 0 the cached zeros equal the idle instances.
    requests = _workload(seed, n, shared_len)
    live = _run(_config(ALL_SCORERS, cache_signal_delay=0), requests)
    assert _run(_config(ALL_SCORERS, cache_signal_delay=1), requests) == live
    assert _run(_config(ALL_SCORERS, cache_signal_delay=0, snapshot_refresh_interval=1),
                requests) == live


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(1, 60), st.integers(0, 40),
       st.sampled_from([1, 5_000, 50_000, 10**9]))
def test_frozen_prefix_maps_equal_a_copy_at_each_refresh(seed, n, shared_len, delay):
    config = _config("precise-prefix-cache:1,no-hit-lru:1", cache_signal_delay=delay)
    cluster = build_cluster(config)
    view = cluster.cache_view
    assert isinstance(view, PrefixCacheView)
    refresh, query = view.refresh, view.query
    copies = {inst.id: set() for inst in cluster.instances}   # the start: empty copies
    checks = []

    def checked_refresh(clock):
        before = view.last_refresh
        refresh(clock)
        if view.last_refresh != before:
            for inst in cluster.instances:
                copies[inst.id] = set(inst.kv.key_to_block)
            checks.append(clock)
        else:
            assert clock - before < delay

    def checked_query(instance_id, request):
        # Between refreshes the live maps move on; routers must still see the last copy.
        assert view.frozen_keys(instance_id) == copies[instance_id]
        return query(instance_id, request)

    view.refresh = checked_refresh
    view.query = checked_query
    cluster.cache_query = checked_query
    cluster.run(_workload(seed, n, shared_len))
    for inst in cluster.instances:
        assert view.frozen_keys(inst.id) == copies[inst.id]
    if delay == 1:
        assert checks  # every arrival is at a tick >= 1
    if delay == 10**9:
        assert all(not view.frozen_keys(inst.id) for inst in cluster.instances)


def test_periodic_snapshots_start_at_zero_and_refresh_lazily():
    config = _config("queue-depth:1", snapshot_refresh_interval=100_000, instances=2)
    cluster = build_cluster(config)
    inst = cluster.instances[0]
    inst.wait.append(object())
    cluster.clock = 50_000
    snap = cluster.router_state(None).snapshots[0]
    assert snap.queue_depth == 0 and snap.total_kv_capacity_tokens == 0  # still the zeros
    cluster.clock = 100_000
    snap = cluster.router_state(None).snapshots[0]
    assert snap.queue_depth == 1 and snap.total_kv_capacity_tokens == 60 * 4
    inst.wait.append(object())
    cluster.clock = 199_999
    assert cluster.router_state(None).snapshots[0].queue_depth == 1    # 99_999 < interval
    cluster.clock = 200_000
    assert cluster.router_state(None).snapshots[0].queue_depth == 2
    inst.in_flight = 7
    assert cluster.router_state(None).snapshots[0].in_flight_requests == 7  # always live


def test_cache_query_only_for_policies_that_ask():
    assert build_cluster(_config("queue-depth:1")).cache_view is None
    cluster = build_cluster(_config("no-hit-lru:1"))
    assert cluster.router_state(None).cache_query is not None
    plain = attrs.evolve(_config(""), policies=PolicyConfig(routing="round-robin"))
    assert build_cluster(plain).router_state(None).cache_query is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(2, 40), st.randoms(use_true_random=False))
def test_arrivals_out_of_order_run_as_in_order(seed, n, rnd):
    # Sorted arrivals enter the event heap one by one, others all at once (Cluster.run); with
    # distinct arrival times both must pop in the same order.
    requests = _workload(seed, n, 20)
    shuffled = list(requests)
    rnd.shuffle(shuffled)
    config = _config(ALL_SCORERS, instances=3)

    def outcome(reqs):
        fresh = [Request(r.id, r.arrival_time, r.input_tokens, r.output_tokens, r.max_output_len)
                 for r in reqs]
        simulate(config, fresh)
        return sorted((r.id, r.assigned_instance, r.first_token_time, r.completion_time,
                       tuple(r.itl)) for r in fresh)

    assert outcome(shuffled) == outcome(requests)
