"""The invariant suite: hypothesis strategies and properties that no policy may break.

Any policy package can run the same invariants against its own policies with one import::

    from blis_core.testing import InvariantSuite

    class TestMyPolicies(InvariantSuite):
        routing = ["shortest-queue"]     # None (the default): everything registered
        scheduler = ["lifo"]

Each property runs on random small clusters (1-8 instances), random policies drawn from the
plugin registry, random workloads (ties, bursts, shared prefixes, deadlines, SLO classes,
tenants, foreign models), tiny and huge KV caches, an optional CPU tier, MaxModelLen caps,
chunked prefill and horizons that cut runs short:

- no request is lost: every request ends in exactly one bucket (completed, still queued, still
  running, dropped unservable, timed out, rejected by admission, shed by its tenant budget,
  rejected by routing, or still in the pipeline because the horizon cut its next event off),
  and the engine's counters equal those buckets;
- causality: arrival <= admission <= routing <= enqueue <= scheduling < first token, E2E >=
  TTFT, and a timeout happens exactly at the deadline;
- the clock never goes backwards and the KV books balance (free + used = total, every used
  block held by a queued or running request) after every event;
- the same configuration and seed give byte-identical summary JSON.

The policies themselves are held to their protocols on the way (a routing decision names a
routable instance, a scheduler returns a permutation of its queue, admission returns
``(bool, str)``).

Importing this module registers two hypothesis profiles: ``blis-ci`` (500 examples per
property: 2,000 for the suite) and ``long`` (2,500 per property: 10,000). A suite follows
``--hypothesis-profile``; without one (hypothesis' own ``default`` or ``ci`` profile) it uses
``blis-ci``'s example count. Profiles must exist before pytest configures hypothesis, so a
conftest that wants ``--hypothesis-profile=long`` loads this module as a plugin:
``pytest_plugins = ["blis_core.testing"]`` (or ``pytest -p blis_core.testing``).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import attrs
import numpy as np
from hypothesis import HealthCheck, event, given, settings, strategies as st

from blis_core.config import MAX_TICK, KVConfig, PolicyConfig, SimulationConfig
from blis_core.instance import BatchConfig
from blis_core.latency import BlackboxLatency
from blis_core.metrics import cluster_summary, go_json, instance_summary
from blis_core.plugins import get_registry
from blis_core.protocols import RoutingDecision
from blis_core.request import COMPLETED, QUEUED, RUNNING, TIMED_OUT, Request
from blis_core.simulation import build_cluster, simulate
from blis_core.slo import DEFAULT_SLO_PRIORITIES

__all__ = [
    "BUILT_IN_PARAMS", "CI_PROFILE", "InvariantSuite", "LONG_PROFILE", "Observation",
    "ProtocolViolation", "RequestSpec", "Scenario", "buckets", "check_causality",
    "check_conservation", "check_determinism", "observe", "simulation_scenarios",
    "suite_settings",
]

KINDS = ("admission", "routing", "priority", "scheduler")

# -- hypothesis profiles --------------------------------------------------------------------------
CI_PROFILE = "blis-ci"
LONG_PROFILE = "long"
EXAMPLES_PER_PROPERTY = {CI_PROFILE: 500, LONG_PROFILE: 2_500}
# Run times vary by orders of magnitude between examples (a horizon of 1 step or of thousands),
# so deadlines would only produce flaky failures.
_RELAXED = dict(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(CI_PROFILE, max_examples=EXAMPLES_PER_PROPERTY[CI_PROFILE], **_RELAXED)
settings.register_profile(LONG_PROFILE, max_examples=EXAMPLES_PER_PROPERTY[LONG_PROFILE],
                          **_RELAXED)
# Hypothesis' own profiles: loaded when nobody chose one (``ci`` is auto-loaded on CI machines).
_BUILT_IN_PROFILES = ("default", "ci")


def suite_settings() -> settings:
    """The settings a suite's properties run with: the active profile, except that hypothesis'
    built-in profiles get ``blis-ci``'s example count (100 would not exercise the policies)."""
    if settings.get_current_profile_name() in _BUILT_IN_PROFILES:
        return settings(settings.default, max_examples=EXAMPLES_PER_PROPERTY[CI_PROFILE],
                        **_RELAXED)
    return settings(settings.default, **_RELAXED)


def pytest_report_header(config):
    """Pytest hook (when loaded as a plugin): say how hard the invariant suite will try."""
    return (f"blis invariant suite: hypothesis profile {settings.get_current_profile_name()!r}, "
            f"{suite_settings().max_examples} examples per property")


