"""What policies see and what they must provide.

Policies never touch the simulator: the cluster hands them read-only ``Snapshot`` values in a
``RouterState``. Each policy kind is a ``Protocol``; a plugin class satisfies it structurally
and carries a class attribute ``name`` (the string users select it by).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import attrs


class Snapshot(NamedTuple):
    """One instance as a router sees it at decision time (upstream RoutingSnapshot).

    Immutable; a named tuple because the cluster builds one per instance for every admission
    and routing decision, and a tuple is the cheapest immutable record to build.
    """

    id: str
    queue_depth: int = 0
    batch_size: int = 0
    kv_utilization: float = 0.0
    free_kv_blocks: int = 0
    cache_hit_rate: float = 0.0
    in_flight_requests: int = 0
    preemption_count: int = 0
    model: str = ""
    gpu_type: str = ""
    tp_degree: int = 0
    cost_per_hour: float = 0.0
    total_kv_capacity_tokens: int = 0
    kv_tokens_in_use: int = 0

    @property
    def effective_load(self) -> int:
        return self.queue_depth + self.batch_size + self.in_flight_requests


@attrs.frozen(slots=True)
class RouterState:
    """Everything an admission or routing decision may look at.

    ``cache_query(instance_id, request) -> int``, when the cluster provides it, counts the
    consecutive full blocks of the request's prompt found in that instance's GPU prefix cache
    (upstream's ``cacheQueryFn``): a frozen copy refreshed every ``cache_signal_delay`` ticks of
    router activity, or the live cache when the delay is 0. It is provided only to policies that
    declare ``uses_cache_query = True`` (otherwise it is None).
    """

    snapshots: Sequence[Snapshot]
    clock: int
    cache_query: Callable[[str, object], int] | None = None


@attrs.frozen(slots=True)
class RoutingDecision:
    """Where a request goes. ``scores``, for a policy that scores instances, holds one score per
    snapshot in the order of ``state.snapshots`` (higher is better): the decision trace ranks
    counterfactual candidates by it, and by minus the effective load when it is None."""

    target: str
    reason: str = ""
    scores: Sequence[float] | None = None


@runtime_checkable
class AdmissionPolicy(Protocol):
    """Decides at the admission event whether a request enters the cluster.

    ``admit`` returns ``(admitted, reason)``. It may keep internal state (a token bucket) but
    must be deterministic given the sequence of calls. Rejected requests are counted and dropped.
    A policy whose class or object sets ``reads_router_state = False`` may be passed ``None``
    instead of a state (building the snapshots of every request is not free).
    """

    name: ClassVar[str]

    def admit(self, request, state: RouterState) -> tuple[bool, str]: ...


@runtime_checkable
class RoutingPolicy(Protocol):
    """Picks the instance for an admitted request.

    ``route`` receives a non-empty list of snapshots in instance order and must return the id
    of one of them. Randomness, if any, comes from the ``rng`` passed at construction (the
    "router" subsystem stream), never from global state.
    """

    name: ClassVar[str]

    def route(self, request, state: RouterState) -> RoutingDecision: ...


@runtime_checkable
class PriorityPolicy(Protocol):
    """Assigns a float priority (higher = more urgent) to each waiting request every step.

    One object per instance. A class with ``noop = True`` is never instantiated: requests keep
    their initial priority 0.0 (the ``constant`` policy).
    """

    name: ClassVar[str]

    def compute(self, request, clock: int) -> float: ...


@runtime_checkable
class Scheduler(Protocol):
    """Reorders an instance's wait queue before batch formation.

    ``order`` receives the wait queue (a deque) and returns the queue to use (it may be the same
    object). Sorting must be stable so that equal keys keep their queue order. One object per
    instance; a class with ``noop = True`` (``fcfs``) is never instantiated.
    """

    name: ClassVar[str]

    def order(self, queue): ...


@runtime_checkable
class DisaggregationDecider(Protocol):
    """Decides, for an admitted request, whether prefill and decode run on separate pools.

    ``decide(request)`` returns True to split the request. A decider that learns from routing
    also has ``observe(request, instance_id)``, called after every standard and prefill
    routing decision. The constructor may take ``threshold`` (``--pd-prefix-threshold``) and
    ``block_size``.
    """

    name: ClassVar[str]

    def decide(self, request) -> bool: ...


class ReplicaMetrics(NamedTuple):
    """One routable instance as an autoscaler sees it at a scaling tick."""

    instance_id: str
    gpu_type: str
    tp: int                                # at least 1
    kv_utilization: float
    queue_depth: int
    in_flight: int
    cost_per_hour: float
    total_kv_capacity_tokens: int
    kv_tokens_in_use: int


class ModelSignals(NamedTuple):
    """The routable replicas of one model, in instance order."""

    model: str
    replicas: tuple


class VariantInfo(NamedTuple):
    """A GPU type the node pools offer: its replica TP, cost per hour and free GPUs now."""

    gpu_type: str
    tp: int
    cost_per_hour: float
    free_gpus: int


class ScalingState(NamedTuple):
    """What an autoscaler sees at a tick: the clock, per-model signals (models sorted), the
    pools' variants (pool order) and the run's model (to scale a model with no replica)."""

    clock: int
    models: tuple
    variants: tuple
    model: str = ""


@attrs.frozen(slots=True)
class ScaleDecision:
    """Add (``delta`` > 0) or drain (< 0) replicas of ``model`` on a (GPU type, TP) variant."""

    model: str
    gpu_type: str
    tp: int
    delta: int


@runtime_checkable
class Autoscaler(Protocol):
    """Decides at every scaling tick how many replicas to add or drain.

    ``decide(state)`` gets a :class:`ScalingState` and returns :class:`ScaleDecision` values;
    the cluster applies them one HPA scrape delay later, in order: a ``+1`` places a new
    instance first-fit on a free GPU of that type (skipped when none is free), a ``-1`` drains
    the lexicographically smallest Active instance of that variant. An autoscaler may keep state
    across ticks (stabilization windows, cooldowns) but must be deterministic given its calls.
    The constructor takes the bundle's parameters of the autoscaler by keyword.
    """

    name: ClassVar[str]

    def decide(self, state: ScalingState) -> Sequence[ScaleDecision]: ...


@runtime_checkable
class SaturationDetector(Protocol):
    """How saturated the cluster is, for the gateway queue of flow control (``--flow-control``).

    ``saturation(state)`` receives a ``RouterState`` with every instance's snapshot (no model
    filter) and returns a finite float >= 0; the gateway holds its queued requests while the
    value is >= 1 and dispatches one otherwise. It is asked after each admitted request joins
    the queue and after each instance event in which requests finished (once per finished
    request while it keeps dispatching). The constructor may take ``queue_depth_threshold``,
    ``kv_cache_util_threshold`` (``--queue-depth-threshold``, ``--kv-cache-util-threshold``)
    and ``max_concurrency`` (``--max-concurrency``); it raises ``ValueError`` with a one-line
    message naming the flag when a value it uses is out of range.
    """

    name: ClassVar[str]

    def saturation(self, state: RouterState) -> float: ...


@runtime_checkable
class DispatchOrder(Protocol):
    """The order in which the gateway queue dispatches (``--dispatch-order``).

    ``key(request, priority)`` is called once when a request joins the queue, with its SLO
    priority (``blis_core.slo``: higher = more important); the queue dispatches the smallest
    key first and breaks ties by arrival at the gateway (FIFO). Keys of one run must be
    mutually comparable. Shedding at ``--max-gateway-queue-depth`` does not depend on the order:
    it always drops the lowest-priority, latest request.
    """

    name: ClassVar[str]

    def key(self, request, priority: int): ...


@runtime_checkable
class WorkloadGenerator(Protocol):
    """Turns the CLI workload options into a workload specification (``--workload NAME``)."""

    name: ClassVar[str]

    def to_spec(self, options): ...


@runtime_checkable
class ArrivalProcess(Protocol):
    """Draws a workload-spec client's inter-arrival times: ``arrival: {process: NAME, ...}``.

    Parameters. ``params`` declares the keys the ``arrival:`` mapping may carry besides
    ``process`` and ``cv`` (which every process accepts): each key maps to its default, or to
    ``None`` when it is required. Values are numbers. Validation refuses an undeclared key
    (``clients[0].arrival.period_us: unknown field "period_us"``), a missing required one and a
    non-finite value, each with its field path, before anything is generated. An optional
    classmethod ``check(cv, params)`` then checks the values (``params`` with the defaults
    filled in) and raises ``ValueError("<key>: <problem>")``; blis prefixes the field path.

    Construction: ``cls(rate_per_us, cv, **params)`` once per client, where ``rate_per_us`` is
    the client's share of the spec's ``aggregate_rate`` in requests per µs (floored at 1e-15),
    ``cv`` the mapping's ``cv`` (``None`` when absent) and ``params`` every declared key with
    its value or default. A ``ValueError`` raised here stops generation with a one-line error.

    Drawing: ``sample_iat(rng)`` is called once per arrival, in arrival order, and returns the
    time to the next arrival in integer µs: >= 1, or 0 to end the client's arrivals (nothing
    after it is generated). The client's clock starts at 0 (at its first lifecycle window's
    start for a single-session client) and advances by exactly the returned values, so a
    time-varying process can keep its own clock. All randomness comes from ``rng``, the
    client's private Go-compatible ``math/rand`` generator (``blis_core.gorand.GoRand`` or the
    block-reading ``BlockRand``): ``float64()``, ``exp_float64()``, ``norm_float64()``,
    ``int63()``, ``intn(n)``; the same seed then gives the same workload. The lengths and
    token ids of the request are drawn from the same generator right after each call, so
    draw order is part of a process's definition.
    """

    name: ClassVar[str]
    params: ClassVar[Mapping[str, float | None]]

    def sample_iat(self, rng) -> int: ...


@runtime_checkable
class LengthDistribution(Protocol):
    """Draws token counts: ``input_distribution: {type: NAME, params: {...}}`` and the like.

    Used for a client's ``input_distribution`` and ``output_distribution``, its multimodal
    text, item and count distributions, and ``reasoning.reason_ratio_distribution`` (the
    draw / 100 is the reason ratio).

    Parameters. ``params`` is either ``None`` (any key is accepted and the constructor checks
    them, like the built-ins, which raise their upstream messages at generation time) or a
    mapping that declares the accepted keys of the ``params:`` mapping, each to its default or
    to ``None`` when required; validation then refuses other keys and missing required ones
    with their field path. Values are finite numbers (validation refuses NaN and infinities).
    An optional classmethod ``check(params)`` checks them at validation time and raises
    ``ValueError("<key>: <problem>")``.

    Construction: ``cls(params, file)`` once per client and distribution, with the ``params:``
    mapping (declared defaults filled in) and the ``file:`` string (``""`` when absent). A
    ``ValueError`` raised here is reported as ``client "<id>" input distribution: <message>``
    when the workload is generated.

    Drawing: ``sample(rng) -> int``, once per length, a token count >= 1 (upstream's gaussian
    with ``min == max`` returns ``min`` unchanged, its one exception). Randomness only from
    ``rng``, the same Go-compatible generator as for ``ArrivalProcess``; a distribution that
    needs no draw (a constant) must not consume any.
    """

    name: ClassVar[str]
    params: ClassVar[Mapping[str, float | None] | None]

    def sample(self, rng) -> int: ...


@attrs.define
class RunWorkload:
    """The requests of one run, plus what writing its trace needs afterwards.

    ``requests`` are sorted by arrival (the engine consumes them); ``sessions`` drives
    closed-loop and multi-turn follow-ups; ``mode`` is ``generated`` or ``replayed``;
    ``horizon``, when not None, is the horizon the workload sets (a spec's ``horizon``).
    """

    requests: list
    sessions: object = None
    follow_ups: list = attrs.field(factory=list)
    seed: int | None = None
    mode: str = "generated"
    horizon: int | None = None


@runtime_checkable
class WorkloadSource(Protocol):
    """Builds the requests of a run description's ``workload`` section.

    ``build(config, registry)`` gets the whole :class:`~blis_core.runconfig.RunConfig` (the
    seed and horizon matter to generation) and the plugin registry (to find generators), and
    returns a :class:`RunWorkload`; bad input raises ``ConfigurationError`` with one line.
    ``write_trace(prefix, workload, simulation)`` writes ``--trace-output PREFIX`` after the
    run. Built in: ``generate`` and ``trace``.
    """

    name: ClassVar[str]

    def build(self, config, registry) -> RunWorkload: ...

    def write_trace(self, prefix: str, workload: RunWorkload, simulation) -> None: ...
