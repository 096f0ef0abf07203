"""KV-cache block store with prefix caching, and the GPU+CPU tiered variant.

Hit/miss behaviour follows upstream BLIS exactly (free-list order, pre-check arithmetic, lazy
hash deletion, reverse-order release). Hash *values* never leave this module, so instead of
SHA-256 over stringified token ids a block's key is Python's tuple hash of (parent key, token
ids). Ints and tuples hash deterministically in CPython (no hash seed), and a 64-bit collision
within one run is vanishingly unlikely (about 1e-7 for ten million distinct blocks).
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice
from math import ceil

from blis_core.cputier import CpuTier

ROOT_KEY = 0          # the parent key of a request's first block ("" upstream)
_NIL = -1             # no block


def block_tokens(req, origin: int, count: int) -> tuple:
    """Token ids at positions [origin, origin+count) of the request's input ++ output sequence."""
    n_in = req.num_input
    end = origin + count
    if end <= n_in:
        return tuple(req.input_tokens[origin:end].tolist())
    if origin >= n_in:
        return tuple(req.output_tokens[origin - n_in:end - n_in].tolist())
    return tuple(req.input_tokens[origin:].tolist()) + tuple(req.output_tokens[:end - n_in].tolist())


# Keys of a shared workload prefix's full blocks, computed once per prefix array and block size
# rather than once per request: id(prefix) -> (prefix, block_size, keys, leftover token ids).
# The entry holds the array, so its id cannot be reused while it is cached.
_PREFIX_KEYS: dict = {}
_PREFIX_KEYS_MAX = 64


def _prefix_keys(prefix, block_size: int) -> tuple:
    entry = _PREFIX_KEYS.get(id(prefix))
    if entry is None or entry[0] is not prefix or entry[1] != block_size:
        if len(_PREFIX_KEYS) >= _PREFIX_KEYS_MAX:
            _PREFIX_KEYS.clear()
        tokens = prefix.tolist()
        full = len(tokens) - len(tokens) % block_size
        entry = (prefix, block_size, _chain(ROOT_KEY, tokens[:full], block_size), tokens[full:])
        _PREFIX_KEYS[id(prefix)] = entry
    return entry[2], entry[3]


def _chain(key: int, tokens: list, block_size: int) -> list:
    chain = []
    append = chain.append
    # zip over one iterator repeated: the full blocks' token tuples, built in C (a trailing
    # partial block is left out).
    for block in zip(*[iter(tokens)] * block_size):
        key = hash((key, block))
        append(key)
    return chain


def _decode_key(req, position: int, parent: int, block_size: int) -> int:
    """Key of the request's full block ``position`` (one holding output tokens) on ``parent``.

    The output tokens are known from the start, so the first such block to fill computes the
    keys of all the request's later full blocks at once (``req.tail_chain``: the first
    position and [its parent, key, key, ...]); each later block takes its key from there
    when its parent is the one the chain was built on.
    """
    tail = req.tail_chain
    if tail is not None:
        i = position - tail[0]
        keys = tail[1]
        if 0 <= i < len(keys) - 1 and keys[i] == parent:
            return keys[i + 1]
    origin = position * block_size
    rest = req.num_input + len(req.output_tokens) - origin
    keys = [parent]
    keys += _chain(parent, block_tokens(req, origin, rest), block_size)
    req.tail_chain = (position, keys)
    return keys[1]


def _note_changes(stale: dict, keys, key_to_block: dict) -> None:
    """Record, for each key about to be set or removed that has no record yet, whether the
    routers' stale copy holds it (``KVCache.stale_keys``); None entries are skipped."""
    for k in keys:
        if k is not None and k not in stale:
            stale[k] = k in key_to_block


def prompt_hash_chain(req, block_size: int) -> list:
    """Keys of the request's full prompt blocks, each chained on its predecessor (cached)."""
    chain = req.hash_chain
    if chain is None:
        chain = req.hash_chain = _prompt_chain(req, block_size)
    return chain


def _prompt_chain(req, block_size: int) -> list:
    seed = req.chain_seed
    if seed:
        req.chain_seed = None
        return seed + _chain(seed[-1], req.input_tokens[len(seed) * block_size:].tolist(),
                             block_size)
    prefix, rest = req.prompt_parts()
    if prefix is not None:
        head, leftover = _prefix_keys(prefix, block_size)
        return head + _chain(head[-1] if head else ROOT_KEY, leftover + rest.tolist(),
                             block_size)
    return _chain(ROOT_KEY, req.input_tokens.tolist(), block_size)


