"""P/D disaggregation: conservation and causality of split requests, the trace, bad input.

Parity with upstream is checked by the corpus (families ``j_``); these tests check the
invariants on runs the corpus does not cover.
"""

import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blis_core
import blis_core.catalog
from blis_core.latency import RooflineLatency, TrainedPhysicsLatency

MODEL = ("--model qwen/qwen2.5-7b-instruct --latency-model blackbox --hardware H100 --tp 4 "
         "--alpha-coeffs 6748.565706303843,1.60068623289796,1952.6809484593186 "
         "--beta-coeffs 2206.931356893263,16.799213648645086,218.0953180138298")


def run(args: str):
    return blis_core.evaluate(blis_core.RunConfig.from_args(f"{MODEL} {args}"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefill=st.integers(1, 2), decode=st.integers(1, 2), spare=st.integers(0, 1),
       decider=st.sampled_from(["always", "prefix-threshold"]),
       blocks=st.sampled_from([150, 400, 20000]), rate=st.sampled_from([10.0, 80.0]),
       contention=st.booleans(), horizon=st.sampled_from([None, 1_500_000]),
       seed=st.integers(0, 2**31 - 1))
def test_split_requests_are_conserved_and_causal(prefill, decode, spare, decider, blocks, rate,
                                                 contention, horizon, seed):
    args = (f"--num-instances {prefill + decode + spare} --prefill-instances {prefill} "
            f"--decode-instances {decode} --pd-decider {decider} --pd-prefix-threshold 400 "
            f"--total-kv-blocks {blocks} --rate {rate} --num-requests 60 --seed {seed} "
            "--prompt-tokens 700 --prompt-tokens-max 2000 --output-tokens 60 "
            "--trace-level decisions")
    if contention:
        args += " --pd-transfer-contention"
    if horizon:
        args += f" --horizon {horizon}"
    result = run(args)
    pd = result.simulation.cluster.pd
    prefill_pool = {f"instance_{i}" for i in range(prefill)}
    decode_pool = {f"instance_{i}" for i in range(prefill, prefill + decode)}
    dropped = in_transfer = done = 0
    for parent in pd.parents.values():
        sub = parent.prefill
        if sub.assigned_instance:
            assert sub.assigned_instance in prefill_pool
        if parent.transfer_start:
            assert parent.prefill_complete_time <= parent.transfer_start
            assert sub.state == "completed" and sub.ttft_set
        if parent.transfer_complete:
            assert parent.transfer_start < parent.transfer_complete
        if parent.decode_instance:
            assert parent.decode_instance in decode_pool
            assert parent.decode_enqueue_time >= parent.transfer_complete
            assert parent.decode.arrival_time == parent.request.arrival_time
        if parent.transfer_complete and not parent.decode_instance:
            dropped += 1
        elif parent.transfer_start and not parent.transfer_complete:
            in_transfer += 1
        if parent.completion_time and parent.decode_instance:
            done += 1
            assert parent.completion_time >= parent.decode_enqueue_time
    assert dropped == pd.dropped_at_decode_kv
    # Each split request has exactly one of each sub-request; the halves are conserved.
    assert pd.prefill_completed == (pd.decode_completed + pd.decode_timed_out
                                    + pd.dropped_at_decode_kv + len(pd.pending_decode)
                                    + pd.in_transfer())
    assert done == pd.decode_completed + pd.decode_timed_out
    m = result.metrics
    assert m.injected == (m.completed + m.still_queued + m.still_running + m.dropped_unservable
                          + m.timed_out)
    by_id = {r.id: r for r in result.simulation.summary.requests}
    for parent in pd.parents.values():
        assert parent.prefill.id not in by_id and parent.decode is None or \
            parent.decode.id not in by_id
        view = by_id.get(parent.request.id)
        if view is not None:
            # Upstream stamps a finished half with the start of the step that finishes it, so
            # a parent's E2E ends at a step start and can fall below its TTFT (which counts to
            # the end of the steps); only the order of the stamps themselves holds.
            assert view.first_token_time > 0
            assert view.e2e >= parent.decode_enqueue_time - parent.request.arrival_time
            assert view.assigned_instance == parent.decode_instance
    kinds = [d["kind"] for d in result.decisions]
    assert kinds.count("disaggregation") == kinds.count("admission")
    assert kinds.count("prefill_routing") == sum(1 for p in pd.parents.values()
                                                 if p.prefill_instance)
    assert kinds.count("kv_transfer") == kinds.count("decode_routing") == sum(
        1 for p in pd.parents.values() if p.decode_instance)


def test_never_splits_nothing_and_prints_no_section():
    plain = run("--num-instances 4 --rate 20 --num-requests 50 --total-kv-blocks 20000")
    pools = run("--num-instances 4 --rate 20 --num-requests 50 --total-kv-blocks 20000 "
                "--prefill-instances 2 --decode-instances 2 --pd-decider never")
    assert pools.simulation.cluster.pd.parents == {}
    assert pools.to_dict() == plain.to_dict()


def _blis(*args):
    return subprocess.run([sys.executable, "-m", "blis_core.cli", "run", *MODEL.split(),
                           "--num-requests", "10", "--total-kv-blocks", "20000", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--num-instances", "4", "--prefill-instances", "2"],
     "both --prefill-instances and --decode-instances must be set"),
    (["--num-instances", "4", "--prefill-instances", "3", "--decode-instances", "2"],
     "prefill-instances (3) + decode-instances (2) = 5 exceeds num-instances (4)"),
    (["--num-instances", "4", "--prefill-instances", "-1", "--decode-instances", "2"],
     "--prefill-instances must be >= 0, got -1"),
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--pd-decider", "bogus"], "--pd-decider: unknown PD decider 'bogus'"),
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--pd-decider", "prefix-threshold", "--pd-prefix-threshold", "-1"],
     "--pd-prefix-threshold must be >= 0, got -1"),
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--pd-transfer-bandwidth", "inf"], "--pd-transfer-bandwidth must be a finite positive"),
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--pd-transfer-base-latency", "-1"], "--pd-transfer-base-latency must be a finite"),
    (["--num-instances", "4", "--pd-transfer-contention"],
     "--pd-transfer-contention requires PD disaggregation"),
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--prefill-tp", "-2"], "--prefill-tp must be >= 0, got -2"),
    # A blackbox run loads no GPU specification: an analytical pool gets an empty one (upstream).
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--decode-latency-model", "roofline"],
     "decode pool: latency model: invalid roofline config: HardwareCalib.TFlopsPeak must be a valid "
     "positive number, got 0"),
    # ... and the run's three betas, too few for trained-physics.
    (["--num-instances", "4", "--prefill-instances", "2", "--decode-instances", "2",
      "--prefill-latency-model", "trained-physics"],
     "prefill pool: trained-physics model: BetaCoeffs requires at least 7 elements, got 3"),
])
def test_bad_pd_input_is_one_line(args, message):
    done = _blis(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_decider_without_pools_warns():
    done = _blis("--num-instances", "2", "--pd-decider", "always")
    assert done.returncode == 0
    assert "--pd-decider=\"always\" has no effect because --prefill-instances=0" in done.stderr
    assert "PD Metrics" not in done.stdout


def test_per_pool_overrides_give_a_pool_its_own_engine():
    """On roofline, a pool with its own TP gets its own step times and KV cache; the transfer
    is sized by the prefill pool's TP (half the TP, twice the bytes per GPU)."""
    base = ("--num-instances 4 --prefill-instances 2 --decode-instances 2 --pd-decider always "
            "--rate 20 --num-requests 40")
    roofline = "--model qwen/qwen2.5-7b-instruct --hardware H100 --tp 4"

    def go(extra):
        return blis_core.evaluate(blis_core.RunConfig.from_args(f"{roofline} {base} {extra}"))

    plain, split = go(""), go("--prefill-tp 2 --decode-max-model-len 3000")
    p_plain, p_split = plain.simulation.instances[0], split.simulation.instances[0]
    d_split = split.simulation.instances[2]
    assert p_split.latency is not p_plain.latency
    assert p_split.kv.total_blocks != p_plain.kv.total_blocks
    assert d_split.batch_config.max_model_len == 3000
    assert split.simulation.instances[3].latency is d_split.latency
    ratio = (split.simulation.config.pd.kv_bytes_per_token
             / plain.simulation.config.pd.kv_bytes_per_token)
    assert ratio == 2.0


def test_a_pool_with_its_own_backend_or_tp_keeps_the_run_coefficients():
    """Upstream overrides only a pool's TP, GPU, backend and lengths: the coefficients stay the
    run's, whatever backend they were resolved for."""
    base = "--num-instances 2 --prefill-instances 1 --decode-instances 1 --pd-decider always --num-requests 5"
    trained = blis_core.evaluate(blis_core.RunConfig.from_args(
        f"--model qwen/qwen3-14b --latency-model trained-physics --hardware H100 --tp 1 {base} "
        "--prefill-latency-model roofline"))
    prefill, decode = trained.simulation.instances
    assert isinstance(prefill.latency, RooflineLatency)
    assert isinstance(decode.latency, TrainedPhysicsLatency)
    alpha = blis_core.catalog.Catalog.shipped().trained_physics.alpha
    assert prefill.latency.queueing_time(100) == math.trunc((0.0 + alpha[0]) + alpha[1] * 100.0)
    assert prefill.latency.output_token_processing_time() == math.trunc(alpha[2])

    blackbox = run(f"{base} --prefill-tp 2")  # no coefficient lookup for the pool's TP
    assert blackbox.simulation.instances[0].latency.step_time(0, 0) == 2206
