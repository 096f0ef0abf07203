"""The ``weighted`` routing policy: a weighted sum of scorers, argmax, ties by the router stream.

Upstream's WeightedScoring (cluster-policies.md §3.3):

- scorers come from ``name:weight,...`` (``--routing-scorers``); none given means the default
  profile ``precise-prefix-cache:2, queue-depth:1, kv-utilization:1``;
- weights are normalized to sum to 1 (summed in list order);
- per instance, ``score += clamp01(s_i) * w_i``, scorer by scorer;
- the best score wins (strict ``>`` from −1.0); exactly equal scores are tied and one of them
  is drawn with ``rng.intn(len(tied))``;
- then stateful scorers observe the chosen instance, in list order.
"""

from __future__ import annotations

import math
import re

from blis_core.protocols import RoutingDecision
from blis_policies.scorers import DEFAULT_SCORERS, SCORERS, known_scorers, make_scorer

# What Go's strconv.ParseFloat accepts for a decimal weight (plus inf/nan, rejected later).
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf(inity)?|nan)",
                    re.IGNORECASE)


def _error(message: str) -> ValueError:
    return ValueError(f"{message} (known scorers: {known_scorers()})")


def parse_scorers(spec) -> list:
    """``[(name, weight)]`` from ``"name:w,name:w"`` (or from a list of pairs or of
    ``{"name", "weight"}`` mappings, as a policy bundle gives them). Empty means the default
    profile. Unknown or duplicate names and weights that are not finite and > 0 are errors."""
    if spec is None or spec == "" or (not isinstance(spec, str) and len(spec) == 0):
        return list(DEFAULT_SCORERS)
    pairs = []
    if isinstance(spec, str):
        for part in spec.split(","):
            item = part.strip()
            name, sep, weight = item.partition(":")
            if not sep:
                raise _error(f"invalid scorer config {item!r} (expected name:weight)")
            name = name.strip()
            weight = weight.strip()
            if name not in SCORERS:
                raise ValueError(f"unknown scorer {name!r}; valid: {known_scorers()}")
            if not _FLOAT.fullmatch(weight):
                raise _error(f"invalid weight for scorer {name!r}: {weight!r}")
            pairs.append((name, float(weight)))
    else:
        for entry in spec:
            if isinstance(entry, dict):
                pairs.append((entry.get("name", ""), entry.get("weight", 0)))
            else:
                name, weight = entry
                pairs.append((name, weight))
    seen = set()
    out = []
    for name, weight in pairs:
        if name not in SCORERS:
            raise ValueError(f"unknown scorer {name!r}; valid: {known_scorers()}")
        if name in seen:
            raise _error(f"duplicate scorer {name!r}; each scorer may appear at most once")
        seen.add(name)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise _error(f"invalid weight for scorer {name!r}: {weight!r}") from None
        if not (weight > 0 and math.isfinite(weight)):
            raise _error(f"scorer {name!r} weight must be a finite positive number, got {weight:g}")
        out.append((name, weight))
    return out


def normalize_weights(weights) -> list:
    """w_i / Σw, the sum taken in list order."""
    total = 0.0
    for w in weights:
        total += w
    if not total > 0:
        raise ValueError(f"scorer weights sum to {total}; must be positive")
    return [w / total for w in weights]


class WeightedScoring:
    """Weighted sum of scorers (--routing-scorers), argmax, ties broken with the router stream.

    ``scorers`` is ``"name:weight,..."`` (or a list of pairs); empty means upstream's default
    profile ``precise-prefix-cache:2,queue-depth:1,kv-utilization:1``.
    """

    name = "weighted"
    # The scorer names a bundle's routing.scorers may use (read by the bundle validator).
    scorer_names_known = tuple(sorted(SCORERS))

    def __init__(self, scorers="", rng=None, block_size: int = 16) -> None:
        configs = parse_scorers(scorers)
        self.scorer_names = [name for name, _w in configs]
        self.weights = normalize_weights([w for _n, w in configs])
        self.scorers = [make_scorer(name, block_size) for name in self.scorer_names]
        self.observers = [s.observe for s in self.scorers if s.observe is not None]
        self.rng = rng
        # The cluster provides RouterState.cache_query only to policies that ask for it.
        self.uses_cache_query = any(s.uses_cache_query for s in self.scorers)

    def scores(self, request, state) -> list:
        """The composite score of every snapshot, in snapshot order."""
        n = len(state.snapshots)
        total = [0.0] * n
        for name, scorer, weight in zip(self.scorer_names, self.scorers, self.weights):
            values = scorer.score(request, state)
            if len(values) != n:
                raise ValueError(f"scorer {name!r} gave {len(values)} scores for {n} instances")
            # Clamped to [0, 1]; a NaN passes through unclamped, as upstream.
            total = [t + (0.0 if s < 0.0 else 1.0 if s > 1.0 else s) * weight
                     for t, s in zip(total, values)]
        return total

    def route(self, request, state) -> RoutingDecision:
        snapshots = state.snapshots
        if not snapshots:
            raise ValueError("weighted routing: empty snapshots")
        scores = self.scores(request, state)
        best = -1.0
        for s in scores:
            if s > best:
                best = s
        tied = [i for i, s in enumerate(scores) if s == best]
        if not tied:
            # Only NaN scores (a third-party scorer's); upstream would index an empty list.
            tied = [0]
        pick = tied[0]
        if len(tied) > 1 and self.rng is not None:
            pick = tied[self.rng.intn(len(tied))]
        target = snapshots[pick].id
        for observe in self.observers:
            observe(request, target)
        return RoutingDecision(target, f"weighted-scoring (score={best:.3f})", scores)
