"""The engine's shortcuts, checked on random small clusters and workloads.

The invariants upstream BLIS states (conservation, causality, monotonic clock, KV block
conservation, determinism) are the reusable suite of ``blis_core.testing``, run by
tests/test_invariants.py; this file checks that implicit decoding and lazy CPU-tier mirroring
give byte-identical output to the reference engine. Workloads are built directly; tiny KV
caches force preemption and drops, short horizons cut runs short.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from blis_core.catalog import Catalog
from blis_core.config import KVConfig, SimulationConfig
from blis_core.instance import BatchConfig
from blis_core.latency import BlackboxLatency, RooflineLatency, TrainedPhysicsLatency
from blis_core.metrics import go_json
from blis_core.request import Request
from blis_core.simulation import simulate

ALPHA = [232.46191091038054, 1.752360364195244, 3357.4400353290152]
BETA = [5752.705191348184, 17.25086436834028, 5.999143920128404]
_CATALOG = Catalog.shipped()
_LLAMA2 = _CATALOG.model_config("meta-llama/llama-2-7b-hf")
# Models whose step time reads every request's position: run-ahead computes theirs in blocks
# of steps (decode_step_times), which must equal the step-by-step times.
LATENCY_MODELS = [
    BlackboxLatency(ALPHA, BETA),
    RooflineLatency(_LLAMA2, _CATALOG.gpu("H100"), 1, [100.0, 2.0, 300.0]),
    TrainedPhysicsLatency(_LLAMA2, _CATALOG.gpu("H100"), 1, [100.0, 2.0, 300.0],
                          [1.1, 0.9, 1.3, 0.7, 2.0, 5.0, 40.0, 0.5, 1.2, 0.8]),
]


@st.composite
def scenarios(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 128000, draw(st.integers(0, 40))).astype(np.int32)
    gaps = rng.integers(1, draw(st.integers(2, 200_000)), n)
    arrivals = np.cumsum(gaps)
    requests = []
    for i in range(n):
        prompt = rng.integers(0, 128000, int(rng.integers(1, 120))).astype(np.int32)
        if draw(st.booleans()):
            prompt = np.concatenate([shared, prompt])
        if requests and rng.random() < 0.2:
            # A follow-up: an earlier request's prompt and some of its output, then new tokens
            # (at most 160 in all, as above). Its prompt may reach the earlier one's decode
            # blocks, whose keys the run must then keep (KVCache.decode_keys).
            earlier = requests[int(rng.integers(0, len(requests)))]
            history = np.concatenate([earlier.input_tokens, earlier.output_tokens])
            prompt = np.concatenate([history[:int(rng.integers(1, len(history) + 1))],
                                     prompt[:int(rng.integers(1, 20))]])[:160]
        output = rng.integers(0, 128000, int(rng.integers(0, 60))).astype(np.int32)
        requests.append(Request(f"request_{i}", int(arrivals[i]), prompt, output,
                                max_output_len=len(output)))
    cpu_blocks = draw(st.sampled_from([0, 0, 4, 64]))
    latency = draw(st.sampled_from(LATENCY_MODELS[:1] * 2 + LATENCY_MODELS))
    block_size = draw(st.sampled_from([1, 4, 16]))
    total_blocks = draw(st.integers(1, 40))
    if latency is not LATENCY_MODELS[0]:
        # A request the cache cannot hold may be preempted over and over without a token
        # computed; such a step takes one tick in these models (blackbox: beta0), so the run
        # takes ~50M steps to reach its horizon. Here the cache holds the longest request
        # (40 + 120 + 60 tokens).
        total_blocks = max(total_blocks, 220 // block_size + 1)
    config = SimulationConfig(
        latency=latency,
        batch=BatchConfig(max_running=draw(st.integers(1, 8)),
                          max_scheduled_tokens=draw(st.integers(1, 256)),
                          long_prefill_threshold=draw(st.sampled_from([0, 0, 16, 50])),
                          max_model_len=draw(st.sampled_from([0, 0, 64, 200]))),
        kv=KVConfig(total_blocks=total_blocks, block_size=block_size,
                    cpu_blocks=cpu_blocks, transfer_bandwidth=2.0, transfer_base_latency=3),
        num_instances=draw(st.integers(1, 4)),
        # Always finite: as upstream, a request longer than the whole cache cycles through
        # preemption forever, so only a horizon ends such a run.
        horizon=int(arrivals[-1]) + draw(st.sampled_from([-int(arrivals[-1] // 2), 50_000_000])),
    )
    return config, requests


def fresh(requests):
    """Independent copies of the requests (the engine mutates them)."""
    return [Request(r.id, r.arrival_time, r.input_tokens, r.output_tokens, r.max_output_len)
            for r in requests]


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(scenarios())
def test_engine_shortcuts_change_nothing(scenario):
    # Implicit decoding and lazy CPU-tier mirroring must reproduce the request-by-request,
    # block-by-block reference exactly: every summary number, every record, the tier's counts.
    config, requests = scenario
    fast = simulate(config, fresh(requests))
    slow = simulate(config, fresh(requests), reference=True)
    assert go_json(fast.summary.output(with_requests=True)) == \
        go_json(slow.summary.output(with_requests=True))
    for a, b in zip(fast.instances, slow.instances):
        assert a.kv.thrashing_rate() == b.kv.thrashing_rate()
        assert getattr(a.kv, "mirror_count", 0) == getattr(b.kv, "mirror_count", 0)
        assert a.kv.cache_hit_rate() == b.kv.cache_hit_rate()
        assert a.kv.free_count == b.kv.free_count
