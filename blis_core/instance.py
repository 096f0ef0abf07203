"""One vLLM-style serving instance: wait queue, batch formation, step execution, completion.

The instance does not own a clock loop: the cluster pops its events from the shared heap and
calls ``handle``. Everything here follows upstream BLIS at 4e179804 (engine.md sections 1-2);
the step is the hot path of every run and is written flat, with attribute lookups hoisted.
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from heapq import heappop, heappush

import attrs
import numpy as np

from blis_core.events import ARRIVAL, MAX_TICK, QUEUED, STEP, TIMEOUT
from blis_core.latency import BUILTIN_MODELS
from blis_core.request import COMPLETED, QUEUED as STATE_QUEUED, RUNNING, TIMED_OUT


class UnservableRequestError(ValueError):
    """A request that can never complete and a run without a horizon: it would never end."""


@attrs.frozen
class BatchConfig:
    """Batch-formation limits of one instance (upstream BatchConfig plus MaxModelLen)."""

    max_running: int = 256
    max_scheduled_tokens: int = 2048
    long_prefill_threshold: int = 0
    max_model_len: int = 0


_ITL_CHUNK = 1 << 16   # steps per chunk when counting the ITL distribution

_FILL = 0        # a cruiser's decode fills its last block (which gets its prefix-cache key)
_NEW_BLOCK = 1   # a cruiser's decode needs a new block
_DONE = 2        # a cruiser completes after this step's execution
_EXPLICIT = 3    # (batch formation only) not an event: an explicit request's turn
_POOLED = 4      # (batch formation only) a pooled cruiser's turn to take a new block


def _batch_order(req) -> int:
    return req.batch_seq


def _event_order(entry) -> int:
    return entry[0].batch_seq


def _cover_steps(req, first: int, end: int) -> None:
    """The request's ITL entries now also cover steps [first, end) (see Instance.itl_counts)."""
    steps = req.itl_steps
    if steps is None:
        req.itl_steps = [first, end]
    elif steps[-1] == first:
        steps[-1] = end
    else:
        steps += (first, end)


