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
* **exact**: a plain ordered dict touched block by block, as upstream does. Used for any step
  in which an eviction could reach a key whose exact recency the lazy form does not know
  (the batch references more keys than the tier holds, or too few untouched old keys remain).

Requests carry two fields for this: ``batch_seq`` (their position in batch order, assigned at
admission) and ``mirrored`` (how many of their blocks the previous mirror covered).
"""

from __future__ import annotations

from collections import OrderedDict


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
        covered = req.mirrored
        if covered and self.lazy:
            key = self.kv.key
            fill = self.kv.fill
            bs = self.kv.block_size
            keys = [key[b] for b in blocks[:covered] if key[b] is not None and fill[b] == bs]
            self.departed.append((req.batch_seq, keys))
        req.mirrored = 0

    # -- the per-step mirror -------------------------------------------------------------------
    def mirror(self, batch) -> None:
        if self.lazy and self._mirror_lazy():
            return
        self._mirror_exact(batch)

    def _new_keys(self):
        """Keys of blocks that became full since the last mirror, in batch and block order."""
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
            while i < n and fill[blocks[i]] == bs:
                k = key[blocks[i]]
                if k is not None:
                    found.append(k)
                i += 1
            advanced.append((req, i))
        return found, advanced

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
        for req, covered in advanced:
            req.mirrored = covered
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
        previous = [(req.batch_seq, req) for req in batch if req.mirrored and req.blocks]
        sequence = sorted(previous + [(seq, keys) for seq, keys in self.departed],
                          key=lambda item: item[0])
        kv = self.kv
        key = kv.key
        fill = kv.fill
        bs = kv.block_size
        in_cache = self.active.keys() | self.old.keys()
        for _seq, item in sequence:
            if isinstance(item, list):
                keys = item
            else:
                keys = [key[b] for b in item.blocks[:item.mirrored]
                        if key[b] is not None and fill[b] == bs]
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
        if self.lazy:
            self.exact = self._materialize(batch)
            self.lazy = False
        cpu = self.exact
        kv = self.kv
        key = kv.key
        fill = kv.fill
        bs = kv.block_size
        capacity = self.capacity
        touch = cpu.move_to_end
        refs: dict = {}
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
                refs[k] = refs.get(k, 0) + 1
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
        self.departed.clear()
        self.touched.clear()
        self.marked.clear()
        # Every referenced key was just touched, so they are the most recent ones: if they all
        # fit, they are all in the tier and the lazy form describes it exactly again.
        if len(refs) <= capacity and self.allow_lazy:
            self.active = refs
            self.old = OrderedDict((k, True) for k in cpu if k not in refs)
            self.exact = OrderedDict()
            self.lazy = True
