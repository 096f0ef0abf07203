"""Priority policies: each waiting request's priority, recomputed at every step (§3.4).

Higher = more urgent. The instance calls ``compute(request, clock)`` for every request in its
wait queue at the start of each step (``clock`` is the step time), before the scheduler orders
the queue. No policy here reads the SLO class or draws random numbers.
"""

from __future__ import annotations

# Upstream's age weight: priority grows by 1 per second (1e6 ticks) of waiting.
AGE_WEIGHT = 1e-6


class ConstantPriority:
    """Every request has priority 0 (upstream's default; costs nothing per step)."""

    name = "constant"
    # The engine skips a no-op policy: request priorities stay at their initial 0.0.
    noop = True

    def compute(self, request, clock: int) -> float:
        return 0.0


class SLOBasedPriority:
    """Priority grows with age: 1e-6 * (now - arrival), so older requests are more urgent."""

    name = "slo-based"

    def compute(self, request, clock: int) -> float:
        return 0.0 + AGE_WEIGHT * float(clock - request.arrival_time)


class InvertedSLOPriority:
    """Pathological template: priority falls with age, -1e-6 * (now - arrival)."""

    name = "inverted-slo"
    pathological = True

    def compute(self, request, clock: int) -> float:
        return 0.0 - AGE_WEIGHT * float(clock - request.arrival_time)
