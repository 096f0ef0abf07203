"""The legacy request generator of upstream's blackbox golden test (engine.md §5.2).

Upstream's ``testGenerateRequests`` (test-only code) produced ``testdata/goldendataset.json``;
``blis run`` does not use it. One generator (the "workload" subsystem, i.e. the master seed)
draws a shared prefix, then per request: a gaussian prompt length, the prompt ids, a gaussian
output length, the output ids. Arrivals are evenly spaced from t = 0; ids are
``request_<idx>``; ``max_output_len`` stays 0 (the engine fills it from ``max-model-len``).
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import numpy as np

from blis_core.gomath import trunc_int64
from blis_core.gorand import PartitionedRNG
from blis_core.request import Request
from blis_workloads.distributions import MAX_TOKEN_ID, BlockRand, round_half_away
from blis_workloads.generate import MAX_HORIZON

__all__ = ["LegacyWorkload", "generate_legacy_requests"]


@attrs.frozen
class LegacyWorkload:
    """The golden dataset's workload parameters (the keys of a ``goldendataset.json`` case)."""

    rate: float                   # requests per second
    num_requests: int
    prefix_tokens: int
    prompt_tokens: int
    prompt_tokens_stdev: int
    prompt_tokens_min: int
    prompt_tokens_max: int
    output_tokens: int
    output_tokens_stdev: int
    output_tokens_min: int
    output_tokens_max: int
    seed: int

    @classmethod
    def from_golden_case(cls, case: Mapping[str, Any]) -> LegacyWorkload:
        return cls(rate=float(case["rate"]), num_requests=int(case["num-requests"]),
                   **{name: int(case[name]) for name in (
                       "prefix_tokens", "prompt_tokens", "prompt_tokens_stdev",
                       "prompt_tokens_min", "prompt_tokens_max", "output_tokens",
                       "output_tokens_stdev", "output_tokens_min", "output_tokens_max", "seed")})


def _length(rng, mean: int, std: int, lo: int, hi: int) -> int:
    """Clamped gaussian; no draw when lo == hi and, unlike v2, no floor at 1."""
    if lo == hi:
        return lo
    value = rng.norm_float64() * float(std) + float(mean)
    return round_half_away(max(float(lo), min(float(hi), value)))


def generate_legacy_requests(w: LegacyWorkload, horizon: int = MAX_HORIZON) -> list[Request]:
    """The golden request sequence, in upstream's exact draw order."""
    rng = BlockRand(PartitionedRNG(w.seed).for_subsystem("workload"))
    prefix = rng.intn_array(MAX_TOKEN_ID, w.prefix_tokens)
    # Spacing in µs from the per-µs rate, truncated: 10 req/s gives 99999, not 100000.
    spacing = trunc_int64(1.0 / (w.rate / 1e6))
    requests = []
    t = 0
    while t < horizon and len(requests) < w.num_requests:
        prompt_len = _length(rng, w.prompt_tokens, w.prompt_tokens_stdev,
                             w.prompt_tokens_min, w.prompt_tokens_max)
        prompt = rng.intn_array(MAX_TOKEN_ID, prompt_len)
        output_len = _length(rng, w.output_tokens, w.output_tokens_stdev,
                             w.output_tokens_min, w.output_tokens_max)
        output = rng.intn_array(MAX_TOKEN_ID, output_len)
        requests.append(Request(f"request_{len(requests)}", t,
                                np.concatenate((prefix, prompt)), output))
        t += spacing
        if t > horizon:
            break
    return requests
