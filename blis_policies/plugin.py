"""Entry point of the built-in policies (``[project.entry-points.blis] policies``)."""

from blis_core.hookspecs import hookimpl
from blis_policies.admission import AlwaysAdmit
from blis_policies.routing import AlwaysBusiest, LeastLoaded, RoundRobin


@hookimpl
def blis_admission_policies():
    return [AlwaysAdmit]


@hookimpl
def blis_routing_policies():
    return [RoundRobin, LeastLoaded, AlwaysBusiest]
