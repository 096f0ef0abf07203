"""The CPU tier of the tiered KV cache: an LRU of prefix-cache keys, mirrored every step.

Upstream touches every full block of every running request in the CPU LRU after every step:
tens of millions of operations per run, nearly all of them hits that change nothing. This
module computes exactly the same LRU (contents, order, store and eviction counts) while doing
work only for what changed since the previous step, whenever that is provably equivalent.

Three representations, switched between automatically:

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
* **thrashing**: after a mirror that reached more distinct keys than the tier holds, the tier
  is a function of that mirror's accesses alone, so only those are kept (``snap``) with the
  runs holding each key (``holders``). An access hits iff fewer than ``capacity`` distinct
  keys were accessed since the key's previous access. A key one run holds (in this and the
  previous mirror) has between its two accesses every key the persisting runs held in the
  previous mirror, so when those outnumber the tier every such access misses: one comparison
  per mirror. Keys several runs hold are decided per chunk (same holders, consecutive
  positions) in ``_check_shared``, the chunks kept from one check to the next, and the
  decisions reused while nothing can have changed them. Anything
  undecided, a reload lookup or touch, or too few distinct keys rebuilds the exact form.

Requests carry three fields for this: ``batch_seq`` (their position in batch order, assigned
at admission), ``mirrored`` (how many of their blocks the previous mirror covered) and
``mirrored_keys`` (those blocks' keys).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from bisect import bisect_left, bisect_right
from itertools import accumulate, chain, repeat
from operator import attrgetter, itemgetter, sub


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


def _chunk_layout(members, start, prev_start):
    """(size, first member's holdings now, then, the same as (run id, index) pairs in batch
    order) of keys with the same holders when they lie at consecutive positions in every
    holder, else None. ``members`` are one (holdings now, holdings then) pair of
    {run id: index} dicts per key; ``start`` and ``prev_start`` the two mirrors' run starts
    (``_Snapshot.start``).
    Runs keep their batch order, so the pairs stay in order while the holders do not change."""
    now0, then0 = members[0]
    pivot = next(iter(now0 or then0))
    members.sort(key=lambda m: (m[0] or m[1])[pivot])
    first_now, first_then = members[0]
    for j, (now, then) in enumerate(members):
        for rid, i in now.items():
            if i != first_now[rid] + j:
                return None
        for rid, i in then.items():
            if i != first_then[rid] + j:
                return None
    now_order = sorted(first_now.items(), key=lambda item: start[item[0]])
    if first_then is first_now:
        then_order = now_order
    else:
        then_order = sorted(first_then.items(), key=lambda item: prev_start[item[0]])
    return len(members), first_now, first_then, now_order, then_order


_batch_seq = attrgetter("batch_seq")
_first = itemgetter(0)


class _Snapshot:
    """One mirror's accesses: its runs (key lists, in batch order) and their lengths then."""

    __slots__ = ("runs", "lens", "total", "_start", "_length", "_index")

    def __init__(self, runs=()) -> None:
        self.runs = runs
        self.lens = list(map(len, runs))
        self.total = sum(self.lens)
        self._start = None
        self._length = None
        self._index = None

    def grown(self, advanced, added: int) -> _Snapshot:
        """The next mirror's accesses when its runs are these, in this order, ``advanced``
        (as from ``_new_keys``) having added ``added`` keys to them: no per-run work."""
        index = self._index
        if index is None:
            index = self._index = {id(run): i for i, run in enumerate(self.runs)}
        lens = self.lens.copy()
        for req, _covered, keys in advanced:
            if keys:
                lens[index[id(req.mirrored_keys)]] += len(keys)
        snap = _Snapshot.__new__(_Snapshot)
        snap.runs = self.runs
        snap.lens = lens
        snap.total = self.total + added
        snap._start = None
        snap._length = None
        snap._index = index
        return snap

    @property
    def start(self) -> dict:
        """id(run) -> its first position in the access sequence; built when first asked for,
        as most mirrors never do."""
        if self._start is None:
            self._start = dict(zip(map(id, self.runs), accumulate(self.lens, initial=0)))
        return self._start

    @property
    def length(self) -> dict:
        """id(run) -> its length in this mirror."""
        if self._length is None:
            self._length = dict(zip(map(id, self.runs), self.lens))
        return self._length


