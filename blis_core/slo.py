"""SLO classes and their priorities (upstream's SLO priority map, cluster-policies.md §3.1).

Used wherever a request's class decides what may be shed: admission policies, tenant budgets.
"""

from __future__ import annotations

# Higher = more important; a priority below 0 marks a sheddable class.
DEFAULT_SLO_PRIORITIES = {"critical": 4, "standard": 3, "batch": -1, "sheddable": -2,
                          "background": -3}
DEFAULT_SLO_PRIORITY = 3  # an empty or unknown class


def slo_priority(slo_class: str, overrides: dict | None = None) -> int:
    """The priority of an SLO class: the override if any, else upstream's default map."""
    if overrides and slo_class in overrides:
        return overrides[slo_class]
    return DEFAULT_SLO_PRIORITIES.get(slo_class, DEFAULT_SLO_PRIORITY)


def is_sheddable(slo_class: str, overrides: dict | None = None) -> bool:
    return slo_priority(slo_class, overrides) < 0
