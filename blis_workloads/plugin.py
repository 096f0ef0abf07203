"""Entry point of the built-in workloads (``[project.entry-points.blis] workloads``)."""

from blis_core.hookspecs import hookimpl
from blis_workloads.cli_synthesis import BUILTIN_GENERATORS
from blis_workloads.distributions import BUILTIN_ARRIVAL_PROCESSES, BUILTIN_LENGTH_DISTRIBUTIONS
from blis_workloads.preview import WorkloadCommands
from blis_workloads.runner import BUILTIN_SOURCES
from blis_workloads.scenarios import SCENARIOS


@hookimpl
def blis_workload_generators():
    return list(BUILTIN_GENERATORS) + list(SCENARIOS)


@hookimpl
def blis_arrival_processes():
    return list(BUILTIN_ARRIVAL_PROCESSES)


@hookimpl
def blis_length_distributions():
    return list(BUILTIN_LENGTH_DISTRIBUTIONS)


@hookimpl
def blis_workload_sources():
    return list(BUILTIN_SOURCES)


@hookimpl
def blis_commands():
    return [WorkloadCommands]