def _repeats(chunks, chunk, a, b, thens=None):
    """Accesses between positions a and b that repeat a key accessed earlier in that span:
    other chunks' keys met more than once. With ``thens`` (each chunk's positions in the
    previous mirror) the span is cyclic: from a in the previous mirror to b in this one."""
    repeats = 0
    if thens is None:
        for other in chunks:
            if other is not chunk:
                count = bisect_left(other[1], b) - bisect_right(other[1], a)
                if count > 1:
                    repeats += other[0] * (count - 1)
        return repeats
    for other, then in zip(chunks, thens):
        if other is not chunk:
            count = len(then) - bisect_right(then, a) + bisect_left(other[1], b)
            if count > 1:
                repeats += other[0] * (count - 1)
    return repeats


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
        # Thrashing form (see ``_mirror_thrash``); ``thrash`` True means it describes the tier.
        self.thrash = False
        self.holders: dict = {}    # key -> [(id of a run's key list, index)] over the batch
        self.shared: set = set()   # keys with two or more holders
        # The shared keys by their holders (sorted run ids) as of the last check, and the
        # layout (see ``_chunk_layout``) of each group whose keys have not changed since.
        self.groups: dict = {}     # holders -> set of keys
        self.group_of: dict = {}   # key -> its holders, as in ``groups``
        self.layouts: dict = {}    # holders -> layout
        self.singles = 0           # keys with exactly one holder
        self.snap = _Snapshot()    # the previous mirror's accesses
        self.shared_hits = 0       # hits of the previous mirror (all among shared accesses)
        self.gap_margin = -1       # C - 1 - the largest gap of those hits, as of ``recheck``
        self.growth_reach = 2      # how many times one added key can widen a hit's gap
        self.grown_since = 0       # keys added since the shared accesses were last checked
        self.shrunk_since = 0      # keys of runs departed since then
        self.miss_margin = -1      # the fewest distinct keys before a shared miss, less C
        self.recheck = True        # shared accesses must be checked one by one next step

    # -- queries and touches (reload path) --------------------------------------------------
    def __contains__(self, key) -> bool:
        if self.lazy:
            return key in self.active or key in self.old
        if self.thrash:
            self._leave_thrash()
        return key in self.exact

    def touch(self, key) -> None:
        if self.thrash:
            self._leave_thrash()
        if not self.lazy:
            self.exact.move_to_end(key)
            return
        if key in self.old:
            self.old.move_to_end(key)
            self.marked.add(key)
        self.touched.append(key)

    def __len__(self) -> int:
        if self.thrash:
            return self.capacity
        return len(self.active) + len(self.old) if self.lazy else len(self.exact)

    def contents(self) -> list:
        """The keys of the exact or thrashing form, least recently used first (for tests; does
        not change the form)."""
        if self.thrash:
            return list(self._thrash_order())
        return list(self.exact)

    # -- bookkeeping hooks called by the block store -----------------------------------------
    def grew(self, req) -> None:
        self.dirty.append(req)

    def released(self, req, blocks) -> None:
        if req.mirrored and (self.lazy or self.thrash) and req.mirrored_keys:
            self.departed.append((req.batch_seq, req.mirrored_keys))
        req.mirrored = 0
        req.mirrored_keys = ()

    # -- the per-step mirror -------------------------------------------------------------------
    def mirror(self, batch) -> None:
        if not self.dirty and not self.departed and not self.touched:
            # No referenced key changed since the previous mirror (every change to a request's
            # blocks or the batch reports here), so the accesses are the previous ones again.
            if self.lazy:
                return  # they only reorder the active keys among themselves
            if (self.thrash and not self.recheck
                    and self.growth_reach * self.grown_since <= self.gap_margin
                    and self.shrunk_since <= self.miss_margin):
                misses = self.snap.total - self.shared_hits  # the previous mirror's decisions
                self.stores += misses
                self.evictions += misses
                return
        if self.lazy and self._mirror_lazy():
            return
        if self.thrash and self._mirror_thrash(batch):
            return
        self._mirror_exact(batch)

    def _new_keys(self):
        """Keys of blocks that became full since the last mirror, in batch and block order,
        and per grown request (request, blocks now covered, its new keys)."""
        kv = self.kv
        key = kv.key
        fill = kv.fill
        bs = kv.block_size
        dirty = self.dirty
        if len(dirty) > 1:
            dirty = dict(zip(map(id, dirty), dirty)).values()  # each once
        grown = [req for req in dirty if req.state == "running" and req.blocks]
        if len(grown) > 1:
            grown.sort(key=_batch_seq)
        found = []
        advanced = []
        get_key = key.__getitem__
        for req in grown:
            blocks = req.blocks
            covered = req.mirrored
            # Every block but a request's last is full (a block is only taken once the one
            # before it is full), so the full ones are all, or all but the last.
            full = len(blocks) if fill[blocks[-1]] == bs else len(blocks) - 1
            if covered < full:
                if covered + 1 == full:  # the usual case: one block filled
                    k = key[blocks[covered]]
                    keys = [] if k is None else [k]
                else:
                    keys = [k for k in map(get_key, blocks[covered:full]) if k is not None]
                covered = full
                found += keys
            else:
                keys = []
            advanced.append((req, covered, keys))
        return found, advanced

    @staticmethod
    def _advance(advanced) -> None:
        for req, covered, keys in advanced:
            req.mirrored = covered
            if keys:
                if req.mirrored_keys:
                    req.mirrored_keys += keys
                else:
                    req.mirrored_keys = keys  # a fresh list: the run's identity from now on

    def _flush_departures(self) -> None:
        """Requests that left the batch: keys nobody references any more become old, ordered by
        their last access (the previous mirror), more recent than the untouched old keys."""
        active = self.active
        old = self.old
        departed = self.departed
        if len(departed) > 1:
            departed = sorted(departed, key=_first)
        for _seq, keys in departed:
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
        sequence = sorted(previous + self.departed, key=_first)
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

    # -- the thrashing form ------------------------------------------------------------------
    def _thrash_order(self):
        """The tier implied by the previous mirror's accesses alone (they reached at least
        ``capacity`` distinct keys): its last ``capacity`` distinct keys, oldest first."""
        recent: dict = {}
        capacity = self.capacity
        for run, n in zip(reversed(self.snap.runs), reversed(self.snap.lens)):
            for i in range(n - 1, -1, -1):
                k = run[i]
                if k not in recent:
                    recent[k] = True
                    if len(recent) == capacity:
                        return reversed(list(recent))
        return reversed(list(recent))

    def _leave_thrash(self) -> None:
        self.exact = StampedLru(self.capacity, self._thrash_order())
        self.thrash = False
        self.holders = {}
        self.shared = set()
        self.groups = {}
        self.group_of = {}
        self.layouts = {}
        self.snap = _Snapshot()

    def _enter_thrash(self, runs) -> None:
        """Switch to the thrashing form after a mirror whose runs reached more than
        ``capacity`` distinct keys, each run's keys being distinct."""
        holders: dict = {}
        for run in runs:
            rid = id(run)
            for i, k in enumerate(run):
                h = holders.get(k)
                if h is None:
                    holders[k] = [(rid, i)]
                else:
                    h.append((rid, i))
        shared = {k for k, h in holders.items() if len(h) > 1}
        for k in shared:
            rids = [rid for rid, _ in holders[k]]
            if len(set(rids)) != len(rids):
                return  # a key twice in one run: stay exact
        self.holders = holders
        self.shared = shared
        self.groups = groups = {}
        self.group_of = group_of = {}
        self.layouts = {}
        for k in shared:
            sig = tuple(sorted(rid for rid, _ in holders[k]))
            group_of[k] = sig
            groups.setdefault(sig, set()).add(k)
        self.singles = len(holders) - len(shared)
        self.snap = _Snapshot(runs)
        self.recheck = True
        self.thrash = True
        self.exact = OrderedDict()

    def _mirror_thrash(self, batch) -> bool:
        """One mirror in the thrashing form, from what changed; False (having switched to the
        exact form as of before this mirror) when it cannot decide every access."""
        if self.touched:
            self._leave_thrash()
            return False
        _, advanced = self._new_keys()
        self._advance(advanced)
        self.dirty.clear()
        holders = self.holders
        shared = self.shared
        previous = self.snap
        recheck = self.recheck
        ok = True
        singles = self.singles
        left = 0              # keys of departed runs (accessed by the previous mirror)
        left_holdings = {}    # key two runs held -> its departed holdings
        changed = set()       # keys two runs hold or held whose holders changed
        departed = self.departed
        persisting = len(previous.runs) - len(departed)
        arrived = 0           # runs with their first keys
        added = 0
        # Additions first: a key a departed run held and a new one holds was accessed.
        for req, _covered, keys in advanced:
            if not keys:
                continue
            run = req.mirrored_keys
            rid = id(run)
            base = len(run) - len(keys)
            if not base:
                arrived += 1
            added += len(keys)
            for j, k in enumerate(keys):
                h = holders.get(k)
                if h is None:
                    holders[k] = [(rid, base + j)]
                    singles += 1
                    continue
                recheck = True
                changed.add(k)
                if any(other == rid for other, _ in h):
                    ok = False  # a key twice in one run
                if len(h) == 1:
                    singles -= 1
                    shared.add(k)
                h.append((rid, base + j))
        prev_length = previous.length if departed else None
        for _seq, keys in departed:
            rid = id(keys)
            if prev_length.get(rid, -1) != len(keys):
                ok = False
                break
            left += len(keys)
            for i, k in enumerate(keys):
                h = holders[k]
                n = len(h)
                if n == 1 and k not in left_holdings:
                    del holders[k]
                    singles -= 1
                    continue
                recheck = True
                changed.add(k)
                h.remove((rid, i))
                left_holdings.setdefault(k, []).append((rid, i))
                if n == 2:
                    shared.discard(k)
                    singles += 1
                elif n == 1:
                    del holders[k]
                    singles -= 1
        self.singles = singles
        composition_kept = not departed and not arrived
        departed.clear()
        capacity = self.capacity
        # Between a key's access by the only run holding it (in both mirrors) and its previous
        # access, every key a persisting run held in the previous mirror is accessed: so the
        # access misses when those keys, less itself, fill the tier. Every key held now but
        # not counted there was added by this mirror, hence ``len(holders) - added``.
        if not ok or len(holders) - added <= capacity:
            self._leave_thrash()
            return False
        # Every run of the previous mirror either runs on (its order among the others kept)
        # or departed: the reasoning above needs both. Without departures or arrivals the
        # runs are the previous ones: the batch only loses requests by releasing them (a
        # departure) and keeps admission order.
        if composition_kept:
            self.snap = previous.grown(advanced, added)
        else:
            runs = [run for run in [req.mirrored_keys for req in batch] if run]
            if len(previous.start.keys() & set(map(id, runs))) != persisting:
                self._leave_thrash()
                return False
            self.snap = _Snapshot(runs)
        grown = self.grown_since + added
        shrunk = self.shrunk_since + left
        if (recheck or self.growth_reach * grown > self.gap_margin
                or shrunk > self.miss_margin):
            if not self._check_shared(previous, changed, left_holdings, added, left):
                self.snap = previous  # from which the exact form starts
                self._leave_thrash()
                return False
        else:
            self.grown_since = grown
            self.shrunk_since = shrunk
        misses = self.snap.total - self.shared_hits
        self.stores += misses
        self.evictions += misses
        return True

    def _check_shared(self, previous, changed, left_holdings, added, left) -> bool:
        """Decide each access of a key that two runs of this or the previous mirror hold.

        Such keys come in chunks: keys with the same holders, at consecutive positions in each.
        All keys of a chunk see the same number of distinct keys between an access and the
        previous one, so one decision per holder covers the chunk. That number is at most the
        accesses in between and, as no run is crossed twice, exactly those minus the repeated
        accesses, which only other chunks make. False when some access is not decided.

        The chunks are kept from one check to the next (``groups``): a key whose holders did
        not change since the last check was held by the same runs in both mirrors, at the same
        positions in each run, so its group and the group's layout stand. Only the keys in
        ``changed`` are grouped afresh, by their holders in this mirror and in the previous one.
        """
        prev_start = previous.start
        prev_length = previous.length
        prev_total = previous.total
        start = self.snap.start
        holders = self.holders
        capacity = self.capacity
        groups = self.groups
        group_of = self.group_of
        layouts = self.layouts
        fresh: dict = {}
        regrouped = []
        for k in changed:
            sig = group_of.pop(k, None)
            if sig is not None:
                keys = groups[sig]
                keys.discard(k)
                if not keys:
                    del groups[sig]
                layouts.pop(sig, None)
            now = holders.get(k, ())
            then = [(rid, i) for rid, i in chain(now, left_holdings.get(k, ()))
                    if i < prev_length.get(rid, 0)]
            signature = (tuple(sorted(rid for rid, _ in now)),
                         tuple(sorted(rid for rid, _ in then)))
            fresh.setdefault(signature, []).append((dict(now), dict(then)))
            if len(now) > 1:
                regrouped.append((k, signature[0]))
        if not fresh and len(layouts) == len(groups):
            layout_list = list(layouts.values())  # the common case: only positions moved
        else:
            layout_list = self._layouts(fresh, start, prev_start)
            if layout_list is None:
                return False
        for k, sig in regrouped:
            group_of[k] = sig
            keys = groups.get(sig)
            if keys is None:
                groups[sig] = {k}
            else:
                keys.add(k)
                layouts.pop(sig, None)
        # (size, positions now, ...); the positions then are only listed if a cyclic gap
        # needs its repeats counted (``thens``), most checks use only the last one.
        chunks = [(size, [start[rid] + i for rid, i in now_order],
                   first_now, first_then, now_order, then_order)
                  for size, first_now, first_then, now_order, then_order in layout_list]
        thens = None
        hits = 0
        widest = -1
        narrowest = None
        again = bool(left_holdings)
        # A hit's gap spans each run at most once, unless a cyclic gap starts, in the previous
        # mirror, after the run at which it ends in this one: then the runs between are in
        # both parts and their growth counts twice.
        reach = 1
        for chunk in chunks:
            size, now, first_now, first_then, now_order, then_order = chunk
            if not now:
                continue
            if first_now is not first_then and first_now.keys() != first_then.keys():
                again = True  # holders came or went: the next mirror's spans differ
            if then_order:
                tail, i = then_order[-1]
                a = prev_start[tail] + i
                b = now[0]
                gap = prev_total - 1 - a + b
                if gap >= capacity:
                    # the run holding the chunk first now must not precede, in the previous
                    # mirror, the one holding it last then (else some run is crossed twice)
                    head = now_order[0][0]
                    if head not in prev_start or prev_start[head] > prev_start[tail]:
                        return False
                    if thens is None:
                        thens = [[prev_start[rid] + i for rid, i in other[5]]
                                 for other in chunks]
                    gap -= _repeats(chunks, chunk, a, b, thens)
                if gap < capacity:
                    hits += size
                    if gap > widest:
                        widest = gap
                    if reach == 1:
                        head = now_order[0][0]
                        if head not in prev_start or prev_start[head] > prev_start[tail]:
                            reach = 2
                elif narrowest is None or gap < narrowest:
                    narrowest = gap
            else:
                again = True  # a first access: misses now, hits next time
            if len(now) < 2:
                continue
            top = max(map(sub, now[1:], now)) - 1
            if top < capacity:  # the usual case: every holder after the first hits
                hits += size * (len(now) - 1)
                if top > widest:
                    widest = top
                continue
            a = now[0]
            for b in now[1:]:
                gap = b - a - 1
                if gap >= capacity:
                    gap -= _repeats(chunks, chunk, a, b)
                if gap < capacity:
                    hits += size
                    if gap > widest:
                        widest = gap
                elif narrowest is None or gap < narrowest:
                    narrowest = gap
                a = b
        self.shared_hits = hits
        self.recheck = again
        self.gap_margin = capacity - 1 - widest
        self.growth_reach = reach
        self.miss_margin = capacity if narrowest is None else narrowest - capacity
        # This mirror's additions and departures still change the next mirror's spans (their
        # first part lies in this mirror).
        self.grown_since = added
        self.shrunk_since = left
        return True

    def _layouts(self, fresh, start, prev_start):
        """The layout of every chunk of this check (None if some chunk has none): the kept
        groups' (merged with any changed keys that now have the same holders in both
        mirrors) and the changed keys' groups."""
        groups = self.groups
        layouts = self.layouts
        holders = self.holders
        layout_list = []
        for sig, keys in groups.items():
            layout = layouts.get(sig)
            joining = fresh.pop((sig, sig), None)
            if layout is None or joining:
                members = [(d, d) for d in map(dict, map(holders.__getitem__, keys))]
                layout = _chunk_layout(members + joining if joining else members,
                                       start, prev_start)
                if layout is None:
                    return None
                if not joining:
                    layouts[sig] = layout
            layout_list.append(layout)
        for members in fresh.values():
            layout = _chunk_layout(members, start, prev_start)
            if layout is None:
                return None
            layout_list.append(layout)
        return layout_list

    # -- the exact form ------------------------------------------------------------------------
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
        else:
            self._enter_thrash([run for run in runs if run])

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