def decode_keys_matter(requests, block_size: int) -> bool:
    """Whether a prompt of ``requests`` could ever look up the key of a block that holds another
    request's output tokens (see ``KVCache.decode_keys``).

    Keys chain, so a prompt's key equals another request's block key only if both cover the same
    tokens from the start. A prompt that reaches any of a request's decode blocks therefore
    starts with that request's whole prompt and first output tokens, and also holds the key of
    its first decode block. Such a prompt is longer than the other request's, so prompts are
    checked shortest first against the first decode-block keys of all the shorter ones.

    The run needs every chain once, while the request is in flight; the first
    ``_CHAINS_KEPT`` requests' chains are kept for it, the rest computed again then (100k of
    them would hold about 40 MB from the start).
    """
    first_decode_keys = set()
    lengths = [req.num_input for req in requests]
    for i in sorted(range(len(requests)), key=lengths.__getitem__):
        req = requests[i]
        chain = req.hash_chain
        if chain is None:
            chain = _prompt_chain(req, block_size)
            if i < _CHAINS_KEPT:
                req.hash_chain = chain
        if first_decode_keys and not first_decode_keys.isdisjoint(chain):
            return True
        output = req.output_tokens
        in_block = lengths[i] % block_size     # prompt tokens in the first decode block
        if output is not None and len(output) >= block_size - in_block:
            tokens = _prompt_tail(req, in_block) + output[:block_size - in_block].tolist()
            first_decode_keys.add(hash((chain[-1] if chain else ROOT_KEY, tuple(tokens))))
    return False


_CHAINS_KEPT = 16384


def _prompt_tail(req, count: int) -> list:
    """The prompt's last ``count`` token ids, without joining a shared prefix to the rest."""
    if count == 0:
        return []
    prefix, rest = req.prompt_parts()
    if prefix is None or len(rest) >= count:
        return rest[len(rest) - count:].tolist()
    return prefix[len(prefix) - (count - len(rest)):].tolist() + rest.tolist()