# -- scenarios ------------------------------------------------------------------------------------
@attrs.frozen
class RequestSpec:
    """One request of a scenario, small enough to print; ``Scenario.requests`` builds it.

    The prompt is ``prefix_length`` tokens of shared prefix ``prefix_group`` followed by
    ``unique_length`` tokens of its own.
    """

    id: str
    arrival_time: int
    prefix_group: int
    prefix_length: int
    unique_length: int
    output_length: int
    max_output_len: int = 0
    deadline: int = 0
    slo_class: str = ""
    tenant_id: str = ""
    model: str = ""

    @property
    def input_length(self) -> int:
        return self.prefix_length + self.unique_length


@attrs.frozen
class Scenario:
    """A configuration and a workload. The engine mutates requests, so every run asks
    ``requests()`` for fresh ones; token ids come from ``token_seed``. ``latency`` repeats the
    blackbox coefficients of ``config.latency`` (alpha, beta), whose repr does not show them, so
    that a failing example prints everything needed to rebuild it."""

    config: SimulationConfig
    specs: tuple[RequestSpec, ...]
    token_seed: int = 0
    latency: tuple = ()

    def requests(self) -> list[Request]:
        prefixes = np.random.default_rng((self.token_seed, 0)).integers(
            0, 128_000, (PREFIX_GROUPS, MAX_PREFIX)).astype(np.int32)
        out = []
        for i, spec in enumerate(self.specs):
            rng = np.random.default_rng((self.token_seed, i + 1))
            unique = rng.integers(0, 128_000, spec.unique_length).astype(np.int32)
            prompt = np.concatenate([prefixes[spec.prefix_group, :spec.prefix_length], unique])
            output = rng.integers(0, 128_000, spec.output_length).astype(np.int32)
            out.append(Request(spec.id, spec.arrival_time, prompt, output,
                               max_output_len=spec.max_output_len, deadline=spec.deadline,
                               slo_class=spec.slo_class, tenant_id=spec.tenant_id,
                               model=spec.model))
        return out


# Every strategy below is built once: building (and validating) strategies inside each example
# cost more than running the simulation.

# The engine's time scale (microsecond ticks) with upstream-like coefficients, and extremes:
# every delay 0 and one-tick steps, or random coefficients.
_UPSTREAM_ALPHA = (232.46191091038054, 1.752360364195244, 3357.4400353290152)
_UPSTREAM_BETA = (5752.705191348184, 17.25086436834028, 5.999143920128404)
_UNIT = st.floats(0, 1, allow_nan=False)
_LATENCY = st.one_of(  # (alpha, beta)
    st.just((_UPSTREAM_ALPHA, _UPSTREAM_BETA)),
    st.just(((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))),
    st.builds(lambda a, b, c, d, e, f: ((a * 2_000, b * 5, c * 5_000),
                                        (d * 20_000, e * 50, f * 50)),
              _UNIT, _UNIT, _UNIT, _UNIT, _UNIT, _UNIT),
)

PREFIX_GROUPS = 4
MAX_PREFIX = 64
MAX_UNIQUE = 120
MAX_OUTPUT = 60
_TENANTS = ("", "tenant-a", "tenant-b", "tenant-c")
_CLASSES = ("", *sorted(DEFAULT_SLO_PRIORITIES))
_MODELS = ("", "model-a", "model-b")
_PREFIX_LENGTHS = (0, 8, 33, MAX_PREFIX)
_MAX_OUTPUT_KINDS = ("exact", "zero", "short", "negative")
_DEADLINE_RANGE = (-1_000, 3_000_000)
# Every field of a request, as (name, number of values). The fields are uniform draws from a
# numpy generator seeded by the scenario: hypothesis draws integers over wide ranges mostly near
# zero (most requests would get no output), and drawing ten strategies per request cost more
# than running the simulation. The generator yields requests in order, so when hypothesis
# shrinks the request count the remaining requests stay the same.
_REQUEST_FIELDS = (
    ("gap", 1_001),                          # thousandths of the scenario's largest gap
    ("prefix", len(_PREFIX_LENGTHS)),
    ("group", PREFIX_GROUPS),
    ("unique", MAX_UNIQUE + 1),
    ("output", MAX_OUTPUT + 1),
    ("max_output", len(_MAX_OUTPUT_KINDS)),  # in scenarios with odd lengths only
    ("has_deadline", 2),                     # in scenarios with deadlines only
    ("deadline", _DEADLINE_RANGE[1] - _DEADLINE_RANGE[0] + 1),
    ("slo", len(_CLASSES)),                  # these three in scenarios with metadata only
    ("tenant", len(_TENANTS)),
    ("model", len(_MODELS)),
)
_FIELD_NAMES = tuple(name for name, _n in _REQUEST_FIELDS)
_FIELD_BOUNDS = np.array([n for _name, n in _REQUEST_FIELDS])


def _request_fields(seed: int, count: int) -> list[dict]:
    rows = np.random.default_rng(seed).integers(0, _FIELD_BOUNDS,
                                                size=(count, len(_FIELD_BOUNDS)))
    return [dict(zip(_FIELD_NAMES, map(int, row))) for row in rows]


