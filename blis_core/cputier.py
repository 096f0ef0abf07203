"""The CPU tier of the tiered KV cache: an LRU of prefix-cache keys, mirrored every step.

Upstream touches every full block of every running request in the CPU LRU after every step:
tens of millions of operations per run, nearly all of them hits that change nothing. This
module computes exactly the same LRU (contents, order, store and eviction counts) while doing
work only for what changed since the previous step, whenever that is provably equivalent.

Two representations, switched between automatically:

* **lazy** (the common case): every key referenced by the running batch ("active") is in the
  CPU tier. Re-touching them only reorders keys among themselves, which cannot matter while no
  eviction reaches them; so the tier is kept as ``active`` (key -> references) plus ``old``,
  an ordered dict of the other CPU keys with the least recently used first. A step only
  processes blocks that became full since the previous mirror and requests that left.
* **exact**: the literal LRU, accessed key by key in batch and block order as upstream does,
  for any step in which an eviction could reach a key whose exact recency the lazy form does
  not know (the batch references more keys than the tier holds, or too few untouched old
  keys remain). When the tier thrashes (every step references more keys than it holds), each
  request's keys were mostly evicted since the previous step, so the LRU is a ``StampedLru``
  in which a request's run of keys that all miss is stored and its evictions counted in a
  few calls; only hits (typically a prefix shared with an earlier request) go key by key.
  The reference mode (``lazy=False``) keeps upstream's block-by-block ordered dict.

Requests carry three fields for this: ``batch_seq`` (their position in batch order, assigned
at admission), ``mirrored`` (how many of their blocks the previous mirror covered) and
``mirrored_keys`` (those blocks' keys).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from itertools import chain, repeat


class StampedLru:
    """An LRU of keys in which a run of keys that all miss costs a few calls, not one per key.

    Every access takes the next stamp of a counter and a key's stamp is its last access, so
    the LRU holds the ``capacity`` most recent live stamps: those at or after ``front``.
    ``alive[s - base]`` says whether stamp s is still some key's last access. An evicted key
    keeps its (now stale) stamp below ``front``, so evicting n keys is moving ``front`` past
    n live stamps, and storing a run is one dict update. Supports what ``CpuTier`` asks of
    its exact LRU: ``in``, ``len``, ``move_to_end`` (a hit) and iteration, oldest first.
    """

    slack = 4096  # stale stamps tolerated before compacting (a test sets 0)

    def __init__(self, capacity: int, order=()) -> None:
        self.capacity = capacity
        self.stamp = {k: s for s, k in enumerate(order)}
        self.size = self.clock = len(self.stamp)
        self.alive = bytearray(b"\x01") * self.size
        self.base = 0
        self.front = 0

    def __contains__(self, key) -> bool:
        return self.stamp.get(key, -1) >= self.front

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        front = self.front
        stamp = self.stamp
        return iter(sorted((k for k, s in stamp.items() if s >= front), key=stamp.__getitem__))

    def move_to_end(self, key) -> None:
        """Access a key that is in the LRU."""
        self.alive[self.stamp[key] - self.base] = 0
        self.stamp[key] = self.clock
        self.clock += 1
        self.alive.append(1)

    def _evict(self, count: int) -> None:
        alive = self.alive
        pos = self.front - self.base
        while count:
            end = pos + count
            count = alive.count(0, pos, end)  # dead stamps passed: that many more to go
            pos = end
        self.front = pos + self.base

    def _compact(self) -> None:
        """Forget stamps below the front (bounded memory, amortized over many stores)."""
        front = self.front
        slack = self.slack
        if len(self.stamp) > 4 * self.capacity + slack:
            self.stamp = {k: s for k, s in self.stamp.items() if s >= front}
        if front - self.base > 4 * self.capacity + 16 * slack:
            del self.alive[:front - self.base]
            self.base = front

    def mirror(self, runs) -> tuple[int, int, int]:
        """Access each run's keys in order; returns (stores, evictions, distinct keys).

        The distinct count is exact when it is at most the capacity: a key re-accessed in the
        same mirror is then never evicted in between, so its second access is seen as a hit
        of this mirror. Otherwise it is only known to exceed the capacity.
        """
        self._compact()
        start = self.clock
        repeats = 0
        capacity = self.capacity
        stamp = self.stamp
        get = stamp.get
        alive = self.alive
        stores = evictions = 0
        for run in runs:
            n = len(run)
            i = 0
            # Leading hits (typically a prefix shared with an earlier request of the batch).
            while i < n:
                k = run[i]
                s = get(k, -1)
                if s < self.front:
                    break
                if s >= start:
                    repeats += 1
                alive[s - self.base] = 0
                stamp[k] = self.clock
                self.clock += 1
                alive.append(1)
                i += 1
            if i == n:
                continue
            rest = run[i:] if i else run
            m = n - i
            front = self.front
            if (m <= capacity and max(map(get, rest, repeat(-1, m))) < front
                    and len(set(rest)) == m):
                # Every access misses; each eviction takes an older key, never one of the
                # run's own (the run fits).
                over = self.size + m - capacity
                if over > 0:
                    self._evict(over)
                    evictions += over
                    self.size = capacity
                else:
                    self.size += m
                stamp.update(zip(rest, range(self.clock, self.clock + m)))
                self.clock += m
                alive += b"\x01" * m
                stores += m
                continue
            for k in rest:
                s = get(k, -1)
                if s >= self.front:
                    if s >= start:
                        repeats += 1
                    alive[s - self.base] = 0
                else:
                    stores += 1
                    if self.size >= capacity:
                        self._evict(1)
                        evictions += 1
                    else:
                        self.size += 1
                stamp[k] = self.clock
                self.clock += 1
                alive.append(1)
        return stores, evictions, self.clock - start - repeats


class CpuTier:
    def __init__(self, capacity: int, kv, lazy: bool = True) -> None:
        self.capacity = capacity
        self.kv = kv
        self.stores = 0            # upstream mirrorCount
        self.evictions = 0
        self.allow_lazy = lazy     # False: always block by block (the reference behaviour)
        self.lazy = lazy
        self.exact: OrderedDict = OrderedDict()
        self.old: OrderedDict = OrderedDict()
        self.active: dict = {}
        self.marked: set = set()   # keys in ``old`` more recent than the untouched ones
        self.dirty: list = []      # requests whose block lists grew since the last mirror
        self.departed: list = []   # (batch_seq, keys) of requests released since the last mirror
        self.touched: list = []    # keys touched by reloads since the last mirror

    # -- queries and touches (reload path) --------------------------------------------------
    def __contains__(self, key) -> bool:
        if self.lazy:
            return key in self.active or key in self.old
        return key in self.exact

    def touch(self, key) -> None:
        if not self.lazy:
            self.exact.move_to_end(key)
            return
        if key in self.old:
            self.old.move_to_end(key)
            self.marked.add(key)
        self.touched.append(key)

    def __len__(self) -> int:
        return len(self.active) + len(self.old) if self.lazy else len(self.exact)

    # -- bookkeeping hooks called by the block store -----------------------------------------
    def grew(self, req) -> None:
        self.dirty.append(req)

    def released(self, req, blocks) -> None:
        if req.mirrored and self.lazy:
            self.departed.append((req.batch_seq, req.mirrored_keys))
        req.mirrored = 0
        req.mirrored_keys = []

    # -- the per-step mirror -------------------------------------------------------------------
    def mirror(self, batch) -> None:
        if self.lazy and self._mirror_lazy():
            return
        self._mirror_exact(batch)

    def _new_keys(self):
        """Keys of blocks that became full since the last mirror, in batch and block order,
        and per grown request (request, blocks now covered, its new keys)."""
        kv = self.kv
        key = kv.key
        fill = kv.fill
        bs = kv.block_size
        seen = set()
        grown = []
        for req in self.dirty:
            if id(req) not in seen and req.state == "running" and req.blocks:
                seen.add(id(req))
                grown.append(req)
        grown.sort(key=lambda r: r.batch_seq)
        found = []
        advanced = []
        for req in grown:
            blocks = req.blocks
            i = req.mirrored
            n = len(blocks)
            keys = []
            while i < n and fill[blocks[i]] == bs:
                k = key[blocks[i]]
                if k is not None:
                    keys.append(k)
                i += 1
            found += keys
            advanced.append((req, i, keys))
        return found, advanced

    @staticmethod
    def _advance(advanced) -> None:
        for req, covered, keys in advanced:
            req.mirrored = covered
            if keys:
                req.mirrored_keys += keys

    def _flush_departures(self) -> None:
        """Requests that left the batch: keys nobody references any more become old, ordered by
        their last access (the previous mirror), more recent than the untouched old keys."""
        active = self.active
        old = self.old
        for _seq, keys in sorted(self.departed, key=lambda d: d[0]):
            for k in keys:
                refs = active.get(k)
                if refs is None:
                    continue
                if refs > 1:
                    active[k] = refs - 1
                else:
                    del active[k]
                    old[k] = True
                    self.marked.add(k)
        for k in self.touched:  # reload touches are more recent than the previous mirror
            if k in old:
                old.move_to_end(k)

    def _mirror_lazy(self) -> bool:
        new_keys, advanced = self._new_keys()
        untouched = len(self.old) - len(self.marked)
        # Each new key consumes at most one untouched old key (a hit moves it, a miss evicts
        # the oldest), and the active set must still fit: then no eviction can reach a key
        # whose exact recency the lazy form does not track.
        if len(self.active) + len(new_keys) > self.capacity or untouched < len(new_keys):
            return False
        self._flush_departures()
        active = self.active
        old = self.old
        capacity = self.capacity
        for k in new_keys:
            refs = active.get(k)
            if refs is not None:
                active[k] = refs + 1
            elif k in old:
                del old[k]
                active[k] = 1
            else:
                self.stores += 1
                if len(old) + len(active) >= capacity:
                    old.popitem(last=False)
                    self.evictions += 1
                active[k] = 1
        self._advance(advanced)
        self.marked.clear()
        self.dirty.clear()
        self.departed.clear()
        self.touched.clear()
        return True

    def _materialize(self, batch) -> OrderedDict:
        """The exact LRU order implied by the lazy form, as of just before this mirror."""
        order = OrderedDict((k, True) for k in self.old if k not in self.marked)
        # The previous mirror covered the requests still running (their first ``mirrored``
        # blocks) and those that left since.
        previous = [(req.batch_seq, req.mirrored_keys) for req in batch
                    if req.mirrored and req.blocks]
        sequence = sorted(previous + self.departed, key=lambda item: item[0])
        in_cache = self.active.keys() | self.old.keys()
        for _seq, keys in sequence:
            for k in keys:
                if k in in_cache:
                    order.pop(k, None)
                    order[k] = True
        for k in self.touched:  # reload touches since then are the most recent accesses
            if k in in_cache:
                order.pop(k, None)
                order[k] = True
        return order

    def _mirror_exact(self, batch) -> None:
        if not self.allow_lazy:
            self._mirror_literal(batch)
            return
        if self.lazy:
            self.exact = StampedLru(self.capacity, self._materialize(batch))
            self.lazy = False
        _, advanced = self._new_keys()
        self._advance(advanced)
        runs = [req.mirrored_keys for req in batch]
        stores, evictions, distinct = self.exact.mirror(runs)
        self.stores += stores
        self.evictions += evictions
        self.dirty.clear()
        self.departed.clear()
        self.touched.clear()
        self.marked.clear()
        # Every referenced key was just touched, so they are the most recent ones: if they all
        # fit, they are all in the tier and the lazy form describes it exactly again.
        if distinct <= self.capacity:
            refs = dict(Counter(chain.from_iterable(runs)))
            self.active = refs
            self.old = OrderedDict((k, True) for k in self.exact if k not in refs)
            self.exact = OrderedDict()
            self.lazy = True

    def _mirror_literal(self, batch) -> None:
        """Upstream's mirror, block by block (the reference behaviour)."""
        cpu = self.exact
        kv = self.kv
        key = kv.key
        fill = kv.fill
        bs = kv.block_size
        capacity = self.capacity
        touch = cpu.move_to_end
        for req in batch:
            blocks = req.blocks
            if not blocks:
                req.mirrored = 0
                continue
            covered = 0
            for b in blocks:
                if fill[b] != bs:
                    break
                covered += 1
                k = key[b]
                if k is None:
                    continue
                if k in cpu:
                    touch(k)
                else:
                    if len(cpu) >= capacity:
                        cpu.popitem(last=False)
                        self.evictions += 1
                    cpu[k] = True
                    self.stores += 1
            req.mirrored = covered
        self.dirty.clear()
