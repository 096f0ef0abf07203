"""blis' invariants, run against this package's policies: one import, one class.

Admission and priority are left at None, so they are drawn from every registered policy:
``shortest-queue`` and ``lifo`` meet all of them.
"""

from blis_core.testing import InvariantSuite


class TestExamplePolicies(InvariantSuite):
    routing = ["shortest-queue"]
    scheduler = ["lifo"]
