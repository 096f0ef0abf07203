"""Hook implementations: blis calls each hook once at start-up to discover the classes."""

from blis_core import hookimpl
from blis_example_policies.arrivals import OnOffArrival
from blis_example_policies.autoscalers import QueueTarget
from blis_example_policies.deciders import LongPrompt
from blis_example_policies.dispatch import ShortestPromptFirst
from blis_example_policies.policies import Lifo, ShortestQueue


@hookimpl
def blis_routing_policies():
    return [ShortestQueue]


@hookimpl
def blis_schedulers():
    return [Lifo]


@hookimpl
def blis_arrival_processes():
    return [OnOffArrival]


@hookimpl
def blis_disaggregation_deciders():
    return [LongPrompt]


@hookimpl
def blis_dispatch_orders():
    return [ShortestPromptFirst]


@hookimpl
def blis_autoscalers():
    return [QueueTarget]
