"""Hook specifications of the ``blis`` plugin system.

Every hook is a *discovery* hook: it takes no arguments and returns a list of classes. Each class
carries a ``name`` (the string a user writes on the command line or in a PolicyBundle) and a
docstring whose first line is its one-line summary. The engine instantiates the selected class
once per run and then calls the object directly; no hook is ever called on the per-request path.

A plugin distribution exposes a module through the ``blis`` entry-point group::

    [project.entry-points.blis]
    my_policies = "my_package.plugin"

and implements any of these hooks in that module with ``@blis_core.hookimpl``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("blis")
hookimpl = pluggy.HookimplMarker("blis")


@hookspec
def blis_admission_policies() -> list[type]:
    """Return admission policy classes (protocol ``blis_core.protocols.AdmissionPolicy``).

    An admission policy decides, at the admission event, whether a request enters the cluster.
    """


@hookspec
def blis_routing_policies() -> list[type]:
    """Return routing policy classes (protocol ``blis_core.protocols.RoutingPolicy``).

    A routing policy picks the instance an admitted request is sent to, from read-only snapshots.
    """


@hookspec
def blis_priority_policies() -> list[type]:
    """Return priority policy classes (protocol ``blis_core.protocols.PriorityPolicy``).

    A priority policy assigns each waiting request a float priority at every step.
    """


@hookspec
def blis_schedulers() -> list[type]:
    """Return instance scheduler classes (protocol ``blis_core.protocols.Scheduler``).

    A scheduler reorders an instance's wait queue before every batch formation.
    """


@hookspec
def blis_workload_generators() -> list[type]:
    """Return workload generator classes (protocol ``blis_core.protocols.WorkloadGenerator``).

    A workload generator turns the run's workload options (``--workload NAME`` with its rate,
    request count and length flags) into a workload specification.
    """


@hookspec
def blis_arrival_processes() -> list[type]:
    """Return arrival process classes (protocol ``blis_core.protocols.ArrivalProcess``).

    An arrival process draws the inter-arrival times of a workload-spec client; the spec selects
    it with ``arrival: {process: NAME, ...}``. Built-in: ``poisson``, ``gamma``, ``weibull``,
    ``constant``.
    """


@hookspec
def blis_length_distributions() -> list[type]:
    """Return length distribution classes (protocol ``blis_core.protocols.LengthDistribution``).

    A length distribution draws the prompt or output token count of a workload-spec request; the
    spec selects it with ``input_distribution: {type: NAME, params: {...}}`` (likewise
    ``output_distribution`` and the multimodal and reasoning distributions). Built-in:
    ``gaussian``, ``exponential``, ``pareto_lognormal``, ``constant``, ``empirical``.
    """


@hookspec
def blis_workload_sources() -> list[type]:
    """Return workload source classes (protocol ``blis_core.protocols.WorkloadSource``).

    A workload source builds the requests of a run description's ``workload`` section:
    ``generate`` (a generator or a workload spec) and ``trace`` (a TraceV2 replay) are built in.
    blis_core finds them here, so the engine never imports a workload package.
    """


@hookspec
def blis_disaggregation_deciders() -> list[type]:
    """Return P/D disaggregation decider classes (protocol
    ``blis_core.protocols.DisaggregationDecider``): with prefill and decode pools, each
    admitted request is split into a prefill and a decode sub-request iff ``decide`` says so.
    """


@hookspec
def blis_saturation_detectors() -> list[type]:
    """Return saturation detector classes (protocol ``blis_core.protocols.SaturationDetector``):
    with ``--flow-control``, the gateway queue dispatches an admitted request only while the
    selected detector's ``saturation(state)`` is below 1.
    """


@hookspec
def blis_dispatch_orders() -> list[type]:
    """Return gateway dispatch order classes (protocol ``blis_core.protocols.DispatchOrder``):
    with ``--flow-control``, the order in which queued requests leave the gateway queue.
    """


@hookspec
def blis_autoscalers() -> list[type]:
    """Return autoscaler classes (protocol ``blis_core.protocols.Autoscaler``).

    With node pools, the bundle's ``autoscaler.policy`` selects one (default ``wva``, upstream's
    saturation pipeline); at every scaling tick its ``decide(state)`` returns the replicas to
    add or drain. Built-in: ``wva``, ``threshold`` and the pathological ``oscillator``.
    """


@hookspec
def blis_commands() -> list[type]:
    """Return CLI command classes: each has a ``name`` and a ``command()`` returning the
    ``click`` command (or group) that ``blis NAME`` runs.
    """