_SLO_OVERRIDES = st.none() | st.dictionaries(
    st.sampled_from(sorted(DEFAULT_SLO_PRIORITIES)), st.integers(-3, 5), max_size=3)
_BUDGETS = st.fixed_dictionaries({tenant: st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0])
                                  for tenant in _TENANTS[1:]})
# Tiny caches force preemption and drops; huge ones never fill. Building a 100k-block store
# costs more than a whole small run, so huge caches come with at most two instances.
HUGE_CACHE = 100_000
_TOTAL_BLOCKS = st.one_of(*[st.integers(1, 40)] * 4, *[st.integers(41, 2_000)] * 4,
                          st.integers(2_001, 20_000), st.just(HUGE_CACHE))
_BATCH = st.builds(BatchConfig,
                   max_running=st.sampled_from([1, 2, 3, 4, 8, 256]),
                   max_scheduled_tokens=st.sampled_from([1, 7, 16, 64, 256, 2048]),
                   long_prefill_threshold=st.sampled_from([0, 0, 1, 16, 50]),
                   max_model_len=st.sampled_from([0, 0, 0, 32, 100, 250]))


def _scorer_lists(cls):
    names = sorted(getattr(cls, "scorer_names_known", ()))
    if not names:
        return st.just({})
    pairs = st.lists(st.tuples(st.sampled_from(names), st.integers(1, 5).map(float)),
                     min_size=1, max_size=len(names), unique_by=lambda pair: pair[0])
    # "" is the policy's default scorer profile.
    return st.one_of(st.just({"scorers": ""}), pairs.map(lambda p: {"scorers": list(p)}))


# Parameters of the built-in policies that take any (the rest are built with no arguments),
# as factories from the registered class to a strategy of keyword arguments.
BUILT_IN_PARAMS = {
    ("admission", "token-bucket"): lambda cls: st.fixed_dictionaries({
        "capacity": st.sampled_from([1.0, 50.0, 500.0, 1e5]),
        "refill_rate": st.sampled_from([1.0, 1_000.0, 1e5, 1e7]),
    }),
    ("admission", "tier-shed"): lambda cls: st.fixed_dictionaries({
        "threshold": st.integers(0, 12),
        "min_priority": st.integers(-4, 5),
        "slo_priorities": _SLO_OVERRIDES,
    }),
    ("admission", "gaie-legacy"): lambda cls: st.fixed_dictionaries({
        "qd_threshold": st.sampled_from([0.5, 1.0, 5.0, 20.0]),
        "kv_threshold": st.sampled_from([0.05, 0.5, 0.8, 1.0]),
        "slo_priorities": _SLO_OVERRIDES,
    }),
    ("routing", "weighted"): _scorer_lists,
}

# Unrestricted draws pick the kind's default half of the time: a run where reject-all turns
# everything away exercises nothing downstream of admission.
_DEFAULTS = {kind: getattr(PolicyConfig(), kind) for kind in KINDS}


def _names(registry, kind: str, restriction) -> list[str]:
    if restriction is None:
        names = registry.names(kind)
        default = _DEFAULTS[kind]
        return names + [default] * len(names) if default in names else names
    names = [restriction] if isinstance(restriction, str) else list(restriction)
    if not names:
        raise ValueError(f"the {kind} restriction is empty; use None for every registered one")
    for name in names:
        registry.get(kind, name)  # an unknown name fails here, listing the known ones
    return names


def _policy(registry, kind: str, restriction, params: Mapping):
    """A strategy of (name, constructor parameters) for one policy kind."""
    options = []
    for name in _names(registry, kind, restriction):
        strategy = params.get((kind, name))
        if strategy is None:
            factory = BUILT_IN_PARAMS.get((kind, name))
            strategy = factory(registry.get(kind, name)) if factory else st.just({})
        options.append(strategy.map(lambda p, name=name: (name, p)))
    return st.one_of(options)


