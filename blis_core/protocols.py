"""What policies see and what they must provide.

Policies never touch the simulator: the cluster hands them read-only ``Snapshot`` values in a
``RouterState``. Each policy kind is a ``Protocol``; a plugin class satisfies it structurally
and carries a class attribute ``name`` (the string users select it by).
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple, Protocol, Sequence, runtime_checkable

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
    target: str
    reason: str = ""


@runtime_checkable
class AdmissionPolicy(Protocol):
    """Decides at the admission event whether a request enters the cluster.

    ``admit`` returns ``(admitted, reason)``. It may keep internal state (a token bucket) but
    must be deterministic given the sequence of calls. Rejected requests are counted and dropped.
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
class WorkloadGenerator(Protocol):
    """Turns the CLI workload options into a workload specification (``--workload NAME``)."""

    name: ClassVar[str]

    def to_spec(self, options): ...
