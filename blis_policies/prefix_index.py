"""The router-side approximate prefix cache of the ``prefix-affinity`` scorer.

Upstream's ``PrefixCacheIndex``: the router never looks at the instances' caches; it remembers,
per instance, the block hashes of the prompts it sent there, in an LRU bounded to
``capacity`` blocks (10000 upstream). Block hashes are the request's prompt key chain (full
blocks only, each key chained on its predecessor), the same keys the KV cache uses, so two
prompts share their first k keys exactly when they share their first k full blocks.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_LRU_CAPACITY = 10_000


class PrefixCacheIndex:
    """Per-instance LRU of block hashes. ``match_length`` reads; only ``record_blocks`` touches."""

    def __init__(self, capacity: int = DEFAULT_LRU_CAPACITY) -> None:
        if capacity <= 0:
            raise ValueError(f"prefix cache index capacity must be > 0, got {capacity}")
        self.capacity = capacity
        # instance id -> OrderedDict of hashes, least recently used first.
        self.instances: dict[str, OrderedDict] = {}

    def match_length(self, hashes, instance_id: str) -> int:
        """Consecutive leading hashes present in the instance's LRU (0 for an unknown
        instance). Does not refresh recency."""
        lru = self.instances.get(instance_id)
        if lru is None:
            return 0
        n = 0
        for h in hashes:
            if h not in lru:
                break
            n += 1
        return n

    def record_blocks(self, hashes, instance_id: str) -> None:
        """The instance now holds these blocks: touch each in order (the first block is touched
        first, so the last one ends up most recent); a new hash evicts the least recent one when
        the LRU is full. An instance's LRU is created on its first record."""
        lru = self.instances.get(instance_id)
        if lru is None:
            lru = self.instances[instance_id] = OrderedDict()
        capacity = self.capacity
        move = lru.move_to_end
        for h in hashes:
            if h in lru:
                move(h)
                continue
            if len(lru) >= capacity:
                lru.popitem(last=False)
            lru[h] = None

    def block_count(self, instance_id: str) -> int:
        lru = self.instances.get(instance_id)
        return 0 if lru is None else len(lru)
