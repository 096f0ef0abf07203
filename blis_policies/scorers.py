"""The scorers of the ``weighted`` routing policy (upstream's 10 at 4e179804).

A scorer rates every routable instance for one request: ``score(request, state)`` returns one
float per snapshot of ``state.snapshots``, in snapshot order, nominally in [0, 1] (the policy
clamps anyway). A stateful scorer also has ``observe(request, target_id)``, called after the
decision with the chosen instance. Formulas and float operations follow upstream exactly
(features-head.md §3, cluster-policies.md §3.3): ties between instances are decided by exact
float equality, so the order of operations matters.
"""

from __future__ import annotations

from blis_core.kvcache import prompt_hash_chain
from blis_policies.prefix_index import DEFAULT_LRU_CAPACITY, PrefixCacheIndex

LOAD_AWARE_QUEUE_THRESHOLD = 128


def _inverted_min_max(raw: list) -> list:
    """(max − x)/(max − min); all equal → 1.0. Upstream starts min at MaxInt and max at 0."""
    lo = min(raw)
    hi = max(max(raw), 0)
    if hi == lo:
        return [1.0] * len(raw)
    span = hi - lo
    return [(hi - x) / span for x in raw]


class _Stateless:
    """A scorer that is a pure function of the snapshots."""

    observe = None
    uses_cache_query = False

    def __init__(self, block_size: int = 16) -> None:
        pass


class QueueDepth(_Stateless):
    """Min-max over waiting requests: the shortest queue scores 1, the longest 0."""

    name = "queue-depth"

    def score(self, request, state) -> list:
        return _inverted_min_max([s.queue_depth for s in state.snapshots])


class KVUtilization(_Stateless):
    """1 − KV utilization."""

    name = "kv-utilization"

    def score(self, request, state) -> list:
        return [1.0 - s.kv_utilization for s in state.snapshots]


class LoadBalance(_Stateless):
    """1 / (1 + effective load), effective load = queued + running + in flight."""

    name = "load-balance"

    def score(self, request, state) -> list:
        return [1.0 / (1.0 + float(s.queue_depth + s.batch_size + s.in_flight_requests))
                for s in state.snapshots]


class ActiveRequests(_Stateless):
    """(max in-flight − in-flight) / max in-flight; no in-flight requests → 1."""

    name = "active-requests"

    def score(self, request, state) -> list:
        counts = [s.in_flight_requests for s in state.snapshots]
        top = max(max(counts), 0)
        return [1.0 if c == 0 or top == 0 else (top - c) / top for c in counts]


class RunningRequests(_Stateless):
    """Min-max over running requests (batch size); all equal → 1."""

    name = "running-requests"

    def score(self, request, state) -> list:
        return _inverted_min_max([s.batch_size for s in state.snapshots])


class LoadAware(_Stateless):
    """Empty queue → 0.5, else 0.5·(1 − min(queue, 128)/128) (llm-d's load-aware scorer)."""

    name = "load-aware"

    def score(self, request, state) -> list:
        out = []
        for s in state.snapshots:
            depth = s.queue_depth
            if depth == 0:
                out.append(0.5)
            else:
                depth = min(depth, LOAD_AWARE_QUEUE_THRESHOLD)
                out.append(0.5 * (1.0 - depth / LOAD_AWARE_QUEUE_THRESHOLD))
        return out


class VllmDP(_Stateless):
    """vLLM's data-parallel balancer: min-max over 4·queued + running."""

    name = "vllm-dp"

    def score(self, request, state) -> list:
        return _inverted_min_max([s.queue_depth * 4 + s.batch_size for s in state.snapshots])


class PrefixAffinity:
    """Share of the prompt's full blocks that the router itself last sent to each instance
    (router-side LRU index, 10000 blocks per instance); a prompt shorter than a block → 0."""

    name = "prefix-affinity"
    uses_cache_query = False

    def __init__(self, block_size: int = 16, capacity: int = DEFAULT_LRU_CAPACITY) -> None:
        self.block_size = block_size
        self.index = PrefixCacheIndex(capacity)

    def _hashes(self, request) -> list:
        return prompt_hash_chain(request, self.block_size)

    def score(self, request, state) -> list:
        hashes = self._hashes(request)
        total = len(hashes)
        if total == 0:
            return [0.0] * len(state.snapshots)
        match = self.index.match_length
        return [match(hashes, s.id) / total for s in state.snapshots]

    def observe(self, request, target_id: str) -> None:
        self.index.record_blocks(self._hashes(request), target_id)


class PrecisePrefixCache:
    """Min-max over the cached prefix blocks each instance's GPU cache holds for the prompt
    (as the router sees it: ``state.cache_query``); all equal → 1; no cache view → 1."""

    name = "precise-prefix-cache"
    observe = None
    uses_cache_query = True

    def __init__(self, block_size: int = 16) -> None:
        pass

    def score(self, request, state) -> list:
        snapshots = state.snapshots
        query = state.cache_query
        if request is None or query is None:
            return [1.0] * len(snapshots)
        counts = [query(s.id, request) for s in snapshots]
        lo = min(counts)
        hi = max(max(counts), 0)
        if hi == lo:
            return [1.0] * len(counts)
        span = hi - lo
        return [(c - lo) / span for c in counts]


class NoHitLRU:
    """Cold prompts (no instance has any of its blocks cached) go to the least recently used
    instance: never-used instances first, then used ones oldest first, scored 1 − rank/(N−1).
    Warm prompts score 0.5 everywhere. Only cold decisions update the LRU."""

    name = "no-hit-lru"
    uses_cache_query = True

    def __init__(self, block_size: int = 16) -> None:
        self.order: list = []          # instance ids, most recently used first
        self.last_warm = False
        self.last_request = None

    def score(self, request, state) -> list:
        snapshots = state.snapshots
        query = state.cache_query
        if request is None or query is None:
            self.last_warm = True
            self.last_request = None
            return [0.5] * len(snapshots)
        self.last_warm = False
        self.last_request = request.id
        for s in snapshots:
            if query(s.id, request) > 0:
                self.last_warm = True
                break
        if self.last_warm:
            return [0.5] * len(snapshots)
        total = len(snapshots)
        if total <= 1:
            return [1.0] * total
        current = {s.id for s in snapshots}
        self.order = [i for i in self.order if i in current]
        used = set(self.order)
        scores = {}
        rank = 0
        for s in snapshots:
            if s.id not in used:
                scores[s.id] = 1.0 - rank / (total - 1)
                rank += 1
        for inst_id in reversed(self.order):
            scores[inst_id] = 1.0 - rank / (total - 1)
            rank += 1
        return [scores[s.id] for s in snapshots]

    def observe(self, request, target_id: str) -> None:
        if request is None or self.last_warm or request.id != self.last_request:
            return
        order = self.order
        if target_id in order:
            order.remove(target_id)
        order.insert(0, target_id)


SCORERS = {cls.name: cls for cls in (
    PrefixAffinity, PrecisePrefixCache, NoHitLRU, QueueDepth, KVUtilization, LoadBalance,
    ActiveRequests, RunningRequests, LoadAware, VllmDP)}

# Upstream's default profile when no scorer is configured (llm-d parity).
DEFAULT_SCORERS = (("precise-prefix-cache", 2.0), ("queue-depth", 1.0), ("kv-utilization", 1.0))


def known_scorers() -> str:
    return ", ".join(sorted(SCORERS))


def make_scorer(name: str, block_size: int = 16):
    """A fresh scorer object (stateful scorers keep their state per policy object)."""
    try:
        cls = SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; valid: {known_scorers()}") from None
    return cls(block_size)
