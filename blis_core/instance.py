"""One vLLM-style serving instance: wait queue, batch formation, step execution, completion.

The instance does not own a clock loop: the cluster pops its events from the shared heap and
calls ``handle``. Everything here follows upstream BLIS at 4e179804 (engine.md sections 1-2);
the step is the hot path of every run and is written flat, with attribute lookups hoisted.
"""

from __future__ import annotations

from collections import Counter, deque
from heapq import heappush

import attrs

from blis_core.events import ARRIVAL, QUEUED, STEP, TIMEOUT
from blis_core.request import COMPLETED, QUEUED as STATE_QUEUED, RUNNING, TIMED_OUT


@attrs.frozen
class BatchConfig:
    """Batch-formation limits of one instance (upstream BatchConfig plus MaxModelLen)."""

    max_running: int = 256
    max_scheduled_tokens: int = 2048
    long_prefill_threshold: int = 0
    max_model_len: int = 0


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
                 horizon: int, priority_policy=None, scheduler=None, on_done=None) -> None:
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
        self.last_left = 0
        self.counters = InstanceCounters()
        self.requests: dict = {}          # registered at injection, removed on an enqueue drop
        self.completed_requests: list = []
        self.itl_counts: Counter = Counter()
        self.admissions = 0
        self.wait_samples = 0             # sum over steps of the wait-queue length (HOL blocking)
        self.tiered = hasattr(kv, "mirror_count")

    # -- events -------------------------------------------------------------------------------
    def _push(self, time: int, priority: int, kind: int, payload) -> None:
        self.seq += 1
        heappush(self.heap, (time, self.index, priority, self.seq, kind, payload))

    def inject(self, req, time: int) -> None:
        """Routing delivered a request: its instance Arrival is at ``time``."""
        self.requests[req.id] = req
        self._push(time, 0, ARRIVAL, req)

    def handle(self, time: int, kind: int, req) -> bool:
        """Execute one popped event. Returns False for a lazily cancelled timeout, which upstream
        pops without moving any clock."""
        if kind == STEP:
            self.clock = time
            self.step(time)
        elif kind == ARRIVAL:
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
    def step(self, now: int) -> None:
        """Upstream Step: form the batch, time it, advance every request, retire finished ones.

        Upstream walks the batch four times (zero, form, execute, complete); here batch formation
        also accumulates the step-time inputs, and execution and completion share one pass
        (completion only reads state execution wrote for the same request).
        """
        wait = self.wait
        if self.running is None and not wait:
            self.step_pending = False
            return
        self.step_count += 1
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
        prefill_tokens, decode_count = self._form_batch(now, prefill, decode)
        self.wait_samples += len(self.wait)
        kv = self.kv
        adv = latency.step_time(prefill_tokens, decode_count, prefill, decode)
        if kv.pending_transfer_latency:
            adv += kv.consume_pending_transfer_latency()
        if adv < 1:
            adv = 1
        token_latency = adv + latency.output_token_processing_time()
        first_token_at = now + token_latency
        if self.tiered:
            kv.mirror(self.running)

        remaining = []
        mml = self.batch_config.max_model_len
        left_at = now + adv
        for req in self.running:
            n_in = req.num_input
            progress = req.progress
            if progress < n_in:
                progress = req.progress = req.computed
            elif req.num_new_tokens:
                progress += 1
                req.progress = progress
                req.itl.append(token_latency)
            req.num_new_tokens = 0
            if progress == n_in and not req.ttft_set:
                req.ttft_set = True
                req.first_token_time = first_token_at - req.arrival_time
            n_out = req.num_output
            if progress >= n_in + (n_out if n_out > 1 else 1) - 1:
                req.state = COMPLETED
                if n_out > 0 and progress < n_in + n_out:
                    if not kv.allocate(req, progress, progress + 1, None):
                        self.counters.kv_allocation_failures += 1
                self._retire(req, left_at)
            elif mml > 0 and progress >= mml - 1:
                self.counters.length_capped += 1
                req.length_capped = True
                req.state = COMPLETED
                self._retire(req, left_at)
            else:
                remaining.append(req)

        if remaining:
            self.running = remaining
            self._push(left_at, 2, STEP, None)
            self.step_pending = True
        else:
            self.running = None
            if self.wait:
                self._push(left_at, 2, STEP, None)
                self.step_pending = True
            else:
                self.step_pending = False

    def _form_batch(self, now: int, prefill: list | None, decode: list | None) -> tuple[int, int]:
        """Upstream FormBatch. Returns the scheduled prefill tokens and decode requests, and fills
        ``prefill`` with (progress, tokens) and ``decode`` with progress when given.

        ``num_new_tokens`` is already 0 for every running request: execution resets it.
        """
        running = self.running
        if running is None:
            running = self.running = []
        batch = self.batch_config
        budget = batch.max_scheduled_tokens
        long_prefill = batch.long_prefill_threshold
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
                if 0 < long_prefill < n:
                    n = long_prefill
                if n > budget:
                    n = budget
                if mml > 0:
                    n = min(n, max(mml - 1 - progress, 0))
                if not self._reserve(req, n):
                    break
                budget -= n
                req.num_new_tokens = n
                req.computed += n
                if n > 0:
                    prefill_tokens += n
                    if prefill is not None:
                        prefill.append((progress, n))
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
        wait = self.wait
        max_running = batch.max_running
        while len(running) < max_running and wait and budget > 0:
            nxt = wait[0]
            cached = kv.cached_blocks(nxt)
            start = len(cached) * bs
            n = nxt.num_input - start
            if 0 < long_prefill < n:
                n = long_prefill
            if n > budget:
                n = budget
            if mml > 0:
                n = min(n, max(mml - 1 - start, 0))
            if not kv.allocate(nxt, start, start + n, cached):
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
                        prefill.append((nxt.progress, n))
                elif nxt.num_output > 0:
                    decode_count += 1
                    if decode is not None:
                        decode.append(nxt.progress)
        return prefill_tokens, decode_count

    def _reserve(self, req, n: int) -> bool:
        """Upstream preemptForTokens: allocate, evicting from the batch tail until it fits."""
        kv = self.kv
        running = self.running
        while True:
            if kv.allocate(req, req.progress, req.progress + n, None):
                return True
            if not running:
                return False
            self._preempted = True
            victim = running.pop()
            victim.num_new_tokens = 0
            victim.state = STATE_QUEUED
            victim.progress = 0
            victim.itl = []
            kv.release(victim)
            victim.computed = 0
            self.wait.appendleft(victim)
            victim.preemptions += 1
            self.counters.preemptions += 1
            if victim is req:
                return False

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
        self.itl_counts.update(itl)
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
        req.itl = []
        self.completed_requests.append(req)
        self._finish(req, left_at)

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
        free = 0
        b = kv.head
        while b != -1:
            free += 1
            if kv.refcount[b] != 0:
                raise AssertionError(f"{self.id}: block {b} is on the free list with references")
            b = kv.next[b]
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
    def finalize(self) -> None:
        counters = self.counters
        counters.still_queued = len(self.wait)
        counters.still_running = len(self.running) if self.running else 0
        clock = max(self.clock, self.last_left)
        counters.sim_ended_time = min(clock, self.horizon)
