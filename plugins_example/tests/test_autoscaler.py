"""The queue-target autoscaler, selected in a bundle as any user would select it."""

import blis_core

RUN = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
       "--alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
       "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
       "--max-model-len 4096 --total-kv-blocks 2000 --num-instances 1 --num-requests 300 "
       "--prompt-tokens 800 --output-tokens 150")
BUNDLE = """routing: {policy: least-loaded}
node_pools:
  - {name: h100, gpu_type: H100, gpus_per_node: 4, gpu_memory_gib: 80, initial_nodes: 1,
     max_nodes: 1, cost_per_hour: 10}
autoscaler:
  interval_us: 500000
  policy: queue-target
  params: {target: 4, max_replicas: 3}
"""


def run(tmp_path, rate):
    bundle = tmp_path / "policy.yaml"
    bundle.write_text(BUNDLE)
    return blis_core.evaluate(blis_core.RunConfig.from_args(f"{RUN} --rate {rate}"), str(bundle))


def test_heavy_load_scales_out_up_to_the_cap(tmp_path):
    result = run(tmp_path, 60)
    e = result.metrics.elasticity
    assert e.max_replicas == 3
    assert e.scale_ups >= 2
    assert result.metrics.completed == 300


def test_light_load_keeps_one_replica(tmp_path):
    e = run(tmp_path, 1).metrics.elasticity
    assert (e.scale_ups, e.max_replicas) == (0, 1)