def _fits_alone(spec: RequestSpec, kv: KVConfig) -> bool:
    """A request that fits the cache on its own always progresses; one that does not can be
    preempted forever (as upstream), which only a horizon ends."""
    tokens = spec.input_length + spec.output_length + 1
    return -(-tokens // kv.block_size) + 1 <= kv.total_blocks


def _max_output_len(kind: str, output: int) -> int:
    return {"exact": output, "zero": 0, "short": max(output - 5, 0), "negative": -1}[kind]


# Scenario-wide knobs, drawn together. The three flags turn per-request options on: odd
# max_output_len values (0, short, negative), deadlines, and SLO class / tenant / model labels.
_KNOBS = st.fixed_dictionaries({
    "latency": _LATENCY,
    "kv": st.builds(KVConfig, total_blocks=_TOTAL_BLOCKS, block_size=st.sampled_from([1, 4, 16]),
                    cpu_blocks=st.sampled_from([0, 0, 0, 4, 64]),
                    transfer_bandwidth=st.sampled_from([0.5, 2.0, 100.0]),
                    transfer_base_latency=st.integers(0, 10)),
    "batch": _BATCH,
    "max_gap_steps": st.sampled_from([0, 1, 10, 100]),
    "first_arrival": st.integers(0, 100_000),
    "odd_lengths": st.booleans(),
    "deadlines": st.booleans(),
    "metadata": st.booleans(),
    "admission_latency": st.sampled_from([0, 0, 0, 1, 20_000]),
    "routing_latency": st.sampled_from([0, 0, 0, 1, 20_000]),
    "ending": st.sampled_from(["cut", "tail", "tail", "complete"]),
    "cut_at": st.integers(0, 1_000),       # thousandths of the arrival span, for "cut"
    "budgets": st.none() | _BUDGETS,       # with metadata only
    "slo_priorities": _SLO_OVERRIDES,      # with budgets only
    "model": st.sampled_from(["", "", "model-a"]),
    "seed": st.integers(0, 2**31 - 1),
    "snapshot_refresh_interval": st.sampled_from([0, 0, 1, 10_000, 1_000_000]),
    "cache_signal_delay": st.sampled_from([0, 1, 50_000, 5_000_000]),
    "workload_seed": st.integers(0, 2**32 - 1),
    "token_seed": st.integers(0, 2**32 - 1),
})


@st.composite
def _scenarios(draw, policies, request_counts, instance_counts, few_instances):
    (admission, admission_params), (routing, routing_params), (priority, _), (scheduler, _) = \
        draw(policies)
    k = draw(_KNOBS)
    latency, kv = BlackboxLatency(*k["latency"]), k["kv"]

    # -- the workload. Time is measured in steps: a request that never fits its cache is
    # preempted at every step until the horizon (as upstream), so a run costs its span in steps.
    # The shortest step (no tokens at all) bounds how many steps fit in a span.
    step = max(1, latency.step_time(0, 0))
    max_gap = step * k["max_gap_steps"]
    metadata = k["metadata"]
    clock = k["first_arrival"]
    specs = []
    for i, f in enumerate(_request_fields(k["workload_seed"], draw(request_counts))):
        clock += f["gap"] * max_gap // 1_000
        prefix = _PREFIX_LENGTHS[f["prefix"]]
        unique = f["unique"] or (0 if prefix else 1)  # an empty prompt is not a request
        output = f["output"]
        deadline = 0
        if k["deadlines"] and f["has_deadline"]:
            deadline = max(1, clock + _DEADLINE_RANGE[0] + f["deadline"])
        specs.append(RequestSpec(
            f"request_{i}", clock, f["group"], prefix, unique, output,
            max_output_len=_max_output_len(
                _MAX_OUTPUT_KINDS[f["max_output"]] if k["odd_lengths"] else "exact", output),
            deadline=deadline,
            slo_class=_CLASSES[f["slo"]] if metadata else "",
            tenant_id=_TENANTS[f["tenant"]] if metadata else "",
            model=_MODELS[f["model"]] if metadata else ""))

    # -- when the run ends: amid the arrivals, some steps after them, or when all work is done
    first, last = specs[0].arrival_time, specs[-1].arrival_time
    if k["ending"] == "cut":
        horizon = max(1, first + (last + step - first) * k["cut_at"] // 1_000)
    elif (k["ending"] == "complete" and kv.cpu_blocks == 0
          and all(_fits_alone(s, kv) for s in specs)):
        # Not with a CPU tier: there a queued request can hold blocks reloaded for it while the
        # head of the queue, needing them, preempts itself forever (upstream's semantics), so
        # such a run ends only at a horizon.
        horizon = MAX_TICK
    else:
        horizon = (last + k["admission_latency"] + k["routing_latency"]
                   + latency.queueing_time(MAX_PREFIX + MAX_UNIQUE) + 200 * step)

    budgets = k["budgets"] if metadata else None
    config = SimulationConfig(
        latency=latency, batch=k["batch"], kv=kv,
        policies=PolicyConfig(admission=admission, routing=routing, priority=priority,
                              scheduler=scheduler, admission_params=admission_params,
                              routing_params=routing_params),
        num_instances=draw(few_instances if kv.total_blocks >= HUGE_CACHE else instance_counts),
        horizon=horizon,
        seed=k["seed"],
        admission_latency=k["admission_latency"],
        routing_latency=k["routing_latency"],
        model=k["model"],
        snapshot_refresh_interval=k["snapshot_refresh_interval"],
        cache_signal_delay=k["cache_signal_delay"],
        tenant_budgets=budgets,
        slo_priorities=k["slo_priorities"] if budgets else None,
    )
    return Scenario(config, tuple(specs), token_seed=k["token_seed"], latency=k["latency"])


def simulation_scenarios(*, admission: Sequence[str] | str | None = None,
                         routing: Sequence[str] | str | None = None,
                         priority: Sequence[str] | str | None = None,
                         scheduler: Sequence[str] | str | None = None,
                         policy_params: Mapping | None = None,
                         max_requests: int = 40, max_instances: int = 8,
                         registry=None) -> st.SearchStrategy[Scenario]:
    """Random ``Scenario`` values for your own properties.

    Each policy kind is drawn from the given names, or from every registered policy of that
    kind when None. ``policy_params`` maps ``(kind, name)`` to a strategy of constructor
    parameters (admission and routing only; the others are built without arguments) and takes
    precedence over ``BUILT_IN_PARAMS``; a policy with neither is built with none.
    """
    if max_requests < 1 or max_instances < 1:
        raise ValueError("max_requests and max_instances must be >= 1")
    restrictions = {"admission": admission, "routing": routing, "priority": priority,
                    "scheduler": scheduler}
    params = dict(policy_params or {})

    def build():
        reg = registry or get_registry()
        policies = st.tuples(*(_policy(reg, kind, restrictions[kind], params)
                               for kind in KINDS))
        return _scenarios(policies, st.integers(1, max_requests), st.integers(1, max_instances),
                          st.integers(1, min(max_instances, 2)))

    # Deferred: the registry is read (and a restriction checked) when the first example is
    # drawn, so defining a suite never triggers plugin discovery.
    return st.deferred(build)


# -- observing a run ------------------------------------------------------------------------------
class ProtocolViolation(AssertionError):
    """A policy broke its protocol (blis_core.protocols)."""


@attrs.define
class Observation:
    """A finished run plus what the suite recorded on the way: every admission verdict, every
    routing decision, every tenant-budget shed, by request id."""

    scenario: Scenario
    requests: list
    cluster: object
    admission: dict = attrs.field(factory=dict)     # id -> [admitted, ...]
    routed: dict = attrs.field(factory=dict)        # id -> [instance id, ...]
    tenant_shed: dict = attrs.field(factory=dict)   # id -> [shed, ...]

    @property
    def instances(self) -> list:
        return self.cluster.instances

    @property
    def summary(self):
        return cluster_summary(self.instances)


class _RecordingRegistry:
    """Hands ``build_cluster`` subclasses of the registered policies that record their
    decisions and check them against the protocols; behaviour is otherwise unchanged."""

    def __init__(self, registry, observation: Observation) -> None:
        self.registry = registry
        self.observation = observation

    def get(self, kind: str, name: str) -> type:
        cls = self.registry.get(kind, name)
        wrap = {"admission": _recording_admission, "routing": _recording_routing,
                "scheduler": _checked_scheduler}.get(kind)
        return wrap(cls, self.observation) if wrap else cls


def _recording_admission(cls, observation):
    class Recorded(cls):
        def admit(self, request, state):
            verdict = super().admit(request, state)
            if (not isinstance(verdict, tuple) or len(verdict) != 2
                    or not isinstance(verdict[0], bool) or not isinstance(verdict[1], str)):
                raise ProtocolViolation(f"admission policy {cls.name!r} returned {verdict!r} "
                                        f"for {request.id}; expected (bool, str)")
            observation.admission.setdefault(request.id, []).append(verdict[0])
            return verdict
    Recorded.__name__ = Recorded.__qualname__ = cls.__name__
    return Recorded


def _recording_routing(cls, observation):
    class Recorded(cls):
        def route(self, request, state):
            decision = super().route(request, state)
            ids = [snap.id for snap in state.snapshots]
            if not isinstance(decision, RoutingDecision) or decision.target not in ids:
                raise ProtocolViolation(f"routing policy {cls.name!r} returned {decision!r} for "
                                        f"{request.id}; the routable instances are {ids}")
            observation.routed.setdefault(request.id, []).append(decision.target)
            return decision
    Recorded.__name__ = Recorded.__qualname__ = cls.__name__
    return Recorded


def _checked_scheduler(cls, observation):
    class Checked(cls):
        def order(self, queue):
            before = [id(req) for req in queue]
            ordered = super().order(queue)
            if sorted(id(req) for req in ordered) != sorted(before):
                raise ProtocolViolation(f"scheduler {cls.name!r} did not return a permutation "
                                        f"of its queue ({len(before)} requests in, "
                                        f"{len(ordered)} out)")
            return ordered
    Checked.__name__ = Checked.__qualname__ = cls.__name__
    return Checked


def _check_books(inst, engine_audit) -> None:
    """After every event on an instance: the engine's own audit (every block free or held, the
    free list consistent) while the cache is small enough to walk, and in any case free + held
    = total, each held block's reference count, and a sane wait queue and batch."""
    kv = inst.kv
    if kv.total_blocks <= 64:
        engine_audit()
    running = inst.running or []
    wait = inst.wait
    holders = running + list(wait)
    refs = Counter(block for req in holders if req.blocks for block in req.blocks)
    # Blocks cruisers took and have not been handed yet (unkeyed decode blocks) are held too.
    refs.update(kv.decode_pool)
    refcount = kv.refcount
    for block, count in refs.items():
        if refcount[block] != count:
            raise AssertionError(f"{inst.id}: block {block} has {refcount[block]} references, "
                                 f"requests hold {count}")
    if kv.free_count + len(refs) != kv.total_blocks:
        raise AssertionError(f"{inst.id}: {kv.free_count} free + {len(refs)} held blocks != "
                             f"{kv.total_blocks} total")
    if len(set(map(id, holders))) != len(holders):
        raise AssertionError(f"{inst.id}: a request is queued or running twice")
    if len(running) > inst.batch_config.max_running:
        raise AssertionError(f"{inst.id}: {len(running)} running > max_running "
                             f"{inst.batch_config.max_running}")
    if any(req.state != RUNNING for req in running):
        raise AssertionError(f"{inst.id}: a request in the batch is not running: {running}")
    registered = inst.requests
    if any(req.state != QUEUED or registered.get(req.id) is not req for req in wait):
        raise AssertionError(f"{inst.id}: a waiting request is not queued here: {list(wait)}")


def observe(scenario: Scenario, *, audit: bool = False, registry=None) -> Observation:
    """Run a scenario with recording policies. ``audit`` also checks the clock and the books
    after every event (see ``_check_books``)."""
    requests = scenario.requests()
    observation = Observation(scenario, requests, None)
    cluster = build_cluster(scenario.config, registry=_RecordingRegistry(
        registry or get_registry(), observation), audit=audit)
    observation.cluster = cluster
    tenants = cluster.tenants
    if tenants is not None:
        decide = tenants.sheds

        def sheds(req):
            shed = decide(req)
            observation.tenant_shed.setdefault(req.id, []).append(shed)
            return shed
        tenants.sheds = sheds
    if audit:
        for inst in cluster.instances:
            inst.audit = lambda inst=inst, engine_audit=inst.audit: _check_books(inst,
                                                                                engine_audit)
    cluster.run(requests)
    if audit:
        for inst in cluster.instances:
            inst.audit()  # finalize() materializes implicit decodes: the books must still balance
    return observation


# -- the invariants -------------------------------------------------------------------------------
@attrs.frozen
class Ticks:
    """When each pipeline event of a request happens (they are scheduled at fixed offsets)."""

    admission: int
    routing: int
    enqueue: int


def _ticks(config: SimulationConfig, req) -> Ticks:
    admission = req.arrival_time + config.admission_latency
    routing = admission + config.routing_latency
    return Ticks(admission, routing, routing + config.latency.queueing_time(req.num_input))


_NEVER_ROUTED = ("not arrived", "awaiting admission", "rejected by admission",
                 "shed by tenant budget", "awaiting routing", "rejected by routing")


def buckets(observation: Observation) -> dict:
    """Where every request ended: id -> bucket name. Fails on a request found in two places,
    or in none, or in a place its event times rule out."""
    config = observation.scenario.config
    horizon = config.horizon
    by_id = {inst.id: inst for inst in observation.instances}
    where = {}
    for inst in observation.instances:
        places = [(req, "running") for req in inst.running or ()]
        places += [(req, "queued") for req in inst.wait]
        for req, place in places:
            if req.id in where:
                raise AssertionError(f"{req.id} is both {where[req.id]} and {place} ({inst.id})")
            where[req.id] = place
    registered = Counter(rid for inst in observation.instances for rid in inst.requests)
    twice = sorted(rid for rid, count in registered.items() if count > 1)
    assert not twice, f"requests registered on two instances: {twice}"

    out = {}
    for req in observation.requests:
        rid = req.id
        t = _ticks(config, req)
        verdicts = observation.admission.get(rid, [])
        routes = observation.routed.get(rid, [])
        assert len(verdicts) <= 1 and len(routes) <= 1, \
            f"{rid} was admitted {len(verdicts)} times and routed {len(routes)} times"
        if req.arrival_time > horizon:
            bucket = "not arrived"
        elif t.admission > horizon:
            bucket = "awaiting admission"
        elif not verdicts:
            raise AssertionError(f"{rid}: admission was due at {t.admission} <= horizon "
                                 f"{horizon} but never happened")
        elif not verdicts[0]:
            bucket = "rejected by admission"
        elif any(observation.tenant_shed.get(rid, [])):
            bucket = "shed by tenant budget"
        elif t.routing > horizon:
            bucket = "awaiting routing"
        elif not routes:
            assert req.model and config.model and req.model != config.model, \
                f"{rid}: routing was due at {t.routing} but the request vanished"
            bucket = "rejected by routing"
        else:
            assert req.assigned_instance == routes[0], \
                f"{rid} was routed to {routes[0]} but is assigned to {req.assigned_instance!r}"
            inst = by_id[routes[0]]
            if inst.requests.get(rid) is not req:
                bucket = "dropped unservable"
                assert req.completion_time == t.enqueue, \
                    f"{rid} was dropped at {req.completion_time}, not at enqueue {t.enqueue}"
            elif req.state == COMPLETED:
                bucket = "completed"
            elif req.state == TIMED_OUT:
                bucket = "timed out"
            elif rid in where:
                bucket = where[rid]
            else:
                assert t.enqueue > horizon, \
                    f"{rid}: enqueued at {t.enqueue} <= horizon {horizon} but in no queue"
                bucket = "in transit"
        if bucket not in ("queued", "running"):
            assert rid not in where, f"{rid} is {bucket} but also {where[rid]}"
        if bucket in _NEVER_ROUTED:
            assert not routes and not req.assigned_instance and not registered[rid], \
                f"{rid} is {bucket} but reached {req.assigned_instance}"
        if bucket in ("not arrived", "awaiting admission"):
            assert not verdicts, f"{rid} is {bucket} but had an admission decision"
        out[rid] = bucket
    return out


def check_conservation(observation: Observation) -> dict:
    """No policy can lose a request: every request is in exactly one bucket and the engine's
    counters are the bucket sizes (INV-1: injected = completed + queued + running + dropped +
    timed out; plus the rejections and what the horizon left in the pipeline)."""
    ids = [req.id for req in observation.requests]
    assert len(set(ids)) == len(ids)
    where = buckets(observation)
    sizes = Counter(where.values())
    cluster = observation.cluster
    summary = observation.summary
    c = summary.counters
    expected = {"completed": c["completed"], "queued": c["still_queued"],
                "running": c["still_running"], "dropped unservable": c["dropped_unservable"],
                "timed out": c["timed_out"]}
    got = {name: sizes[name] for name in expected}
    assert got == expected, f"engine counters {expected} but the requests say {got}"
    assert summary.output()["injected_requests"] == sum(expected.values())
    assert sizes["rejected by admission"] + sizes["shed by tenant budget"] == cluster.rejected
    assert sum(cluster.shed_by_tier.values()) == cluster.rejected
    assert sizes["rejected by routing"] == cluster.routing_rejections
    assert sum(sizes.values()) == len(ids)

    for inst, inst_summary in zip(observation.instances, map(instance_summary,
                                                             observation.instances)):
        mine = Counter(where[req.id] for req in observation.requests
                       if req.assigned_instance == inst.id)
        ic = inst_summary.counters
        assert (mine["completed"], mine["timed out"], mine["dropped unservable"],
                mine["queued"], mine["running"]) == (
            ic["completed"], ic["timed_out"], ic["dropped_unservable"], ic["still_queued"],
            ic["still_running"]), f"{inst.id}: counters disagree with its requests {dict(mine)}"
        # Routers see in_flight_requests: routed here and not yet left.
        assert inst.in_flight == mine["in transit"] + mine["queued"] + mine["running"], \
            f"{inst.id}: in_flight {inst.in_flight} but {dict(mine)}"
    tenants = cluster.tenants
    if tenants is not None:
        unfinished = Counter(req.tenant_id for req in observation.requests
                             if where[req.id] in ("in transit", "queued", "running"))
        assert {t: n for t, n in tenants.in_flight.items() if n} == dict(unfinished), \
            f"tenant in-flight counts {tenants.in_flight} but unfinished {dict(unfinished)}"

    if observation.scenario.config.horizon == MAX_TICK:
        # Every request fits the cache on its own and there is no CPU tier, so with unlimited
        # time every one finishes.
        stuck = sorted(rid for rid, b in where.items()
                       if b in ("queued", "running", "in transit"))
        assert not stuck, f"unlimited horizon but {stuck} never finished"
    return where


def check_causality(observation: Observation) -> None:
    """Per request: arrival <= admission <= routing <= enqueue <= scheduling < first token;
    TTFT <= E2E; a request leaves no earlier than it was scheduled; a timeout fires exactly at
    the deadline (or at enqueue, if that is already past it)."""
    config = observation.scenario.config
    for req in observation.requests:
        rid = req.id
        t = _ticks(config, req)
        scheduled = req.scheduling_delay >= 0
        assert req.scheduling_delay >= -1
        if scheduled:
            # scheduling_delay is measured from arrival to the (last) batch admission.
            assert req.arrival_time + req.scheduling_delay >= t.enqueue, \
                f"{rid} scheduled {req.scheduling_delay} after arrival, before its enqueue"
        if req.ttft_set:
            assert scheduled, f"{rid} has a first token but was never scheduled"
            assert req.arrival_time + req.first_token_time > t.enqueue, \
                f"{rid}: first token at {req.arrival_time + req.first_token_time} <= enqueue"
            if req.preemptions == 0:  # re-admission moves the delay, never the first token
                assert req.first_token_time > req.scheduling_delay, \
                    f"{rid}: TTFT {req.first_token_time} <= delay {req.scheduling_delay}"
        if req.state == COMPLETED:
            assert scheduled, f"{rid} completed without being scheduled"
            assert req.ttft_set or req.length_capped, f"{rid} completed without a first token"
            assert req.e2e >= req.first_token_time, f"{rid}: E2E {req.e2e} < TTFT"
            assert req.completion_time > req.arrival_time + req.scheduling_delay, \
                f"{rid} left at {req.completion_time}, not after it was scheduled"
        elif req.state == TIMED_OUT:
            assert req.deadline > 0, f"{rid} timed out without a deadline"
            assert req.completion_time == max(req.deadline, t.enqueue), \
                f"{rid} timed out at {req.completion_time}, deadline {req.deadline}, " \
                f"enqueued {t.enqueue}"
        elif not req.assigned_instance:
            assert not scheduled and not req.ttft_set and req.completion_time == 0, \
                f"{rid} never reached an instance but has engine state"


def _outputs(result) -> tuple:
    return (go_json(result.summary.output(with_requests=True)),
            [go_json(s.output(with_requests=True)) for s in result.instance_summaries],
            result.cluster.rejected, result.cluster.routing_rejections,
            sorted(result.cluster.shed_by_tier.items()))


def check_determinism(scenario: Scenario, registry=None) -> None:
    """Two runs of the same configuration and seed print byte-identical summaries (through the
    public ``simulate``, without any recording)."""
    first = _outputs(simulate(scenario.config, scenario.requests(), registry=registry))
    second = _outputs(simulate(scenario.config, scenario.requests(), registry=registry))
    assert first == second, "the same scenario gave two different outputs"


# -- the suite ------------------------------------------------------------------------------------
_PROPERTIES = ("test_no_request_is_lost", "test_causality", "test_clock_and_kv_books",
               "test_same_seed_same_output")


class InvariantSuite:
    """Subclass in a test module (named ``Test...``) to run every invariant on your policies.

    Class attributes restrict what is drawn; None means every registered policy of the kind
    (built-in and third-party):

    - ``admission``, ``routing``, ``priority``, ``scheduler``: lists of names;
    - ``policy_params``: ``{(kind, name): strategy of a parameter dict}`` for admission and
      routing policies whose constructors need arguments;
    - ``max_requests`` (40), ``max_instances`` (8): the workload and cluster size.

    To leave a property out, set it to None in the subclass (``test_causality = None``).
    """

    admission: Sequence[str] | None = None
    routing: Sequence[str] | None = None
    priority: Sequence[str] | None = None
    scheduler: Sequence[str] | None = None
    policy_params: Mapping = {}
    max_requests: int = 40
    max_instances: int = 8

    def test_no_request_is_lost(self, scenario: Scenario) -> None:
        where = check_conservation(observe(scenario))
        # --hypothesis-show-statistics then shows how often each outcome was exercised.
        for bucket in sorted(set(where.values())):
            event(f"some request {bucket}")

    def test_causality(self, scenario: Scenario) -> None:
        check_causality(observe(scenario))

    def test_clock_and_kv_books(self, scenario: Scenario) -> None:
        observe(scenario, audit=True)

    def test_same_seed_same_output(self, scenario: Scenario) -> None:
        check_determinism(scenario)

    @classmethod
    def scenarios(cls) -> st.SearchStrategy[Scenario]:
        return simulation_scenarios(admission=cls.admission, routing=cls.routing,
                                    priority=cls.priority, scheduler=cls.scheduler,
                                    policy_params=cls.policy_params,
                                    max_requests=cls.max_requests,
                                    max_instances=cls.max_instances)

    def __init_subclass__(cls, **kwargs) -> None:
        # The properties become hypothesis tests here, when a test module defines the suite:
        # by then pytest has loaded --hypothesis-profile, so the example count follows it, and
        # the strategy sees this subclass's restrictions.
        super().__init_subclass__(**kwargs)
        run_settings = suite_settings()
        for name in _PROPERTIES:
            prop = getattr(cls, name)
            if prop is None:
                continue
            prop = getattr(prop, "blis_property", prop)
            test = run_settings(given(scenario=cls.scenarios())(prop))
            test.blis_property = prop
            setattr(cls, name, test)
