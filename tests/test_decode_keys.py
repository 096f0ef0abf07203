"""Decode blocks without prefix-cache keys (``KVCache.decode_keys``).

A run leaves the blocks that hold output tokens unkeyed when no prompt can look their keys up
(``decode_keys_matter``). These tests check the check itself, and that a run where a prompt
does extend an earlier request's output keeps the keys and matches the reference engine, which
always keys every full block. test_properties.py compares random runs of both kinds with the
reference.
"""

from __future__ import annotations

from unittest import mock

import numpy as np

from blis_core.config import KVConfig, SimulationConfig
from blis_core.instance import BatchConfig
from blis_core.kvcache import decode_keys_matter
from blis_core.latency import BlackboxLatency
from blis_core.metrics import go_json
from blis_core.request import Request
from blis_core.simulation import simulate
from test_properties import ALPHA, BETA, fresh

RNG = np.random.default_rng(7)
PROMPT = RNG.integers(0, 128000, 40).astype(np.int32)      # 2 full blocks of 16, 8 tokens over
OUTPUT = RNG.integers(0, 128000, 30).astype(np.int32)
OTHER = RNG.integers(0, 128000, 20).astype(np.int32)


def _request(name, prompt, output=OUTPUT, arrival=0, prefix=None):
    return Request(name, arrival, prompt, output, max_output_len=len(output),
                   shared_prefix=prefix)


def test_a_prompt_extending_another_requests_output_makes_them_matter():
    follow_up = np.concatenate([PROMPT, OUTPUT[:8]])          # exactly the first decode block
    assert decode_keys_matter([_request("a", PROMPT), _request("b", follow_up)], 16)
    # Either order in the list: the check goes by prompt length.
    assert decode_keys_matter([_request("b", follow_up), _request("a", PROMPT)], 16)
    longer = np.concatenate([PROMPT, OUTPUT, OTHER])
    assert decode_keys_matter([_request("a", PROMPT), _request("b", longer)], 16)


def test_a_shared_prefix_is_read_without_being_joined():
    # The same prompts as above, held as shared prefix + rest (as the distribution workload does).
    first = _request("a", PROMPT[30:], prefix=PROMPT[:30])
    second = _request("b", np.concatenate([PROMPT[30:], OUTPUT[:8], OTHER]), prefix=PROMPT[:30])
    assert decode_keys_matter([first, second], 16)
    assert first.prompt_parts()[0] is not None and second.prompt_parts()[0] is not None


def test_prompts_that_stop_short_of_a_full_decode_block_do_not():
    one_short = np.concatenate([PROMPT, OUTPUT[:7], OTHER[:1]])
    assert not decode_keys_matter([_request("a", PROMPT), _request("b", one_short)], 16)
    # The same prompt extended by a token the output does not have.
    changed = np.concatenate([PROMPT, OUTPUT[:7], OUTPUT[7:8] + 1, OTHER])
    assert not decode_keys_matter([_request("a", PROMPT), _request("b", changed)], 16)
    # An output too short to fill the first decode block never gives it a key.
    short = OUTPUT[:5]
    follow_up = np.concatenate([PROMPT, short, OTHER])
    assert not decode_keys_matter([_request("a", PROMPT, short), _request("b", follow_up)], 16)
    # Shared prompts alone (no output in any prompt).
    assert not decode_keys_matter([_request("a", PROMPT), _request("b", PROMPT),
                                   _request("c", np.concatenate([PROMPT, OTHER]))], 16)


def test_block_size_one_and_prompt_on_a_block_boundary():
    follow_up = np.concatenate([PROMPT[:32], OUTPUT[:1]])
    assert decode_keys_matter([_request("a", PROMPT[:32]), _request("b", follow_up)], 16) is False
    assert decode_keys_matter([_request("a", PROMPT[:32]),
                               _request("b", np.concatenate([PROMPT[:32], OUTPUT[:16]]))], 16)
    assert decode_keys_matter([_request("a", PROMPT[:3]), _request("b", follow_up[:4])], 1) \
        is False
    assert decode_keys_matter([_request("a", PROMPT[:3]),
                               _request("b", np.concatenate([PROMPT[:3], OUTPUT[:1]]))], 1)


def _follow_up_run():
    """A second request whose prompt is the first one's prompt and output, arriving after the
    first completed, on a cache large enough to keep every block."""
    config = SimulationConfig(latency=BlackboxLatency(ALPHA, BETA),
                              batch=BatchConfig(max_running=4, max_scheduled_tokens=256),
                              kv=KVConfig(total_blocks=64, block_size=16), num_instances=1,
                              horizon=10**9)
    requests = [_request("first", PROMPT),
                _request("second", np.concatenate([PROMPT, OUTPUT, OTHER]), arrival=10**7)]
    return config, requests


def _outputs(result):
    kv = result.instances[0].kv
    return go_json(result.summary.output(with_requests=True)), kv.cache_hits, kv.cache_misses


def test_a_run_whose_prompts_reach_decode_blocks_keeps_their_keys():
    config, requests = _follow_up_run()
    fast = simulate(config, fresh(requests))
    assert fast.instances[0].kv.decode_keys
    reference = simulate(config, fresh(requests), reference=True)
    assert _outputs(fast) == _outputs(reference)
    # The second prompt hits the first request's decode blocks: 4 full blocks of its 70 tokens.
    assert fast.instances[0].kv.cache_hits == 4
    # Dropping the keys here would change the run: the check is what keeps it exact.
    with mock.patch("blis_core.cluster.decode_keys_matter", return_value=False):
        unkeyed = simulate(config, fresh(requests))
    assert not unkeyed.instances[0].kv.decode_keys
    assert _outputs(unkeyed) != _outputs(reference)


def test_a_run_without_such_prompts_drops_them_and_matches_the_reference():
    config, requests = _follow_up_run()
    requests[1] = _request("second", np.concatenate([PROMPT, OTHER]), arrival=10**7)
    fast = simulate(config, fresh(requests))
    assert not fast.instances[0].kv.decode_keys
    reference = simulate(config, fresh(requests), reference=True)
    assert reference.instances[0].kv.decode_keys
    assert _outputs(fast) == _outputs(reference)
    assert fast.instances[0].kv.cache_hits == 2     # the prompt's two full blocks
