"""Example third-party policies for blis: ``shortest-queue`` routing and the ``lifo`` scheduler."""

from blis_example_policies.policies import Lifo, ShortestQueue

__all__ = ["Lifo", "ShortestQueue"]
