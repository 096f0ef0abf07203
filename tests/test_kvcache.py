"""A prefill's blocks taken in bulk leave the block store exactly as upstream's one block at a
time does: free-list order, every block's fields, the key map (upstream drops a reused block's
old key unconditionally, so which mapping survives can depend on the order) and the record of
changed keys kept for stale routers.
"""

from __future__ import annotations

import copy
import random

from hypothesis import given, settings, strategies as st

from blis_core.kvcache import KVCache

BS = 4


def block_by_block(kv: KVCache, own: list, n: int, new_keys, origin: int, tokens: int) -> None:
    """Upstream's loop: pop the head of the free list (dropping its old key), then fill it and
    key it if it is full, one block after the other."""
    for i in range(n):
        b = kv._pop_free()
        kv.cache_misses += 1
        kv.fill[b] = min(BS, tokens - i * BS)
        kv.origin[b] = origin + i * BS
        kv.refcount[b] = 1
        if i < len(new_keys):
            key = new_keys[i]
            kv.key[b] = key
            if kv.stale_keys is not None and key not in kv.stale_keys:
                kv.stale_keys[key] = key in kv.key_to_block
            kv.key_to_block[key] = b
        own.append(b)


def used_store(rnd: random.Random, total: int, used: int, key_space: int, stale: bool) -> KVCache:
    """A store whose first ``used`` blocks were used and released in a random order, with keys
    drawn from a small space so that old keys collide with each other and with new ones."""
    kv = KVCache(total, BS)
    kv.fresh = used
    order = list(range(used))
    rnd.shuffle(order)
    for b in order:
        kv.recycled[b] = None
        if rnd.random() < 0.8:
            key = rnd.randrange(key_space)
            kv.key[b] = key
            kv.key_to_block[key] = b     # a later block with the same key takes the mapping over
    kv.stale_keys = None
    if stale:
        kv.stale_keys = {k: rnd.random() < 0.5
                         for k in rnd.sample(range(key_space), min(3, key_space))}
    return kv


def state(kv: KVCache) -> tuple:
    return (kv.fresh, list(kv.recycled), kv.free_count, kv.cache_misses, kv.fill, kv.origin,
            kv.refcount, kv.key, kv.key_to_block, kv.stale_keys)


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 12), st.integers(1, 10),
       st.integers(1, 30), st.booleans(), st.integers(0, BS - 1))
def test_bulk_prefill_blocks_equal_block_by_block(rnd, used, n, key_space, stale, partial):
    total = used + rnd.randrange(0, 6)
    n = min(n, total)
    if n == 0:
        return
    kv = used_store(rnd, total, used, key_space, stale)
    tokens = n * BS - (partial if n * BS - partial > (n - 1) * BS else 0)
    keyed = n if tokens == n * BS else n - 1
    new_keys = [rnd.randrange(key_space) for _ in range(rnd.randrange(0, keyed + 1))]
    reference = copy.deepcopy(kv)
    own, reference_own = [7], [7]
    origin = 8 * BS
    kv._take_blocks(own, n, new_keys, origin, tokens)
    block_by_block(reference, reference_own, n, new_keys, origin, tokens)
    assert own == reference_own
    assert state(kv) == state(reference)


def test_an_old_key_reused_by_an_earlier_new_block_is_dropped_as_upstream_drops_it():
    # Block 0 comes off the free list first and takes key 5; block 1 still carries old key 5,
    # and dropping it afterwards removes the mapping block 0 was just given.
    kv = KVCache(2, BS)
    kv.fresh = 2
    kv.recycled[0] = None
    kv.recycled[1] = None
    kv.key[1] = 5
    kv.key_to_block[5] = 1
    kv._take_blocks([], 2, [5, 6], 0, 2 * BS)
    assert kv.key_to_block == {6: 1}
    assert kv.key == [5, 6]