class KVCache:
    """Single-tier block store (upstream ``KVCacheState``).

    Blocks are parallel lists indexed by block id: reference count, number of tokens held, the
    absolute sequence position of the block's first token, and its prefix-cache key (None when
    not cacheable). Cached but unreferenced blocks stay on the free list and count as free.

    The free list (upstream: a doubly linked list, initially in id order; pop at the head,
    release appends at the tail, a cache hit unlinks from the middle) is held in two parts.
    Blocks never used yet are always its head, in id order, so they are just the ids from
    ``fresh`` on; the rest, in release order, is an OrderedDict, whose pop-first, append and
    delete are single C-level operations and which holds only blocks that have been used.
    """

    def __init__(self, total_blocks: int, block_size: int) -> None:
        self.total_blocks = total_blocks
        self.block_size = block_size
        self.refcount = [0] * total_blocks
        self.fill = [0] * total_blocks
        self.origin = [0] * total_blocks
        self.key = [None] * total_blocks
        self.fresh = 0                        # blocks [fresh, total) were never used
        self.recycled: OrderedDict = OrderedDict()   # the free list after them (values unused)
        self.free_count = total_blocks
        self.key_to_block: dict = {}
        # Whether a block holding output tokens gets a prefix-cache key when it fills. Only a
        # prompt that extends another request's generated tokens can look such a key up
        # (decode_keys_matter); the cluster turns this off for a run with none, where the keys
        # change nothing and a decoding request's block filling needs no event.
        self.decode_keys = True
        # Without them, blocks cruising requests took for decode tokens and have not been handed
        # yet (Instance._hand_over_blocks): unkeyed, so any of them will do for any request.
        self.decode_pool: list = []
        # While routers read a stale copy of the key map (``PrefixCacheView`` with a delay):
        # for each key changed since that copy was taken, whether the copy holds it. Set and
        # cleared by the view; None otherwise.
        self.stale_keys: dict | None = None
        self.cache_hits = 0
        self.cache_misses = 0
        self.pending_transfer_latency = 0

    # -- free list -------------------------------------------------------------------------
    def free_blocks(self) -> list[int]:
        """The free list, head first (for audits)."""
        return list(range(self.fresh, self.total_blocks)) + list(self.recycled)

    def _pop_free(self) -> int:
        """Take the head of the free list and forget its old prefix-cache key.

        Upstream deletes the old key from the map unconditionally, even when the key now points
        at another block; copying that keeps hit/miss behaviour identical. (A never used block
        has no key.)
        """
        self.free_count -= 1
        b = self.fresh
        if b < self.total_blocks:
            self.fresh = b + 1
            return b
        return self._reuse_recycled()

    def _reuse_recycled(self) -> int:
        """Take the head of the used part of the free list, forgetting its old key."""
        b = self.recycled.popitem(False)[0]
        old = self.key[b]
        if old is not None:
            stale = self.stale_keys
            if stale is not None and old not in stale:
                stale[old] = old in self.key_to_block
            self.key_to_block.pop(old, None)
            self.key[b] = None
        return b

    def _take_blocks(self, own, n: int, new_keys, origin: int, tokens: int) -> None:
        """Take ``n`` blocks off the free list for the next ``tokens`` positions from ``origin``
        (the last block holds the rest), keyed in order by ``new_keys``, and append them to
        ``own``. A prefill takes most of a run's blocks this way, so the blocks come off the
        list together and the keys change in bulk.

        Upstream takes one block at a time, dropping its old key before keying it. Bulk is the
        same unless an old key is among the new ones (the map would then end up depending on
        the order); then the keys change block by block, as upstream's do.
        """
        bs = self.block_size
        self.free_count -= n
        self.cache_misses += n
        fresh = self.fresh
        n_fresh = min(n, self.total_blocks - fresh)
        taken = list(range(fresh, fresh + n_fresh))
        self.fresh = fresh + n_fresh
        keys = self.key
        key_to_block = self.key_to_block
        stale = self.stale_keys
        in_order = False
        if n_fresh < n:
            recycled = self.recycled
            reused = list(islice(recycled, n - n_fresh))
            for b in reused:
                del recycled[b]
            olds = [keys[b] for b in reused]
            taken += reused
            in_order = bool(new_keys) and not set(new_keys).isdisjoint(olds)
            if in_order:
                olds = [None] * n_fresh + olds
                for i, b in enumerate(taken):
                    old = olds[i]
                    if old is not None:
                        if stale is not None and old not in stale:
                            stale[old] = old in key_to_block
                        key_to_block.pop(old, None)
                    if i < len(new_keys):
                        key = new_keys[i]
                        if stale is not None and key not in stale:
                            stale[key] = key in key_to_block
                        key_to_block[key] = b
            else:
                if stale is not None:
                    _note_changes(stale, olds, key_to_block)
                pop = key_to_block.pop
                for old in olds:
                    pop(old, None)                 # None is never a key
        if new_keys and not in_order:
            if stale is not None:
                _note_changes(stale, new_keys, key_to_block)
            key_to_block.update(zip(new_keys, taken))
        # Plain loops: CPython specializes their stores, while ``map`` over a list's
        # ``__setitem__`` calls a slot wrapper per item and is several times slower.
        fill = self.fill
        origins = self.origin
        refcount = self.refcount
        for b in taken:
            fill[b] = bs
            origins[b] = origin
            refcount[b] = 1
            origin += bs
        fill[taken[-1]] = tokens - (n - 1) * bs
        for b, key in zip(taken, new_keys):
            keys[b] = key
        for b in taken[len(new_keys):]:
            keys[b] = None
        own.extend(taken)

    # -- queries ---------------------------------------------------------------------------
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_count

    def cached_blocks(self, req) -> list[int]:
        """Block ids of the longest cached full-block prefix of the request's prompt."""
        found = []
        lookup = self.key_to_block.get
        for key in prompt_hash_chain(req, self.block_size):
            b = lookup(key)
            if b is None:
                break
            found.append(b)
        return found

    def cache_hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total > 0 else 0.0

    def thrashing_rate(self) -> float:
        return 0.0

    def consume_pending_transfer_latency(self) -> int:
        latency = self.pending_transfer_latency
        self.pending_transfer_latency = 0
        return latency

    def mirror(self, batch) -> None:
        """Single tier: nothing to mirror."""

    # -- allocation ------------------------------------------------------------------------
    def claim(self, req, blocks) -> None:
        """Take a reference on cached blocks and append them to the request's block list."""
        if not blocks:
            return
        refcount = self.refcount
        own = req.blocks
        if own is None:
            own = req.blocks = []
        recycled = self.recycled
        for b in blocks:
            if refcount[b] == 0:
                # A keyed block has been used, so it is not among the fresh ones.
                del recycled[b]
                self.free_count -= 1
            refcount[b] += 1
            self.cache_hits += 1
            own.append(b)

    def _register_full(self, req, b: int, position: int) -> None:
        """Give a block that just became full its prefix-cache key (chained on its predecessor)."""
        bs = self.block_size
        origin = self.origin[b]
        decoding = origin + bs > req.num_input
        if decoding and not self.decode_keys:
            return
        own = req.blocks
        parent = self.key[own[position - 1]] if position > 0 else None
        if parent is None:
            parent = ROOT_KEY
        if decoding and origin == position * bs:
            k = _decode_key(req, position, parent, bs)
        else:
            k = hash((parent, block_tokens(req, origin, bs)))
        self.key[b] = k
        stale = self.stale_keys
        if stale is not None and k not in stale:
            stale[k] = k in self.key_to_block
        self.key_to_block[k] = b

    def allocate(self, req, start: int, end: int, cached=None) -> bool:
        """Reserve KV space for positions [start, end) of the request (upstream AllocateKVBlocks).

        Check-then-act: a False return never mutates state.
        """
        bs = self.block_size
        own = req.blocks
        n_in = req.num_input
        prefill = req.progress < n_in
        if prefill:
            count = end - start
            if count < 0:
                count = 0
            eff = count
            if own:
                spare = bs - self.fill[own[-1]]
                if 0 < spare < bs:
                    eff -= min(spare, eff)
            need = -(-eff // bs) if eff > 0 else 0
            from_free = 0
            if cached:
                refcount = self.refcount
                for b in cached:
                    if refcount[b] == 0:
                        from_free += 1
            if need + from_free > self.free_count:
                return False
        else:
            count = 1
            if own:
                if self.fill[own[-1]] == bs and self.free_count == 0:
                    return False
            elif self.free_count == 0:
                return False
            start = req.progress if start is None else start

        fill = self.fill
        p = 0
        while p < count:
            own = req.blocks
            if own:
                latest = own[-1]
                latest_fill = fill[latest]
            else:
                if cached:
                    self.claim(req, cached)
                    own = req.blocks
                    latest = own[-1]
                    latest_fill = fill[latest]
                else:
                    latest = _NIL
                    latest_fill = 0
            if 0 < latest_fill < bs:
                take = min(bs - latest_fill, count - p)
                fill[latest] = latest_fill + take
                p += take
                if latest_fill + take == bs:
                    self._register_full(req, latest, len(own) - 1)
            else:
                remaining = count - p
                if remaining <= 0:
                    break
                if own is None:
                    own = req.blocks = []
                parent = self.key[own[-1]] if own else None
                if parent is None:
                    parent = ROOT_KEY
                origin = start + p
                full = remaining // bs if prefill else 0   # a decode block is keyed when it fills
                new_keys = ()
                if full:
                    idx = origin // bs
                    chain = req.hash_chain
                    if (chain is not None and origin % bs == 0 and idx + full <= len(chain)
                            and parent == (chain[idx - 1] if idx > 0 else ROOT_KEY)):
                        new_keys = chain[idx:idx + full]
                    else:
                        new_keys = _chain(parent, block_tokens(req, origin, full * bs), bs)
                self._take_blocks(own, -(-remaining // bs), new_keys, origin, remaining)
                p = count
        return True

    def take_decode_block(self) -> int:
        """Take a free block for a decode token (the caller knows one exists): one reference,
        one cache miss; the caller sets its fill and position."""
        # _pop_free's fresh-block path inline: this is the most frequent block operation.
        self.free_count -= 1
        b = self.fresh
        if b < self.total_blocks:
            self.fresh = b + 1
        else:
            b = self._reuse_recycled()
        self.refcount[b] = 1
        self.cache_misses += 1
        return b

    def pool_decode_blocks(self, count: int) -> None:
        """Take ``count`` free blocks for cruisers' decode tokens into ``decode_pool``."""
        to_pool = self.decode_pool.append
        take = self.take_decode_block
        for _ in range(count):
            to_pool(take())

    def append_decode_block(self, req, position: int) -> None:
        """A decoding request's token at ``position`` starts a new block (the caller knows a
        free block exists and the request's last block, if any, is full)."""
        b = self.take_decode_block()
        self.fill[b] = 1
        self.origin[b] = position
        if req.blocks is None:
            req.blocks = [b]
        else:
            req.blocks.append(b)

    def release(self, req) -> None:
        """Drop the request's references, last block first, so its prefix is evicted last."""
        own = req.blocks
        if own is None:
            return
        req.blocks = None
        refcount = self.refcount
        recycled = self.recycled
        freed = 0
        for b in reversed(own):
            left = refcount[b] - 1
            refcount[b] = left
            if not left:
                recycled[b] = None
                freed += 1
        self.free_count += freed


class TieredKVCache(KVCache):
    """GPU block store plus a CPU tier: an LRU of prefix-cache keys that running blocks are
    mirrored into every step, and from which a prompt prefix is reloaded when a GPU allocation
    fails (see ``blis_core.cputier``)."""

    def __init__(self, total_blocks: int, block_size: int, cpu_blocks: int,
                 bandwidth: float, base_latency: int, lazy_mirror: bool = True) -> None:
        super().__init__(total_blocks, block_size)
        if not bandwidth > 0:
            raise ValueError("kv transfer bandwidth must be > 0 when the CPU tier is enabled")
        self.cpu = CpuTier(cpu_blocks, self, lazy_mirror)
        self.reload_cost = base_latency + ceil(block_size / bandwidth)
        self.cpu_misses = 0

    @property
    def mirror_count(self) -> int:
        return self.cpu.stores

    @property
    def cpu_evictions(self) -> int:
        return self.cpu.evictions

    def cache_hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses + self.cpu_misses
        return self.cache_hits / total if total > 0 else 0.0

    def thrashing_rate(self) -> float:
        stores = self.cpu.stores
        return self.cpu.evictions / stores if stores > 0 else 0.0

    def mirror(self, batch) -> None:
        self.cpu.mirror(batch)

    def _register_full(self, req, b: int, position: int) -> None:
        KVCache._register_full(self, req, b, position)
        self.cpu.grew(req)

    def append_decode_block(self, req, position: int) -> None:
        KVCache.append_decode_block(self, req, position)
        if self.block_size == 1:  # else the new block holds one token: not full, not mirrored
            self.cpu.grew(req)

    def release(self, req) -> None:
        own = req.blocks
        if own is not None:
            self.cpu.released(req, own)
        KVCache.release(self, req)

    def _reload_prefix(self, req) -> bool:
        max_reloads = self.free_count
        reloaded = 0
        cpu = self.cpu
        for k in prompt_hash_chain(req, self.block_size):
            if k in self.key_to_block:
                continue
            if k not in cpu or reloaded >= max_reloads:
                break
            b = self._pop_free()
            self.key[b] = k
            self.fill[b] = self.block_size
            self.refcount[b] = 0
            stale = self.stale_keys
            if stale is not None and k not in stale:
                stale[k] = False   # it was not in the map (checked above)
            self.key_to_block[k] = b
            self.recycled[b] = None
            self.free_count += 1
            self.pending_transfer_latency += self.reload_cost
            cpu.touch(k)
            reloaded += 1
        return reloaded > 0

    def allocate(self, req, start: int, end: int, cached=None) -> bool:
        if KVCache.allocate(self, req, start, end, cached):
            self.cpu.grew(req)
            return True
        if not self._reload_prefix(req):
            self.cpu_misses += 1
            return False
        self.cpu.grew(req)
        bs = self.block_size
        new_cached = self.cached_blocks(req)
        new_start = len(new_cached) * bs
        if new_start > start:
            has_entry = bool(req.blocks)
            first = -(-start // bs) if has_entry else 0
            if new_start >= end:
                end_block = min(-(-end // bs), len(new_cached))
                self.claim(req, new_cached[first:end_block])
                return True
            self.claim(req, new_cached[first:new_start // bs])
            return KVCache.allocate(self, req, new_start, end, new_cached)
        return KVCache.allocate(self, req, start, end, cached)
