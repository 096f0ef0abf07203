"""P/D disaggregation deciders: which admitted requests split into prefill and decode."""

from __future__ import annotations

from blis_core.kvcache import prompt_hash_chain
from blis_policies.prefix_index import DEFAULT_LRU_CAPACITY, PrefixCacheIndex

# The router-side index keeps every routed prompt under one key: the decider asks how much of
# a prompt any instance was recently sent, not which one.
GLOBAL_KEY = "__global__"


class NeverDisaggregate:
    """Serve every request on one instance (the default)."""

    name = "never"
    observe = None

    def decide(self, request) -> bool:
        return False


class AlwaysDisaggregate:
    """Split every request into a prefill and a decode sub-request."""

    name = "always"
    observe = None

    def decide(self, request) -> bool:
        return True


class PrefixThreshold:
    """Split a request when its prompt, less the prefix routed recently, exceeds the threshold."""

    name = "prefix-threshold"

    def __init__(self, threshold: int = 512, block_size: int = 16,
                 capacity: int = DEFAULT_LRU_CAPACITY) -> None:
        self.threshold = threshold
        self.block_size = block_size
        self.index = PrefixCacheIndex(capacity)

    def decide(self, request) -> bool:
        if request.num_input == 0:
            return False
        cached = self.index.match_length(prompt_hash_chain(request, self.block_size), GLOBAL_KEY)
        return request.num_input - cached * self.block_size > self.threshold

    def observe(self, request, instance_id: str) -> None:
        self.index.record_blocks(prompt_hash_chain(request, self.block_size), GLOBAL_KEY)
