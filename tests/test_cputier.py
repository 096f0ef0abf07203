"""The CPU tier's lazy and stamped mirroring equal upstream's block-by-block LRU, step for step.

A random batch evolves (admissions, blocks filling, departures, reload touches) and after each
mirror the tier's store and eviction counts and its contents must equal a plain ordered-dict
LRU touched block by block, which is upstream's definition.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from blis_core.cputier import CpuTier, StampedLru

BS = 4


class ReferenceTier:
    """Upstream's mirror, literally."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.lru: OrderedDict = OrderedDict()
        self.stores = 0
        self.evictions = 0

    def mirror(self, batch, kv) -> None:
        for req in batch:
            for b in req.blocks or ():
                k = kv.key[b]
                if k is None or kv.fill[b] != kv.block_size:
                    continue
                if k in self.lru:
                    self.lru.move_to_end(k)
                else:
                    if len(self.lru) >= self.capacity:
                        self.lru.popitem(last=False)
                        self.evictions += 1
                    self.lru[k] = True
                    self.stores += 1

    def touch(self, k) -> None:
        if k in self.lru:
            self.lru.move_to_end(k)


def contents(tier: CpuTier) -> set:
    return set(tier.active) | set(tier.old) if tier.lazy else set(tier.contents())


ops = st.lists(st.tuples(st.sampled_from(["admit", "grow", "grow", "leave", "touch", "step",
                                          "step"]),
                         st.integers(0, 10**6)), min_size=1, max_size=150)


@settings(max_examples=600, deadline=None)
@given(st.integers(1, 8), st.integers(1, 3), ops, st.booleans())
def test_lazy_mirror_equals_block_by_block_lru(capacity, groups, operations, compact):
    # ``compact``: the stamped LRU forgets stale stamps at every mirror, not after thousands
    previous = StampedLru.slack
    StampedLru.slack = 0 if compact else previous
    try:
        check_against_reference(capacity, groups, operations)
    finally:
        StampedLru.slack = previous


def check_against_reference(capacity, groups, operations):
    kv = SimpleNamespace(key=[], fill=[], block_size=BS)
    tier = CpuTier(capacity, kv)
    reference = ReferenceTier(capacity)
    batch: list = []
    next_key = [10_000]
    seq = [0]

    def new_block(k):
        kv.key.append(k)
        kv.fill.append(BS)
        return len(kv.key) - 1

    def fresh_key():
        next_key[0] += 1
        return next_key[0]

    for op, value in operations:
        if op == "admit" and len(batch) < 8:
            group = value % groups
            # a shared prefix (keys equal across the group) followed by unique blocks
            blocks = [new_block(group * 100 + i) for i in range(value % 5 // 3)]
            blocks += [new_block(fresh_key()) for _ in range(value % 3)]
            seq[0] += 1
            req = SimpleNamespace(blocks=blocks, state="running", batch_seq=seq[0], mirrored=0,
                                  mirrored_keys=[])
            batch.append(req)
            tier.grew(req)
        elif op == "grow" and batch:
            # As in the engine, only a request's last block can be partial: fill it, or
            # start a new (partial or full) block.
            req = batch[value % len(batch)]
            if req.blocks and kv.fill[req.blocks[-1]] < BS:
                kv.fill[req.blocks[-1]] = BS
            else:
                b = new_block(fresh_key())
                kv.fill[b] = BS if value % 2 else BS - 1
                req.blocks.append(b)
            tier.grew(req)
        elif op == "leave" and batch:
            req = batch.pop(value % len(batch))
            tier.released(req, req.blocks)
            req.state = "completed"
            req.blocks = None
        elif op == "touch" and kv.key:
            k = kv.key[value % len(kv.key)]
            if k in reference.lru:
                assert k in tier
                tier.touch(k)
                reference.touch(k)
            else:
                assert k not in tier
        elif op == "step":
            tier.mirror(batch)
            reference.mirror(batch, kv)
            assert (tier.stores, tier.evictions) == (reference.stores, reference.evictions)
            assert contents(tier) == set(reference.lru)
            if tier.lazy:
                # the untouched old keys are exactly the least recent ones, in order
                old = list(tier.old)
                assert list(reference.lru)[:len(old)] == old
            else:
                assert tier.contents() == list(reference.lru)
                assert len(tier) == len(reference.lru)
    tier.mirror(batch)
    reference.mirror(batch, kv)
    assert (tier.stores, tier.evictions) == (reference.stores, reference.evictions)
    assert contents(tier) == set(reference.lru)


def test_eviction_never_guesses_the_order_of_keys_it_does_not_track():
    # x and a are mirrored every step; t, an old key, was just touched by a reload, so it is
    # the most recent of all. x's request then grows a block n. Upstream touches x, stores n
    # (evicting a, now the least recent), then stores a again (evicting t): two stores and two
    # evictions, where evicting t first would save one of each.
    kv = SimpleNamespace(key=[], fill=[], block_size=BS)
    tier = CpuTier(3, kv)
    reference = ReferenceTier(3)
    for k in ("t", "x", "a"):
        kv.key.append(k)
        kv.fill.append(BS)
    old = SimpleNamespace(blocks=[0], state="running", batch_seq=0, mirrored=0,
                          mirrored_keys=[])
    tier.grew(old)
    tier.mirror([old])
    reference.mirror([old], kv)
    tier.released(old, old.blocks)
    requests = [SimpleNamespace(blocks=[i], state="running", batch_seq=i, mirrored=0,
                                mirrored_keys=[])
                for i in (1, 2)]
    for req in requests:
        tier.grew(req)
    for _ in range(2):
        tier.mirror(requests)
        reference.mirror(requests, kv)
    tier.touch("t")
    reference.touch("t")
    kv.key.append("n")
    kv.fill.append(BS)
    requests[0].blocks.append(3)
    tier.grew(requests[0])
    tier.mirror(requests)
    reference.mirror(requests, kv)
    assert (tier.stores, tier.evictions) == (reference.stores, reference.evictions) == (5, 2)
    assert contents(tier) == set(reference.lru) == {"x", "n", "a"}


def _maybe_touch(rnd, probability: float, tier, reference) -> None:
    """A reload touch of a random key of the tier, in both the tier and the reference."""
    if reference.lru and rnd.random() < probability:
        k = rnd.choice(list(reference.lru))
        tier.touch(k)
        reference.touch(k)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 120), st.randoms(use_true_random=False))
