"""Flow control: the gateway queue's order and shedding, the detectors, bad input, and two
properties of every run with flow control on: no request is lost, and none is dispatched while
the detector says the cluster is saturated.

Parity with upstream is checked by the corpus (``x_flow_control_``).
"""

import subprocess
import sys

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import blis_core
from blis_core.flowcontrol import FlowControlConfig, GatewayQueue
from blis_core.metrics import cluster_summary
from blis_core.protocols import RouterState, Snapshot
from blis_core.report import render_text
from blis_core.request import Request
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_core.simulation import build_cluster
from blis_core.testing import simulation_scenarios
from blis_policies.flowcontrol import (ConcurrencyDetector, FIFOOrder, NeverSaturated,
                                       PriorityOrder, UtilizationDetector)

MODEL = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
         "--tp 1 --alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
         "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
         "--total-kv-blocks 7463")


def _req(i: int, slo: str = "") -> Request:
    return Request(f"request_{i}", i, [1, 2, 3], [4], slo_class=slo)


def _drain(queue: GatewayQueue) -> list[str]:
    out = []
    while len(queue):
        out.append(queue.pop().id)
    return out


# -- the queue --------------------------------------------------------------------------------
CLASSES = ["batch", "critical", "", "sheddable", "critical", "standard", "background"]


def test_fifo_dispatches_in_arrival_order_whatever_the_class():
    queue = GatewayQueue(FIFOOrder())
    for i, slo in enumerate(CLASSES):
        assert queue.push(_req(i, slo), seq=i) is False
    assert _drain(queue) == [f"request_{i}" for i in range(len(CLASSES))]


def test_priority_dispatches_the_most_important_class_first_then_fifo():
    queue = GatewayQueue(PriorityOrder())
    for i, slo in enumerate(CLASSES):
        queue.push(_req(i, slo), seq=i)
    # critical 4, standard and "" 3, batch -1, sheddable -2, background -3
    assert _drain(queue) == ["request_1", "request_4", "request_2", "request_5", "request_0",
                             "request_3", "request_6"]


def test_priority_follows_the_slo_priority_overrides():
    queue = GatewayQueue(PriorityOrder(), slo_priorities={"batch": 9})
    for i, slo in enumerate(["critical", "batch", "standard"]):
        queue.push(_req(i, slo), seq=i)
    assert _drain(queue) == ["request_1", "request_0", "request_2"]


def test_a_full_queue_sheds_the_latest_of_the_lowest_priority_for_a_more_important_request():
    queue = GatewayQueue(FIFOOrder(), max_depth=3)
    for i, slo in enumerate(["batch", "standard", "batch"]):
        queue.push(_req(i, slo), seq=i)
    assert queue.push(_req(3, "critical"), seq=3) is False      # displaces request_2
    assert queue.shed == 1 and len(queue) == 3
    assert [r.id for r in queue.requests()] == ["request_0", "request_1", "request_3"]
    assert queue.push(_req(4, "sheddable"), seq=4) is True      # less important: itself shed
    assert queue.push(_req(5, "batch"), seq=5) is True          # equal priority, later: shed
    assert queue.push(_req(6, "standard"), seq=6) is False      # displaces request_0
    assert queue.shed == 4
    assert _drain(queue) == ["request_1", "request_3", "request_6"]


def test_an_unlimited_queue_never_sheds():
    queue = GatewayQueue(PriorityOrder(), max_depth=0)
    for i in range(200):
        assert queue.push(_req(i, "background"), seq=i) is False
    assert queue.shed == 0 and len(queue) == 200


@given(st.lists(st.sampled_from(CLASSES), max_size=40), st.integers(0, 6),
       st.sampled_from([FIFOOrder(), PriorityOrder()]))