class InstanceCounters:
    """The per-instance counters upstream's Metrics struct accumulates."""

    __slots__ = (
        "completed", "total_input_tokens", "total_output_tokens", "ttft_sum", "preemptions",
        "kv_allocation_failures", "dropped_unservable", "length_capped", "timed_out",
        "still_queued", "still_running", "sim_ended_time",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class Instance:
    """A single serving instance (upstream ``sim.Simulator`` driven by the cluster)."""

    def __init__(self, index: int, batch: BatchConfig, latency, kv, heap: list,
                 horizon: int, priority_policy=None, scheduler=None, on_done=None,
                 cruise: bool = True) -> None:
        self.index = index
        self.id = f"instance_{index}"
        self.batch_config = batch
        self.latency = latency
        self.kv = kv
        self.heap = heap
        self.horizon = horizon
        self.priority_policy = priority_policy
        self.scheduler = scheduler
        self.on_done = on_done

        self.clock = 0
        self.seq = 0
        self.wait: deque = deque()
        self.running: list | None = []
        self.step_pending = False
        self.step_count = 0
        self.in_flight = 0
        self.routed = 0                   # requests delivered here (the time series counts them)
        # Lifecycle and placement (blis_core.infrastructure): "" is the untracked, routable
        # state of an instance without node pools.
        self.state = ""
        self.gpu_type = ""
        self.tp_degree = 0
        self.cost_per_hour = 0.0
        self.last_left = 0
        self.counters = InstanceCounters()
        self.requests: dict = {}          # registered at injection, removed on an enqueue drop
        self.completed_requests: list = []
        # ITL entries of completed requests, as the [start, end) step ranges they cover: the
        # distribution is counted from these and step_latency when read (see itl_counts), not
        # value by value at each completion.
        self.itl_starts = array("q")
        self.itl_ends = array("q")
        self._itl_counts = None           # (state it was counted at, the counts)
        self.admissions = 0
        self.cruise = cruise              # False: every request steps explicitly (reference)
        self.cruisers = 0                 # running requests decoding implicitly
        self.due: dict = {}               # step -> [(request, epoch, event)] for cruisers
        # With unkeyed decode blocks: cruisers by (step they take a block) mod block size
        # (dicts in insertion order); None while decode blocks get keys.
        self.block_classes = None
        # Token latency (adv + otpt) of each step, by number; one per step of the whole run,
        # so stored as machine integers (8 bytes each, not a list's 8 + 32).
        self.step_latency = array("q", (0,))
        self.wait_samples = 0             # sum over steps of the wait-queue length (HOL blocking)
        self.tiered = hasattr(kv, "mirror_count")
        # The cluster loop's next sample/progress/horizon mark: steps before it may run ahead
        # of the heap (see _cruise_ahead); 0 turns that off.
        self.until = 0
        # With it, the cluster's pending event times: steps may also run ahead of the other
        # instances' events, up to the next cluster event or event of this instance.
        self.cluster_times = None
        self.own_times: list = []         # times of this instance's non-step events (a heap)

    # -- events -------------------------------------------------------------------------------
    def _push(self, time: int, priority: int, kind: int, payload) -> None:
        self.seq += 1
        heappush(self.heap, (time, self.index, priority, self.seq, kind, payload))
        if kind != STEP:
            heappush(self.own_times, time)

    def inject(self, req, time: int) -> None:
        """Routing delivered a request: its instance Arrival is at ``time``."""
        self.requests[req.id] = req
        self._push(time, 0, ARRIVAL, req)

    def inject_decode(self, req, time: int) -> None:
        """P/D: a decode sub-request whose KV arrived joins the wait queue at once (no queueing
        delay, none of the enqueue checks: its prefill passed them)."""
        self.requests[req.id] = req
        self.wait.append(req)
        deadline = req.deadline
        if 0 < deadline <= self.horizon:
            self._push(deadline, 5, TIMEOUT, req)
        if not self.running and not self.step_pending:
            self._push(max(self.clock, time), 2, STEP, None)
            self.step_pending = True

    def handle(self, time: int, kind: int, req) -> bool:
        """Execute one popped event. Returns False for a lazily cancelled timeout, which upstream
        pops without moving any clock."""
        if kind == STEP:
            self.clock = time
            self.step(time)
            return True
        heappop(self.own_times)    # this lane pops its events in time order
        if kind == ARRIVAL:
            self.clock = time
            self._push(time + self.latency.queueing_time(req.num_input), 1, QUEUED, req)
        elif kind == QUEUED:
            self.clock = time
            self.enqueue(req, time)
            if not self.step_pending and self.wait:
                self._push(time, 2, STEP, None)
                self.step_pending = True
        elif kind == TIMEOUT:
            if req.state == COMPLETED:
                return False
            self.clock = time
            self.timeout(req, time)
        return True

    def enqueue(self, req, now: int) -> None:
        """Upstream EnqueueRequest: drop what can never be served, else join the wait queue."""
        if req.state == TIMED_OUT:
            return
        batch = self.batch_config
        mml = batch.max_model_len
        n_in = req.num_input
        if req.max_output_len == 0 and mml > 0 and n_in < mml:
            req.max_output_len = mml - n_in
        bs = self.kv.block_size
        if (req.max_output_len < 0
                or (mml > 0 and n_in >= mml)
                or (mml > 0 and req.max_output_len > 0 and n_in + req.max_output_len > mml)
                or -(-n_in // bs) > self.kv.total_blocks):
            self.counters.dropped_unservable += 1
            self.requests.pop(req.id, None)
            self._finish(req, now)
            return
        self.counters.total_input_tokens += n_in
        deadline = req.deadline
        if 0 < deadline <= now:
            req.state = TIMED_OUT
            self.counters.timed_out += 1
            self._finish(req, now)
            return
        self.wait.append(req)
        if 0 < deadline <= self.horizon:
            self._push(deadline, 5, TIMEOUT, req)

    def timeout(self, req, now: int) -> None:
        if req.state == TIMED_OUT:
            return
        if req.cruising:
            self._materialize(req, self.step_count + 1)
        req.state = TIMED_OUT
        self.counters.timed_out += 1
        self.kv.release(req)
        req.computed = 0
        running = self.running
        if running and req in running:
            running.remove(req)
            if not running:
                self.running = None
        else:
            try:
                self.wait.remove(req)
            except ValueError:
                pass
        if not self.running and not self.step_pending and self.wait:
            self._push(now, 2, STEP, None)
            self.step_pending = True
        self._finish(req, now)

    def _finish(self, req, tick: int) -> None:
        """A request left the instance (completed, timed out or dropped)."""
        req.completion_time = tick
        self.in_flight -= 1
        if self.on_done is not None:
            self.on_done(req, tick)

    # -- the step -----------------------------------------------------------------------------
    #
    # Decoding requests "cruise": once a request is past its prompt, every step it decodes one
    # token, its ITL gains that step's latency, and its last KV block gains one token. Nothing
    # else happens to it until its block fills (the block gets its prefix-cache key), it needs
    # a new block, or it completes, and each of those happens at a step known in advance. A
    # cruising request is therefore touched only at those steps; its progress, ITL list and the
    # fill of its last block are brought up to date ("materialized") whenever anything else
    # needs them. Whenever a step could deviate from that pattern (the token budget could run
    # out, or an allocation could fail and preempt), every cruiser is materialized first and the
    # step runs request by request exactly as upstream's does.
    #
    # Where decode blocks get no prefix-cache key (KVCache.decode_keys), a cruiser's new block
    # is not an event either: which unkeyed block a request holds changes nothing, only when
    # blocks leave the free list does. Cruisers are grouped by the step of their first new
    # block modulo the block size (``block_classes``); each step takes as many blocks off the
    # free list, into ``kv.decode_pool``, as its class has members (in batch order among the
    # explicit requests' allocations), and a cruiser is handed its blocks from the pool when it
    # is materialized.

    def step(self, now: int) -> None:
        """Upstream Step: form the batch, time it, advance every request, retire finished ones."""
        wait = self.wait
        if self.running is None and not wait:
            self.step_pending = False
            return
        self.step_count += 1
        step = self.step_count
        if wait:
            if self.priority_policy is not None:
                compute = self.priority_policy.compute
                for req in wait:
                    req.priority = compute(req, now)
            if self.scheduler is not None:
                self.wait = wait = self.scheduler.order(wait)

        latency = self.latency
        positions = latency.needs_positions
        prefill = [] if positions else None
        decode = [] if positions else None
        due = None
        if self.cruisers:
            explicit = self._cruise_step_ok(step)
            if explicit is None:
                self._materialize_all(step)
            else:
                due = self.due.pop(step, None)
        if self.cruisers:
            prefill_tokens, decode_count, due_now = self._form_batch_cruising(
                now, step, explicit, due, prefill, decode)
        else:
            self.due.pop(step, None)
            prefill_tokens, decode_count = self._form_batch(now, prefill, decode)
            explicit = self.running
            due_now = None
        self.wait_samples += len(self.wait)
        kv = self.kv
        adv = latency.step_time(prefill_tokens, decode_count, prefill, decode)
        if kv.pending_transfer_latency:
            adv += kv.consume_pending_transfer_latency()
        if adv < 1:
            adv = 1
        token_latency = adv + latency.output_token_processing_time()
        self.step_latency.append(token_latency)
        first_token_at = now + token_latency
        if self.tiered:
            kv.mirror(self.running)

        # Execute the explicit requests; completion only reads what execution wrote for the
        # same request, so all executions may precede all completions.
        finishing = []
        mml = self.batch_config.max_model_len
        for req in explicit:
            n_in = req.num_input
            progress = req.progress
            if progress < n_in:
                progress = req.progress = req.computed
            elif req.num_new_tokens:
                progress += 1
                req.progress = progress
                if req.itl:
                    req.itl.append(token_latency)
                else:
                    req.itl = [token_latency]
                _cover_steps(req, step, step + 1)
            req.num_new_tokens = 0
            if progress == n_in and not req.ttft_set:
                req.ttft_set = True
                req.first_token_time = first_token_at - req.arrival_time
            n_out = req.num_output
            if (progress >= n_in + (n_out if n_out > 1 else 1) - 1
                    or (mml > 0 and progress >= mml - 1)):
                finishing.append(req)
        if due_now:
            for req in due_now:
                self._materialize(req, step + 1)
            finishing += due_now
            if len(finishing) > len(due_now):
                finishing.sort(key=_batch_order)

        left_at = now + adv
        if finishing:
            for req in finishing:
                n_in = req.num_input
                n_out = req.num_output
                progress = req.progress
                req.state = COMPLETED
                if progress >= n_in + (n_out if n_out > 1 else 1) - 1:
                    if n_out > 0 and progress < n_in + n_out:
                        if not kv.allocate(req, progress, progress + 1, None):
                            self.counters.kv_allocation_failures += 1
                else:
                    self.counters.length_capped += 1
                    req.length_capped = True
                self._retire(req, left_at)
            remaining = [req for req in self.running if req.state is not COMPLETED]
        else:
            remaining = self.running
        if self.cruise:
            for req in explicit:
                if req.state is not COMPLETED and req.progress >= req.num_input:
                    self._start_cruising(req, step + 1)

        if remaining:
            self.running = remaining
            if left_at < self.until and self.cruisers == len(remaining) and not self.wait:
                left_at = self._cruise_ahead(left_at)
            self._push(left_at, 2, STEP, None)
            self.step_pending = True
        else:
            self.running = None
            if self.wait:
                self._push(left_at, 2, STEP, None)
                self.step_pending = True
            else:
                self.step_pending = False

    def _cruise_ahead(self, now: int) -> int:
        """Run the steps that follow while nothing but implicit decodes happens; return the
        time of the first step that must go through the heap.

        With every running request cruising and the wait queue empty, a step only appends its
        latency and performs the block fills and new blocks due at it. Such a step may run at
        once, without being queued, when the event heap would pop it next anyway: its key
        (time, instance index, step priority) is below the heap's smallest, and the time is
        below the cluster's next sampling/horizon mark (``until``). It runs exactly as
        ``step`` would run it; the step sequence numbers it would have used are consumed so
        later events keep theirs. A step with a completion due, a budget that could run out,
        or more new blocks than free ones goes through ``step``.
        """
        cruisers = self.cruisers
        if (cruisers >= self.batch_config.max_scheduled_tokens
                or type(self.latency) not in BUILTIN_MODELS):
            return now
        heap = self.heap
        index = self.index
        until = self.until
        due = self.due
        kv = self.kv
        block_event = self._block_event
        # A run-ahead step allocates nothing but decode blocks, so it never reloads from the
        # CPU tier; the tier only sees the step's mirror, as in ``step``.
        mirror = kv.mirror if self.tiered else None
        latency = self.latency
        running = self.running
        positions = latency.needs_positions
        otpt = latency.output_token_processing_time()
        adv = 0
        if positions:
            # Nobody joins or leaves while running ahead: a cruiser's position is base + step,
            # so step times come in blocks of steps (decode_step_times), a block's unused
            # rest costing only its arithmetic. Most run-aheads are short: the first block is
            # small and the blocks grow.
            bases = np.array([req.cruise_progress - req.cruise_step for req in running])
            times = ()
            times_from = 0
            block = 8
        else:
            adv = latency.step_time(0, cruisers, None, None)
            if adv < 1:
                adv = 1
        token_latency = adv + otpt
        append_latency = self.step_latency.append
        step = self.step_count
        cluster_times = self.cluster_times
        if cluster_times is not None:
            # Only the cluster's events and this instance's own can see or change it.
            if cluster_times and cluster_times[0] < until:
                until = cluster_times[0]
            own = self.own_times
            if own and own[0] < until:
                until = own[0]
            heap = None
        first = step + 1
        last_now = now
        classes = self.block_classes
        if classes is not None:
            bs = kv.block_size
        pooled = 0
        while now < until:
            if heap:
                top = heap[0]
                t = top[0]
                if t < now or t == now and (top[1] < index or top[1] == index and top[2] <= 2):
                    break
            if classes is not None:
                pooled = len(classes[(step + 1) % bs])
                if pooled > kv.free_count:
                    break
            bucket = due.get(step + 1)
            if bucket is not None:
                new_blocks = pooled
                for req, epoch, what in bucket:
                    if epoch != req.cruise_epoch:
                        continue
                    if what == _DONE:
                        new_blocks = -1
                        break
                    if what == _NEW_BLOCK:
                        new_blocks += 1
                if new_blocks < 0 or new_blocks > kv.free_count:
                    break
                step += 1
                del due[step]
                if len(bucket) > 1:
                    # Stable, so stale entries in between do not change the live ones' order.
                    bucket.sort(key=_event_order)
                for req, epoch, what in bucket:
                    if epoch == req.cruise_epoch:
                        block_event(req, epoch, what, step)
            else:
                step += 1
            if pooled:
                kv.pool_decode_blocks(pooled)
            if positions:
                i = step - times_from
                if i >= len(times):
                    times_from, i = step, 0
                    times = latency.decode_step_times(bases, step, block)
                    block = 64 if block < 64 else 256
                adv = times[i]
                token_latency = adv + otpt
            append_latency(token_latency)
            if mirror is not None:
                mirror(running)
            last_now = now
            now += adv
        if step >= first:
            # Nothing in the loop reads these, so they are brought up to date once.
            self.step_count = step
            self.clock = last_now
            self.seq += step - first + 1
        return now

    def _chunk(self, remaining: int, start: int, budget: int) -> int:
        """Prompt tokens to schedule from position ``start``: the remaining ones, capped by the
        long-prefill threshold, the budget and the room left below MaxModelLen."""
        batch = self.batch_config
        n = remaining
        if 0 < batch.long_prefill_threshold < n:
            n = batch.long_prefill_threshold
        if n > budget:
            n = budget
        if batch.max_model_len > 0:
            n = min(n, max(batch.max_model_len - 1 - start, 0))
        return n

    def _start_cruising(self, req, first_step: int) -> None:
        """From ``first_step`` on, the request decodes implicitly; schedule its known events."""
        req.cruising = True
        req.cruise_epoch += 1
        req.cruise_step = first_step
        req.cruise_progress = req.progress
        self.cruisers += 1
        own = req.blocks
        kv = self.kv
        bs = kv.block_size
        first_block = first_step
        if own:
            filled = kv.fill[own[-1]]
            req.tail_step = first_step - 1
            req.tail_fill = filled
            if filled < bs:
                first_block = first_step + bs - filled
        if kv.decode_keys:
            if first_block > first_step:
                self._schedule(req, first_block - 1, _FILL)
            else:
                self._schedule(req, first_block, _NEW_BLOCK)
        else:
            # Pooled decode blocks (see the note above ``step``): the request joins the class
            # of cruisers that take a block at every step congruent to its first one.
            classes = self.block_classes
            if classes is None:
                classes = self.block_classes = [{} for _ in range(bs)]
            classes[first_block % bs][req] = None
            req.first_block_step = first_block
        n_in = req.num_input
        n_out = req.num_output
        target = n_in + (n_out if n_out > 1 else 1) - 1
        mml = self.batch_config.max_model_len
        if mml > 0 and mml - 1 < target:
            target = mml - 1
        self._schedule(req, first_step + target - req.progress - 1, _DONE)

    def _block_event(self, req, epoch: int, what: int, step: int) -> None:
        """A cruiser's block event due at ``step``: its last block fills (and registers) or it
        takes a new decode block; the next event is scheduled."""
        own = req.blocks
        kv = self.kv
        bs = kv.block_size
        if what == _FILL:
            last = own[-1]
            kv.fill[last] = bs
            kv._register_full(req, last, len(own) - 1)
            req.tail_step = step
            req.tail_fill = bs
            at, what = step + 1, _NEW_BLOCK
        else:
            kv.append_decode_block(req, req.cruise_progress + (step - req.cruise_step))
            req.tail_step = step
            req.tail_fill = 1
            at = step + bs - 1 if bs > 1 else step + 1
            what = _FILL if bs > 1 else _NEW_BLOCK
        later = self.due.get(at)
        if later is None:
            self.due[at] = [(req, epoch, what)]
        else:
            later.append((req, epoch, what))

    def _schedule(self, req, step: int, what: int) -> None:
        bucket = self.due.get(step)
        entry = (req, req.cruise_epoch, what)
        if bucket is None:
            self.due[step] = [entry]
        else:
            bucket.append(entry)

    def _materialize(self, req, next_step: int) -> None:
        """Bring a cruiser's progress, ITL and last-block fill up to the start of ``next_step``
        and make it an ordinary (explicit) request again."""
        first = req.cruise_step
        req.progress = req.cruise_progress + (next_step - first)
        if next_step > first:
            if req.itl:
                req.itl.extend(self.step_latency[first:next_step])
            else:
                req.itl = self.step_latency[first:next_step].tolist()
            _cover_steps(req, first, next_step)
        if self.block_classes is not None:
            self._hand_over_blocks(req, next_step)
        own = req.blocks
        if own and req.tail_step < next_step - 1:
            self.kv.fill[own[-1]] = req.tail_fill + (next_step - 1 - req.tail_step)
        req.cruising = False
        req.cruise_epoch += 1
        self.cruisers -= 1

    def _hand_over_blocks(self, req, next_step: int) -> None:
        """Give a pooled cruiser the blocks it took before ``next_step``, from the pool, and take
        it out of its class."""
        first_block = req.first_block_step
        kv = self.kv
        bs = kv.block_size
        del self.block_classes[first_block % bs][req]
        if next_step <= first_block:
            return
        taken = (next_step - first_block + bs - 1) // bs
        pool = kv.decode_pool
        cut = len(pool) - taken
        blocks = pool[cut:]
        del pool[cut:]
        fill = kv.fill
        origin = kv.origin
        own = req.blocks
        if own:
            fill[own[-1]] = bs
            own.extend(blocks)
        else:
            req.blocks = blocks
        position = req.cruise_progress + (first_block - req.cruise_step)
        for b in blocks:
            fill[b] = bs
            origin[b] = position
            position += bs
        fill[blocks[-1]] = 1
        req.tail_step = first_block + (taken - 1) * bs
        req.tail_fill = 1

    def _materialize_all(self, step: int) -> None:
        for req in self.running:
            if req.cruising:
                self._materialize(req, step)
        self.due.clear()

    def _cruise_step_ok(self, step: int):
        """The explicit (prefilling) requests if this step can run with implicit decodes, else
        None: the budget must not run out before any request and no allocation may fail."""
        running = self.running
        explicit = ([] if self.cruisers == len(running)
                    else [req for req in running if not req.cruising])
        batch = self.batch_config
        bs = self.kv.block_size
        demand = self.cruisers
        blocks = 0
        for req in explicit:
            progress = req.progress
            n = req.num_input - progress
            if n > 0:
                n = self._chunk(n, progress, n)
                demand += n
                blocks += -(-n // bs) + 1
            elif req.num_output > 0:
                return None  # a decoding request that is not cruising: take the exact path
        if demand >= batch.max_scheduled_tokens:
            return None
        bucket = self.due.get(step)
        if bucket:
            for req, epoch, what in bucket:
                if what == _NEW_BLOCK and epoch == req.cruise_epoch:
                    blocks += 1
        classes = self.block_classes
        if classes is not None:
            blocks += len(classes[step % bs])
        if blocks > self.kv.free_count:
            return None
        return explicit

    def _form_batch_cruising(self, now, step, explicit, due, prefill, decode):
        """Batch formation while some requests cruise (see the note above ``step``)."""
        kv = self.kv
        done = []
        # Explicit requests and live block events, in batch order; an explicit request is
        # wrapped like a due entry so both sort by the same key.
        work = [(req, 0, _EXPLICIT) for req in explicit]
        if due:
            events = False
            for entry in due:
                req = entry[0]
                if entry[1] != req.cruise_epoch:
                    continue
                if entry[2] == _DONE:
                    done.append(req)
                else:
                    work.append(entry)
                    events = True
            if events and len(work) > 1:
                work.sort(key=_event_order)
        classes = self.block_classes
        takers = classes[step % kv.block_size] if classes is not None else None
        if takers:
            if work:
                # Their blocks leave the free list in batch order, between the explicit
                # requests' allocations.
                work += [(req, 0, _POOLED) for req in takers]
                work.sort(key=_event_order)
            else:
                kv.pool_decode_blocks(len(takers))
        budget = self.batch_config.max_scheduled_tokens - self.cruisers
        prefill_tokens = 0
        block_event = self._block_event
        for req, epoch, what in work:
            if what != _EXPLICIT:
                if what == _POOLED:
                    kv.pool_decode_blocks(1)
                else:
                    block_event(req, epoch, what, step)
                continue
            progress = req.progress
            n = req.num_input - progress
            if n > 0:
                # The step check guarantees the budget lasts: no budget cap here.
                n = self._chunk(n, progress, n)
                kv.allocate(req, progress, progress + n, None)
                budget -= n
                req.num_new_tokens = n
                req.computed += n
                if n > 0:
                    prefill_tokens += n
                    if prefill is not None:
                        prefill.append((progress, n, req.num_input))
        decode_count = self.cruisers
        if decode is not None:
            decode.extend(req.cruise_progress + (step - req.cruise_step)
                          for req in self.running if req.cruising)
        before = len(self.running)
        admitted_tokens, admitted_decodes = self._admit(now, budget, prefill, decode)
        explicit.extend(self.running[before:])
        return prefill_tokens + admitted_tokens, decode_count + admitted_decodes, done

    def _form_batch(self, now: int, prefill: list | None, decode: list | None) -> tuple[int, int]:
        """Upstream FormBatch. Returns the scheduled prefill tokens and decode requests, and fills
        ``prefill`` with (progress, tokens, input length) and ``decode`` with progress when given.

        ``num_new_tokens`` is already 0 for every running request: execution resets it.
        """
        running = self.running
        if running is None:
            running = self.running = []
        batch = self.batch_config
        budget = batch.max_scheduled_tokens
        mml = batch.max_model_len
        kv = self.kv
        fill = kv.fill
        bs = kv.block_size
        register_full = kv._register_full
        self._preempted = False
        prefill_tokens = 0
        decode_count = 0

        # Phase 1: running requests by index; preemption shrinks the list from the tail.
        i = 0
        while i < len(running):
            if budget <= 0:
                break
            req = running[i]
            n_in = req.num_input
            progress = req.progress
            n = n_in - progress
            if n > 0:
                n = self._chunk(n, progress, budget)
                if not self._reserve(req, n):
                    break
                budget -= n
                req.num_new_tokens = n
                req.computed += n
                if n > 0:
                    prefill_tokens += n
                    if prefill is not None:
                        prefill.append((progress, n, req.num_input))
            elif req.num_output > 0 and not (mml > 0 and progress + 1 > mml - 1):
                # Decode one token; the common case only tops up the request's last block.
                # (``computed`` is only read while prefilling, so decode leaves it alone.)
                own = req.blocks
                if own and fill[own[-1]] < bs:
                    last = own[-1]
                    filled = fill[last] + 1
                    fill[last] = filled
                    if filled == bs:
                        register_full(req, last, len(own) - 1)
                elif not self._reserve(req, 1):
                    break
                budget -= 1
                req.num_new_tokens = 1
                decode_count += 1
                if decode is not None:
                    decode.append(progress)
            i += 1

        # Phase 2: admit from the head of the wait queue (FCFS, head-of-line blocking).
        if self._preempted:
            return prefill_tokens, decode_count
        admitted_tokens, admitted_decodes = self._admit(now, budget, prefill, decode)
        return prefill_tokens + admitted_tokens, decode_count + admitted_decodes

    def _admit(self, now: int, budget: int, prefill, decode) -> tuple[int, int]:
        """Phase 2 of batch formation: admit from the wait-queue head while budget and room last."""
        running = self.running
        wait = self.wait
        kv = self.kv
        bs = kv.block_size
        batch = self.batch_config
        max_running = batch.max_running
        prefill_tokens = 0
        decode_count = 0
        while len(running) < max_running and wait and budget > 0:
            nxt = wait[0]
            if nxt.pd_decode:
                # Its prompt's KV came from the prefill pool: one token at once, no prefix
                # lookup. (After a preemption upstream takes this path too, and recomputes one
                # prompt token.)
                start, n = nxt.progress, 1
                allocated = kv.allocate(nxt, start, start + 1, None)
            else:
                cached = kv.cached_blocks(nxt)
                start = len(cached) * bs
                n = self._chunk(nxt.num_input - start, start, budget)
                allocated = kv.allocate(nxt, start, start + n, cached)
            if not allocated:
                break
            wait.popleft()
            running.append(nxt)
            nxt.scheduled_step = self.step_count
            self.admissions += 1
            nxt.batch_seq = self.admissions
            nxt.scheduling_delay = now - nxt.arrival_time
            budget -= n
            nxt.state = RUNNING
            nxt.num_new_tokens = n
            nxt.computed = n + start
            if n > 0:
                if nxt.progress < nxt.num_input:
                    prefill_tokens += n
                    if prefill is not None:
                        prefill.append((nxt.progress, n, nxt.num_input))
                elif nxt.num_output > 0:
                    decode_count += 1
                    if decode is not None:
                        decode.append(nxt.progress)
        return prefill_tokens, decode_count

    def _reserve(self, req, n: int) -> bool:
        """Upstream preemptForTokens: allocate, evicting from the batch tail until it fits."""
        kv = self.kv
        running = self.running
        target = req.progress + n
        while True:
            if kv.allocate(req, req.progress, target, None):
                return True
            if not running:
                return False
            self._preempted = True
            victim = running.pop()
            victim.num_new_tokens = 0
            victim.state = STATE_QUEUED
            victim.progress = 0
            victim.itl = ()
            victim.itl_steps = None
            kv.release(victim)
            victim.computed = 0
            self.wait.appendleft(victim)
            victim.preemptions += 1
            self.counters.preemptions += 1
            if victim is req:
                if not running:
                    self._preempted_alone(req, target)
                return False

    def _preempted_alone(self, req, target: int) -> None:
        """``req`` preempted itself with no other request running. If even the whole cache is
        too small for its next tokens, it will be readmitted, recompute to the same point and
        be preempted again, forever (upstream does the same). With a horizon that loop ends
        and is part of the result; without one the run would never end, so it stops here
        with the reason."""
        if self.horizon < MAX_TICK:
            return
        kv = self.kv
        needed = -(-target // kv.block_size)
        if needed <= kv.total_blocks:
            return          # something else holds blocks now; they can come free later
        raise UnservableRequestError(
            f"{req.id} can never complete on {self.id}: at {target} of its "
            f"{req.num_input + req.num_output} tokens (input {req.num_input} + output "
            f"{req.num_output}) it needs {needed} KV blocks but the cache holds "
            f"{kv.total_blocks}, so it is preempted forever and the run never ends; give a "
            f"larger --total-kv-blocks, a --max-model-len, or a --horizon")

    def _retire(self, req, left_at: int) -> None:
        """Release a finished request's blocks and record its latencies."""
        self.kv.release(req)
        req.finished_step = self.step_count
        if left_at <= self.horizon and left_at > self.last_left:
            self.last_left = left_at
        counters = self.counters
        counters.completed += 1
        counters.ttft_sum += req.first_token_time
        n_in = req.num_input
        n_out = req.num_output
        decoded = req.progress - n_in
        if decoded < n_out:
            decoded += 1
        if decoded > 0:
            counters.total_output_tokens += decoded
        itl = req.itl
        if req.pd_decode:
            req.first_itl = itl[0] if itl else None
        steps = req.itl_steps
        if steps:
            self.itl_starts.extend(steps[0::2])
            self.itl_ends.extend(steps[1::2])
            req.itl_steps = None
        itl_sum = sum(itl)
        latency = req.first_token_time + itl_sum
        if n_out > 0:
            latency += self.latency.post_decode_fixed_overhead()
            if req.length_capped:
                req.itl_mean = itl_sum / max(len(itl) - 1, 1)
            else:
                req.itl_mean = itl_sum / max(n_out - 1, 1)
        else:
            req.itl_mean = 0.0
        req.e2e = latency
        # The distribution of every ITL entry lives in itl_counts; the list is no longer needed.
        req.itl = ()
        self.completed_requests.append(req)
        self._finish(req, left_at)
        # After _finish: a session builds its next round from this round's tokens there.
        req.drop_tokens()

    def audit(self) -> None:
        """Check the KV books: every block is either free or referenced by running requests.

        Only tests call this; it walks the whole block store.
        """
        kv = self.kv
        refs = Counter()
        for req in self.running or ():
            for b in req.blocks or ():
                refs[b] += 1
        for req in self.wait:  # a tiered reload may leave blocks with a waiting request
            for b in req.blocks or ():
                refs[b] += 1
        pool = kv.decode_pool
        for b in pool:          # each held by a cruiser, handed over when it is brought up to date
            refs[b] += 1
        taken = sum(-(-(self.step_count + 1 - req.first_block_step) // kv.block_size)
                    for req in self.running or () if req.cruising and not kv.decode_keys
                    and req.first_block_step <= self.step_count)
        if taken != len(pool):
            raise AssertionError(f"{self.id}: {len(pool)} pooled decode blocks, cruisers took "
                                 f"{taken}")
        free_list = kv.free_blocks()
        free = len(free_list)
        if len(set(free_list)) != free:
            raise AssertionError(f"{self.id}: a block is on the free list twice")
        for b in free_list:
            if kv.refcount[b] != 0:
                raise AssertionError(f"{self.id}: block {b} is on the free list with references")
        if free != kv.free_count:
            raise AssertionError(f"{self.id}: free list holds {free} blocks, counter says "
                                 f"{kv.free_count}")
        for blk in range(kv.total_blocks):
            if kv.refcount[blk] != refs.get(blk, 0):
                raise AssertionError(f"{self.id}: block {blk} has {kv.refcount[blk]} references,"
                                     f" requests hold {refs.get(blk, 0)}")
        if free + sum(1 for c in kv.refcount if c > 0) != kv.total_blocks:
            raise AssertionError(f"{self.id}: free + used != total blocks")

    # -- end of run ---------------------------------------------------------------------------
    @property
    def itl_counts(self) -> Counter:
        """ITL value -> number of entries, over every completed request.

        An entry of step s has the value step_latency[s], so the distribution is the step
        latencies weighted by how many completed requests' ranges cover each step. Steps are
        taken in chunks so the weights never need an array as long as the whole run.
        """
        # The per-instance and the cluster summaries both read it: count once per state.
        state = (len(self.itl_starts), len(self.step_latency))
        cached = self._itl_counts
        if cached is not None and cached[0] == state:
            return Counter(cached[1])
        counts: Counter = Counter()
        self._itl_counts = (state, counts)
        starts = np.sort(np.frombuffer(self.itl_starts, dtype=np.int64))
        if not len(starts):
            return Counter(counts)
        ends = np.sort(np.frombuffer(self.itl_ends, dtype=np.int64))
        latency = np.frombuffer(self.step_latency, dtype=np.int64)
        n = len(latency)
        covering = 0
        for lo in range(int(starts[0]), n, _ITL_CHUNK):
            hi = min(lo + _ITL_CHUNK, n)
            s0, s1 = np.searchsorted(starts, (lo, hi))
            e0, e1 = np.searchsorted(ends, (lo, hi))
            delta = (np.bincount(starts[s0:s1] - lo, minlength=hi - lo)
                     - np.bincount(ends[e0:e1] - lo, minlength=hi - lo))
            weight = np.cumsum(delta) + covering
            covering = int(weight[-1])
            used = weight > 0
            values, where = np.unique(latency[lo:hi][used], return_inverse=True)
            tally = np.bincount(where, weights=weight[used])
            for v, c in zip(values.tolist(), tally.tolist()):
                counts[v] += int(c)
        return Counter(counts)

    def finalize(self) -> None:
        if self.cruisers:
            self._materialize_all(self.step_count + 1)
        counters = self.counters
        counters.still_queued = len(self.wait)
        counters.still_running = len(self.running) if self.running else 0
        clock = max(self.clock, self.last_left)
        counters.sim_ended_time = min(clock, self.horizon)
