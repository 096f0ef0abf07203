"""An arrival process: a workload-spec client picks it with ``arrival: {process: on-off, ...}``.

The class follows ``blis_core.protocols.ArrivalProcess``: ``params`` declares the extra keys of
the ``arrival:`` mapping (``None`` = required), ``check`` validates their values before anything
is generated, the constructor receives the client's rate, and ``sample_iat`` draws every
inter-arrival time from the client's own Go-compatible generator.
"""

from __future__ import annotations


class OnOffArrival:
    """Poisson arrivals during on-periods of on_us µs, none during off-periods of off_us µs."""

    name = "on-off"
    params = {"on_us": None, "off_us": None}

    def __init__(self, rate_per_us: float, cv: float | None = None, *, on_us: float,
                 off_us: float) -> None:
        # cv is accepted (every process may carry one) but unused: the bursts are the variance.
        self.on_us = int(on_us)
        self.off_us = int(off_us)
        # The same long-run rate as the client's share: all of it arrives while on.
        self.rate_on = rate_per_us * (self.on_us + self.off_us) / self.on_us
        self.active = 0         # µs of on-time elapsed at the last arrival
        self.clock = 0          # the client's clock: the sum of the returned IATs

    @classmethod
    def check(cls, cv: float | None, params: dict[str, float]) -> None:
        for key in ("on_us", "off_us"):
            value = params[key]
            if value < 1 or value != int(value):
                raise ValueError(f"{key}: must be a whole number of µs >= 1, got {value:g}")

    def sample_iat(self, rng) -> int:
        # Exponential gaps in on-time only, then mapped to wall time by inserting the
        # off-periods: on-time a lies in period a // on_us, at offset a % on_us.
        gap = int(rng.exp_float64() / self.rate_on)
        self.active += gap if gap >= 1 else 1
        on, off = self.on_us, self.off_us
        at = self.active + (self.active // on) * off
        iat = at - self.clock
        self.clock = at
        return iat