def test_the_queue_keeps_what_it_did_not_shed(classes, depth, order):
    queue = GatewayQueue(order, max_depth=depth)
    shed_newcomers = sum(queue.push(_req(i, slo), seq=i) for i, slo in enumerate(classes))
    assert len(queue) + queue.shed == len(classes)
    assert shed_newcomers <= queue.shed
    if depth:
        assert len(queue) <= depth
    kept = queue.requests()
    assert [r.id for r in kept] == _drain(queue)
    key = (lambda r: int(r.id.split("_")[1])) if isinstance(order, FIFOOrder) else \
        (lambda r: (-blis_core.slo.slo_priority(r.slo_class), int(r.id.split("_")[1])))
    assert kept == sorted(kept, key=key)


# -- the detectors ----------------------------------------------------------------------------
def _state(*snapshots) -> RouterState:
    return RouterState(list(snapshots), 0)


def test_detectors_read_the_snapshots_as_upstream():
    a = Snapshot("instance_0", queue_depth=10, kv_utilization=0.2, in_flight_requests=7)
    b = Snapshot("instance_1", queue_depth=0, kv_utilization=0.6, in_flight_requests=1)
    assert NeverSaturated().saturation(_state(a, b)) == 0.0
    assert UtilizationDetector(5.0, 0.8).saturation(_state(a, b)) == (2.0 + 0.75) / 2
    assert ConcurrencyDetector(4).saturation(_state(a, b)) == 8 / 8
    for detector in (UtilizationDetector(), ConcurrencyDetector()):
        assert detector.saturation(_state()) == 1.0      # nowhere to send: saturated


@pytest.mark.parametrize("build, message", [
    (lambda: UtilizationDetector(queue_depth_threshold=0),
     "--queue-depth-threshold must be a finite value > 0, got 0"),
    (lambda: UtilizationDetector(kv_cache_util_threshold=float("inf")),
     "--kv-cache-util-threshold must be a finite value > 0, got +Inf"),
    (lambda: ConcurrencyDetector(-3), "--max-concurrency must be > 0, got -3"),
])
def test_detectors_refuse_bad_parameters(build, message):
    with pytest.raises(ValueError, match=f"^{message}$".replace("+", r"\+")):
        build()


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    ("--saturation-detector bogus",
     "--saturation-detector: unknown saturation detector 'bogus' (known: concurrency, never, "
     "utilization)"),
    ("--dispatch-order bogus", "--dispatch-order: unknown dispatch order 'bogus'"),
    ("--dispatch-order ''", "--dispatch-order: unknown dispatch order ''"),
    ("--max-gateway-queue-depth -1", "--max-gateway-queue-depth must be >= 0, got -1"),
    ("--saturation-detector utilization --queue-depth-threshold -0.5",
     "--queue-depth-threshold must be a finite value > 0, got -0.5"),
    ("--saturation-detector utilization --kv-cache-util-threshold nan",
     "--kv-cache-util-threshold must be a finite value > 0, got NaN"),
    ("--saturation-detector concurrency --max-concurrency 0",
     "--max-concurrency must be > 0, got 0"),
])
def test_bad_flow_control_input_names_the_flag(args, message):
    with pytest.raises(ConfigurationError) as info:
        RunConfig.from_args(f"{MODEL} --num-requests 5 --flow-control {args}")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_flow_control_flags_are_checked_only_with_flow_control():
    # Upstream ignores them (unchecked) when the gateway is off.
    RunConfig.from_args(f"{MODEL} --num-requests 5 --saturation-detector bogus "
                        "--max-gateway-queue-depth -1 --max-concurrency 0")
    # A detector checks only the values it uses.
    RunConfig.from_args(f"{MODEL} --num-requests 5 --flow-control --saturation-detector "
                        "concurrency --queue-depth-threshold 0")


