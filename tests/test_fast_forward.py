"""Decode-only steps run ahead of the event heap (``Instance._cruise_ahead``) change nothing.

Each check runs the same workload twice, with the cluster's ``fast_forward`` on and off, and
compares every output; the off run queues every step through the heap.
"""

from __future__ import annotations

from contextlib import contextmanager

from hypothesis import given

from blis_core.cluster import Cluster
from blis_core.metrics import go_json
from blis_core.simulation import simulate
from test_autoscaling import autoscaler, pools, run
from test_lifecycle import BUSY, lifecycle
from test_properties import SETTINGS, fresh, scenarios


@contextmanager
def _queued():
    """Every cluster run inside queues every step."""
    plain_run = Cluster.run

    def queued_run(self, *args, **kwargs):
        self.fast_forward = False
        return plain_run(self, *args, **kwargs)

    Cluster.run = queued_run
    try:
        yield
    finally:
        Cluster.run = plain_run


def _outputs(result):
    return (go_json(result.summary.output(with_requests=True)),
            [(inst.id, inst.step_count, inst.clock, inst.kv.free_count, inst.kv.cache_hit_rate(),
              # the CPU tier's stores and evictions: run-ahead steps mirror too
              getattr(inst.kv, "mirror_count", None), getattr(inst.kv, "cpu_evictions", None))
             for inst in result.instances])


@SETTINGS
@given(scenarios())
def test_running_ahead_changes_nothing(scenario):
    config, requests = scenario
    ahead = simulate(config, fresh(requests))
    with _queued():
        queued = simulate(config, fresh(requests))
    assert _outputs(ahead) == _outputs(queued)


def test_warm_up_with_sampling_is_unchanged(tmp_path):
    # The autoscaler's warm-up model counts its calls and swaps itself out: with a time series
    # (whose sampling marks let added instances run ahead) every step must still call it.
    bundle = ("routing: {policy: least-loaded}\n" + pools(4, 1) + autoscaler("oscillator")
              + lifecycle(warm_up_steps=50, warm_up_factor=4))
    args = BUSY + f" --rate 30 --num-requests 300 --seed 3 --timeseries {tmp_path}/ts.csv"
    ahead = run(tmp_path, bundle, args)
    with _queued():
        queued = run(tmp_path, bundle, args)
    assert ahead.metrics.ttft_us.mean == queued.metrics.ttft_us.mean
    assert ([(i.id, i.step_count, i.clock) for i in ahead.simulation.instances]
            == [(i.id, i.step_count, i.clock) for i in queued.simulation.instances])
