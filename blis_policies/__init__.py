"""Built-in policies of blis, registered through the ``blis`` entry-point group like any plugin."""

from blis_policies.admission import AlwaysAdmit
from blis_policies.routing import AlwaysBusiest, LeastLoaded, RoundRobin

__all__ = ["AlwaysAdmit", "AlwaysBusiest", "LeastLoaded", "RoundRobin"]