def test_the_cli_exits_2_with_one_line():
    done = subprocess.run([sys.executable, "-m", "blis_core.cli", "run", *MODEL.split(),
                           "--num-requests", "5", "--flow-control", "--max-concurrency", "-1",
                           "--saturation-detector", "concurrency"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == \
        "blis: error: --max-concurrency must be > 0, got -1"


# -- the run description ----------------------------------------------------------------------
def test_the_flags_are_a_run_config_section_that_round_trips():
    config = RunConfig.from_args(
        f"{MODEL} --num-requests 5 --flow-control --saturation-detector utilization "
        "--dispatch-order priority --max-gateway-queue-depth 7 --queue-depth-threshold 2.5 "
        "--kv-cache-util-threshold 0.5 --max-concurrency 9")
    f = config.flow_control
    assert (f.enabled, f.saturation_detector, f.dispatch_order, f.max_gateway_queue_depth,
            f.queue_depth_threshold, f.kv_cache_util_threshold, f.max_concurrency) == (
        True, "utilization", "priority", 7, 2.5, 0.5, 9)
    assert RunConfig.from_yaml(config.to_yaml()) == config
    fc = config.prepare().simulation.flow_control
    assert fc == FlowControlConfig("utilization", "priority", 7,
                                   {"queue_depth_threshold": 2.5, "kv_cache_util_threshold": 0.5})
    assert RunConfig.from_args(f"{MODEL} --num-requests 5").prepare().simulation.flow_control \
        is None


def test_a_never_saturated_gateway_changes_nothing():
    args = f"{MODEL} --num-instances 3 --rate 80 --num-requests 120 --routing-policy least-loaded"
    plain = blis_core.evaluate(args)
    gated = blis_core.evaluate(args + " --flow-control")
    assert gated.to_dict() == plain.to_dict()
    assert len(gated.simulation.cluster.gateway.queue) == 0


def test_a_saturated_gateway_sheds_and_reports_it():
    result = blis_core.evaluate(f"{MODEL} --num-instances 2 --rate 300 --num-requests 200 "
                                "--flow-control --saturation-detector concurrency "
                                "--max-concurrency 4 --max-gateway-queue-depth 10")
    counters = result.anomalies
    assert counters.gateway_queue_shed > 0 and counters.gateway_queue_depth == 0
    assert result.metrics.completed + counters.gateway_queue_shed == 200
    text = render_text(result)
    assert f"Gateway Queue Shed: {counters.gateway_queue_shed}\n" in text
    assert "Gateway Queue Depth" not in text


# -- properties of whole runs -----------------------------------------------------------------
_FLOW = st.fixed_dictionaries({
    "detector": st.sampled_from(["never", "utilization", "concurrency"]),
    "order": st.sampled_from(["fifo", "priority"]),
    "depth": st.sampled_from([0, 0, 1, 3, 8]),
    "queue_depth_threshold": st.sampled_from([0.5, 1.0, 5.0]),
    "kv_cache_util_threshold": st.sampled_from([0.05, 0.3, 0.8]),
    "max_concurrency": st.integers(1, 4),
    # Arrivals pressed closer together than the scenarios draw them, so the gateway fills.
    "squeeze": st.sampled_from([1, 2, 4]),
})


class _Watched:
    """A detector that remembers its last answer, so a dispatch can be checked against it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last = None

    def saturation(self, state) -> float:
        self.last = self.inner.saturation(state)
        if isinstance(self.inner, ConcurrencyDetector):
            live = sum(s.in_flight_requests for s in state.snapshots)
            assert self.last == live / (len(state.snapshots) * self.inner.max_concurrency)
        return self.last


class _CheckedQueue(GatewayQueue):
    """The run's queue, checking at every dispatch that the detector just said "room"."""

    __slots__ = ("watched", "dispatched", "longest")

    def __init__(self, queue: GatewayQueue, watched: _Watched) -> None:
        for name in GatewayQueue.__slots__:
            setattr(self, name, getattr(queue, name))
        self.watched = watched
        self.dispatched = []
        self.longest = 0

    def push(self, req, seq: int) -> bool:
        shed = super().push(req, seq)
        self.longest = max(self.longest, len(self))
        return shed

    def pop(self):
        # try_dispatch asks the detector, then pops: the answer must have been below 1.
        last, self.watched.last = self.watched.last, None
        assert last is not None and last < 1.0, last
        req = super().pop()
        self.dispatched.append(req)
        return req


def _run_checked(config, requests, detector: str) -> GatewayQueue:
    """Run with the gateway's dispatches checked, then account for every request."""
    cluster = build_cluster(config)
    gateway = cluster.gateway
    gateway.detector = watched = _Watched(gateway.detector)
    gateway.queue = _CheckedQueue(gateway.queue, watched)
    dispatched = gateway.queue.dispatched
    cluster.run(requests)
    c = cluster_summary(cluster.instances).counters

    waiting = {r.id for r in gateway.queue.requests()}
    assert len(waiting) == len(gateway.queue)
    assigned = [r for r in requests if r.assigned_instance]
    assert not waiting & {r.id for r in assigned}
    assert all(r.gateway_dispatch_time == 0 and not r.assigned_instance
               for r in gateway.queue.requests())
    for r in dispatched:
        assert r.gateway_enqueue_time <= r.gateway_dispatch_time
        assert r.gateway_enqueue_time in (0, r.arrival_time + config.admission_latency)
    # Every request routed to an instance was dispatched by the gateway first.
    assert {r.id for r in assigned} <= {r.id for r in dispatched}

    # Routed: finished (completed, timed out, dropped) or still on its instance.
    on_instances = c["still_queued"] + c["still_running"]
    finished = c["completed"] + c["timed_out"] + c["dropped_unservable"]
    in_transit = len(assigned) - finished - on_instances
    assert in_transit >= 0
    # Not routed: rejected at admission or routing, shed or waiting at the gateway, or still in
    # the pipeline when the horizon ended the run.
    pipeline = (len(requests) - len(assigned) - cluster.rejected - cluster.routing_rejections
                - gateway.queue.shed - len(gateway.queue))
    assert pipeline >= 0
    if config.horizon == blis_core.config.MAX_TICK:
        assert pipeline == 0 and in_transit == 0 and on_instances == 0
    if detector == "never":
        assert not waiting
    event(f"queue reached {min(gateway.queue.longest, 5)}"
          f"{'+' if gateway.queue.longest >= 5 else ''}")
    event(f"shed: {gateway.queue.shed > 0}, held at the end: {bool(waiting)}")
    return gateway.queue


@settings(max_examples=150, deadline=None)
@given(scenario=simulation_scenarios(max_requests=40, max_instances=3), flow=_FLOW)
def test_flow_control_loses_no_request_and_never_dispatches_when_saturated(scenario, flow):
    """Any policies, workload shapes, caches and horizons of the invariant suite."""
    params = {"queue_depth_threshold": flow["queue_depth_threshold"],
              "kv_cache_util_threshold": flow["kv_cache_util_threshold"],
              "max_concurrency": flow["max_concurrency"]}
    scenario = attrs.evolve(scenario, specs=tuple(
        attrs.evolve(spec, arrival_time=spec.arrival_time // flow["squeeze"])
        for spec in scenario.specs))
    config = attrs.evolve(scenario.config, flow_control=FlowControlConfig(
        flow["detector"], flow["order"], flow["depth"], params))
    _run_checked(config, scenario.requests(), flow["detector"])


@settings(max_examples=40, deadline=None)
@given(detector=st.sampled_from(["utilization", "concurrency"]),
       order=st.sampled_from(["fifo", "priority"]), depth=st.sampled_from([0, 5, 30]),
       instances=st.integers(1, 3), rate=st.sampled_from([100, 400]),
       routing=st.sampled_from(["round-robin", "least-loaded", "weighted"]),
       horizon=st.sampled_from([None, 600_000]), latency=st.sampled_from([0, 2_000]),
       seed=st.integers(0, 2**31 - 1))
def test_overloaded_gateways_lose_no_request(detector, order, depth, instances, rate, routing,
                                             horizon, latency, seed):
    """Offered load far above capacity, so the gateway holds, sheds and strands requests."""
    args = (f"{MODEL} --num-instances {instances} --rate {rate} --num-requests 80 "
            f"--seed {seed} --routing-policy {routing} --routing-latency {latency} "
            f"--flow-control --saturation-detector {detector} --dispatch-order {order} "
            f"--max-gateway-queue-depth {depth} --max-concurrency 3 --queue-depth-threshold 1")
    if horizon:
        args += f" --horizon {horizon}"
    prepared = RunConfig.from_args(args).prepare()
    _run_checked(prepared.simulation, prepared.workload.requests, detector)
