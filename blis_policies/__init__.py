"""Built-in policies of blis, registered through the ``blis`` entry-point group like any plugin."""

from blis_policies.admission import AlwaysAdmit, GaieLegacy, RejectAll, TierShed, TokenBucket
from blis_policies.priority import ConstantPriority, InvertedSLOPriority, SLOBasedPriority
from blis_policies.routing import AlwaysBusiest, LeastLoaded, RoundRobin
from blis_policies.scheduler import FCFS, SJF, PriorityFCFS, ReversePriority

__all__ = ["AlwaysAdmit", "AlwaysBusiest", "ConstantPriority", "FCFS", "GaieLegacy",
           "InvertedSLOPriority", "LeastLoaded", "PriorityFCFS", "RejectAll", "ReversePriority",
           "RoundRobin", "SJF", "SLOBasedPriority", "TierShed", "TokenBucket"]