def test_thrashing_batches_equal_block_by_block_lru(capacity, rnd):
    # Batches of a few dozen requests whose keys outnumber the tier: prefixes shared within a
    # group (a trie, as prefix-cache keys are), unique tails that grow, departures, admissions
    # and reload touches of keys that are still cached.
    kv = SimpleNamespace(key=[], fill=[], block_size=BS)
    tier = CpuTier(capacity, kv)
    reference = ReferenceTier(capacity)
    batch: list = []
    counter = [0]

    def block(k):
        kv.key.append(k)
        kv.fill.append(BS)
        return len(kv.key) - 1

    def admit():
        counter[0] += 1
        group = rnd.randrange(4)
        shared = [block(("group", group, i)) for i in range(rnd.randrange(7))]
        tail = [block(("own", counter[0], i)) for i in range(rnd.randrange(1, 25))]
        req = SimpleNamespace(blocks=shared + tail, state="running", batch_seq=counter[0],
                              mirrored=0, mirrored_keys=[])
        batch.append(req)
        tier.grew(req)

    for _ in range(rnd.randrange(10, 40)):
        admit()
    for _step in range(40):
        for req in rnd.sample(batch, min(len(batch), rnd.randrange(6))):
            req.blocks.append(block(("own", req.batch_seq, len(req.blocks))))
            tier.grew(req)
        if batch and rnd.random() < 0.3:
            req = batch.pop(rnd.randrange(len(batch)))
            tier.released(req, req.blocks)
            req.state, req.blocks = "completed", None
        if rnd.random() < 0.3:
            admit()
        _maybe_touch(rnd, 0.3, tier, reference)
        tier.mirror(batch)
        reference.mirror(batch, kv)
        assert (tier.stores, tier.evictions) == (reference.stores, reference.evictions)
        assert contents(tier) == set(reference.lru)
        if not tier.lazy:
            assert tier.contents() == list(reference.lru)


def run_thrashing_scenario(capacity, rnd, steps=60):
    """Batches whose private tails outnumber the tier, sharing trie-shaped prefixes, with
    growth, departures, same-step readmissions (a preempted request's keys again), admissions
    and the odd reload touch; checked against the literal LRU after every mirror. Returns how
    many mirrors the thrashing form decided."""
    kv = SimpleNamespace(key=[], fill=[], block_size=BS)
    tier = CpuTier(capacity, kv)
    reference = ReferenceTier(capacity)
    batch: list = []
    counter = [0]
    decided = 0

    def block(k):
        kv.key.append(k)
        kv.fill.append(BS)
        return len(kv.key) - 1

    def admit(keys=None):
        counter[0] += 1
        if keys is None:
            group = rnd.randrange(3)
            depth = rnd.randrange(6)
            # a trie: a group's prefix, then a branch of it shared by fewer requests
            keys = [("group", group, i) for i in range(depth)]
            if depth and rnd.random() < 0.5:
                keys += [("branch", group, depth, i) for i in range(rnd.randrange(1, 3))]
            keys += [("own", counter[0], i) for i in range(rnd.randrange(2, 16))]
        req = SimpleNamespace(blocks=[block(k) for k in keys], state="running",
                              batch_seq=counter[0], mirrored=0, mirrored_keys=[], keys=keys)
        batch.append(req)
        tier.grew(req)

    def leave(req):
        batch.remove(req)
        tier.released(req, req.blocks)
        req.state, req.blocks = "completed", None

    for _ in range(rnd.randrange(4, 20)):
        admit()
    for _step in range(steps):
        for req in rnd.sample(batch, min(len(batch), rnd.randrange(4))):
            k = ("own", req.batch_seq, "grown", len(req.blocks))
            req.keys.append(k)
            req.blocks.append(block(k))
            tier.grew(req)
        roll = rnd.random()
        if batch and roll < 0.15:
            leave(rnd.choice(batch))
        elif batch and roll < 0.25:
            req = batch[-1]  # preempted, and admitted again at once with the same keys
            leave(req)
            admit(list(req.keys))
        if rnd.random() < 0.2:
            admit()
        _maybe_touch(rnd, 0.05, tier, reference)
        thrashing = tier.thrash
        tier.mirror(batch)
        reference.mirror(batch, kv)
        decided += thrashing and tier.thrash
        assert (tier.stores, tier.evictions) == (reference.stores, reference.evictions)
        assert contents(tier) == set(reference.lru)
        if not tier.lazy:
            assert tier.contents() == list(reference.lru)
    return decided


@settings(max_examples=150, deadline=None)
@given(st.integers(4, 80), st.randoms(use_true_random=False))
def test_thrashing_form_equals_block_by_block_lru(capacity, rnd):
    run_thrashing_scenario(capacity, rnd)


def test_thrashing_form_decides_most_mirrors_of_a_thrashing_batch():
    import random
    decided = sum(run_thrashing_scenario(24, random.Random(seed)) for seed in range(20))
    assert decided > 300
