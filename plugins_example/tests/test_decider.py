"""The long-prompt decider, run through blis as any user would select it."""

import blis_core

RUN = ("--model qwen/qwen2.5-7b-instruct --latency-model blackbox --hardware H100 --tp 4 "
       "--alpha-coeffs 6748.565706303843,1.60068623289796,1952.6809484593186 "
       "--beta-coeffs 2206.931356893263,16.799213648645086,218.0953180138298 "
       "--total-kv-blocks 20000 --num-instances 4 --prefill-instances 2 --decode-instances 2 "
       "--num-requests 80 --rate 20 --pd-decider long-prompt --pd-prefix-threshold 600 "
       "--trace-level decisions")


def test_long_prompts_and_only_they_are_split():
    result = blis_core.evaluate(blis_core.RunConfig.from_args(RUN))
    lengths = {r.id: r.num_input for r in result.simulation.summary.requests}
    verdicts = {d["request_id"]: d["disaggregate"] for d in result.decisions
                if d["kind"] == "disaggregation"}
    assert len(verdicts) == 80
    assert {rid for rid, split in verdicts.items() if split} == \
        {rid for rid, n in lengths.items() if n >= 600}
    assert 0 < sum(verdicts.values()) < 80
    assert result.metrics.completed == 80
