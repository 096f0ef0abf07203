"""Entry point of the built-in policies (``[project.entry-points.blis] policies``)."""

from blis_core.hookspecs import hookimpl
from blis_policies.admission import AlwaysAdmit, GaieLegacy, RejectAll, TierShed, TokenBucket
from blis_policies.priority import ConstantPriority, InvertedSLOPriority, SLOBasedPriority
from blis_policies.scheduler import FCFS, SJF, PriorityFCFS, ReversePriority
from blis_policies.routing import AlwaysBusiest, LeastLoaded, RoundRobin


@hookimpl
def blis_admission_policies():
    return [AlwaysAdmit, TokenBucket, RejectAll, TierShed, GaieLegacy]


@hookimpl
def blis_priority_policies():
    return [ConstantPriority, SLOBasedPriority, InvertedSLOPriority]


@hookimpl
def blis_schedulers():
    return [FCFS, PriorityFCFS, SJF, ReversePriority]


@hookimpl
def blis_disaggregation_deciders():
    from blis_policies.disaggregation import (AlwaysDisaggregate, NeverDisaggregate,
                                              PrefixThreshold)

    return [NeverDisaggregate, AlwaysDisaggregate, PrefixThreshold]


@hookimpl
def blis_autoscalers():
    from blis_policies.autoscalers import Oscillator, ThresholdScaler, WVAPipeline

    return [WVAPipeline, ThresholdScaler, Oscillator]


@hookimpl
def blis_routing_policies():
    from blis_policies.weighted import WeightedScoring

    return [RoundRobin, LeastLoaded, AlwaysBusiest, WeightedScoring]


@hookimpl
def blis_saturation_detectors():
    from blis_policies.flowcontrol import ConcurrencyDetector, NeverSaturated, UtilizationDetector

    return [NeverSaturated, UtilizationDetector, ConcurrencyDetector]


@hookimpl
def blis_dispatch_orders():
    from blis_policies.flowcontrol import FIFOOrder, PriorityOrder

    return [FIFOOrder, PriorityOrder]
