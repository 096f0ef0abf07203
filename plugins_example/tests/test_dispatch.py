"""The shortest-prompt dispatch order, run through blis as any user would select it."""

import blis_core

RUN = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
       "--tp 1 --alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
       "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
       "--total-kv-blocks 7463 --num-instances 1 --rate 100 --num-requests 60 "
       "--flow-control --saturation-detector concurrency --max-concurrency 2 "
       "--dispatch-order shortest-prompt")


def test_the_shortest_waiting_prompt_leaves_the_gateway_first():
    result = blis_core.evaluate(blis_core.RunConfig.from_args(RUN))
    requests = result.simulation.requests
    assert len(requests) == 60 and result.metrics.completed == 60
    held = 0
    for r in requests:
        # Requests that were already waiting when r left were all at least as long as r.
        waiting = [q for q in requests if q.gateway_enqueue_time < r.gateway_dispatch_time
                   < q.gateway_dispatch_time]
        assert all(q.num_input >= r.num_input for q in waiting), r.id
        held += bool(waiting)
    assert held > 10          # the queue did build up, so the order was exercised
