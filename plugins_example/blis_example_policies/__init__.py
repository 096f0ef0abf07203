"""Example third-party plugins for blis: ``shortest-queue`` routing, the ``lifo`` scheduler and
the ``on-off`` arrival process."""

from blis_example_policies.arrivals import OnOffArrival
from blis_example_policies.policies import Lifo, ShortestQueue

__all__ = ["Lifo", "OnOffArrival", "ShortestQueue"]
