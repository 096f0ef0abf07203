"""The cluster loop: one shared clock over arrival, admission, routing and every instance.

Every run goes through this loop, a single instance included, exactly as upstream's CLI does.
Cluster and instance events share one heap; see ``blis_core.events`` for the ordering key.
"""

from __future__ import annotations

from heapq import heappop, heappush
from itertools import islice
from operator import le

from blis_core.events import (ADMISSION, CLUSTER_ARRIVAL, CLUSTER_LANE, DISAGGREGATION,
                              MAX_TICK, ROUTING, SCALING_TICK)
from blis_core.kvcache import decode_keys_matter, prompt_hash_chain
from blis_core.protocols import RouterState, Snapshot
from blis_core.slo import is_sheddable



class _CachedSnapshot:
    """One instance's cached snapshot fields and the last refresh tick of each field group."""

    __slots__ = ("preemptions", "queue_depth", "batch_size", "kv_utilization", "free_kv_blocks",
                 "cache_hit_rate", "total_kv_capacity_tokens", "kv_tokens_in_use",
                 "t_preemptions", "t_queue", "t_batch", "t_kv")

    def __init__(self) -> None:
        self.preemptions = self.queue_depth = self.batch_size = 0
        self.kv_utilization = self.cache_hit_rate = 0.0
        self.free_kv_blocks = self.total_kv_capacity_tokens = self.kv_tokens_in_use = 0
        self.t_preemptions = self.t_queue = self.t_batch = self.t_kv = 0


class PrefixCacheView:
    """Routers' read-only view of each instance's GPU prefix cache (upstream ``cacheQueryFn``).

    ``query(instance_id, request)`` counts the consecutive full prompt blocks of the request whose
    prefix-cache keys the instance holds. With ``delay`` > 0 (``--cache-signal-delay``) it reads
    a frozen copy of each instance's key set, taken at construction (empty) and again whenever a
    router state is built at least ``delay`` ticks after the previous copy; with 0 it reads the
    live map ("oracle" mode).

    The frozen copy is never built. Each block store records, for every key it sets or removes
    after the copy was taken, whether the copy holds it (``KVCache.stale_keys``, the first change
    only); the copy holds a key as recorded there, or else exactly when the live map does. Taking
    a new copy clears the record. Copying, or replaying a journal of, thousands of keys every
    delay dominated weighted runs.
    """

    def __init__(self, instances, delay: int) -> None:
        self.block_size = {}
        self.delay = delay
        self.last_refresh = 0
        self.maps = {}
        self.stale = {}
        for inst in instances:
            self.add(inst)

    def add(self, inst) -> None:
        """An instance (also one an autoscaler builds during the run) joins the view, its copy
        empty."""
        kv = inst.kv
        self.block_size[inst.id] = kv.block_size
        self.maps[inst.id] = kv.key_to_block
        if self.delay > 0:
            kv.stale_keys = self.stale[inst.id] = dict.fromkeys(kv.key_to_block, False)

    def refresh(self, clock: int) -> None:
        """Re-freeze every instance's key set if ``delay`` has passed since the last time."""
        if self.delay <= 0 or clock - self.last_refresh < self.delay:
            return
        for stale in self.stale.values():
            stale.clear()
        self.last_refresh = clock

    def frozen_keys(self, instance_id: str) -> set:
        """The keys routers see for the instance: the frozen copy, materialized (for audits)."""
        live = self.maps[instance_id]
        stale = self.stale.get(instance_id)
        if stale is None:
            return set(live)
        return ({k for k in live if k not in stale}
                | {k for k, held in stale.items() if held})

    def query(self, instance_id: str, request) -> int:
        live = self.maps.get(instance_id)
        if live is None:
            return 0
        stale = self.stale.get(instance_id)
        n = 0
        if stale:
            for key in prompt_hash_chain(request, self.block_size[instance_id]):
                held = stale.get(key)
                if not (key in live if held is None else held):
                    break
                n += 1
        else:
            for key in prompt_hash_chain(request, self.block_size[instance_id]):
                if key not in live:
                    break
                n += 1
        return n


class TenantBudgets:
    """Per-tenant shares of the cluster's running slots (upstream's tenant tracker).

    After the admission policy admits a request, it is shed anyway if its class is sheddable
    and its tenant already has more requests in flight than ``share x total capacity``.
    """

    def __init__(self, shares: dict, total_capacity: int, slo_priorities: dict | None) -> None:
        self.shares = dict(shares)
        self.total_capacity = max(1, total_capacity)
        self.slo_priorities = slo_priorities
        self.in_flight: dict = {}

    def over_budget(self, tenant: str) -> bool:
        share = self.shares.get(tenant)
        return (bool(tenant) and share is not None
                and self.in_flight.get(tenant, 0) > share * self.total_capacity)

    def sheds(self, req) -> bool:
        return self.over_budget(req.tenant_id) and is_sheddable(req.slo_class,
                                                                self.slo_priorities)

    def started(self, tenant: str) -> None:
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1

    def finished(self, tenant: str) -> None:
        count = self.in_flight.get(tenant, 0)
        if count > 0:
            self.in_flight[tenant] = count - 1


class Cluster:
    """Runs requests through admission and routing into instances until the horizon."""

    def __init__(self, instances, admission, routing, *, horizon: int = MAX_TICK,
                 admission_latency: int = 0, routing_latency: int = 0, model: str = "",
                 sessions=None, audit: bool = False, snapshot_refresh_interval: int = 0,
                 cache_signal_delay: int = 50_000, tenant_budgets=None, trace=None) -> None:
        self.instances = instances
        self.admission = admission
        self.routing = routing
        self.horizon = horizon
        self.admission_latency = admission_latency
        self.routing_latency = routing_latency
        self.model = model
        self.sessions = sessions
        self.heap: list = instances[0].heap if instances else []
        self.seq = 0
        self.clock = 0
        self.rejected = 0
        self.arrivals = 0                 # requests offered to the cluster so far
        self.shed_by_tier: dict = {}      # rejected requests by SLO class ("" -> "standard")
        self.tenants = tenant_budgets     # a TenantBudgets, or None
        self.trace = trace                # a DecisionTrace, or None: nothing recorded
        self.pd = None                    # a Disaggregation when P/D pools are configured
        self.gateway = None               # a flowcontrol.Gateway with --flow-control
        self.elastic = None               # an autoscaling.Elasticity with node pools/autoscaler
        # The instances routers may see; the same list as ``instances`` unless an instance's
        # lifecycle (blis_core.infrastructure) takes it out of routing.
        self.routable = instances
        self.arrivals_pushed = 0          # arrival events queued so far
        self.routing_rejections = 0
        self.by_id = {inst.id: inst for inst in instances}
        # Tests turn this on to check the clock and every instance's KV books after each event.
        self.audit = audit
        # Decode-only steps may run ahead of the event heap (Instance._cruise_ahead); tests
        # turn this off to check that it changes nothing.
        self.fast_forward = True
        self.pending_times: list = []     # the times of the cluster events in the heap (a heap)
        for inst in instances:
            inst.on_done = self._request_done
        # Upstream's CachedSnapshotProvider: with an interval > 0 every field group of a snapshot
        # is refreshed lazily, when a router state is built at least that long after the group's
        # previous refresh; until then routers see the cached (initially all-zero) values.
        self.snapshot_refresh_interval = snapshot_refresh_interval
        if snapshot_refresh_interval > 0:
            self.router_state = self._router_state_periodic
            # Per instance: cached values and the last refresh of each field group.
            self._cached = {inst.id: _CachedSnapshot() for inst in instances}
        # An admission policy that declares it never reads its router state gets None. With live
        # snapshots building one has no effect but the prefix-cache view's refresh, which still
        # happens; periodic snapshots move their refresh timers, so they are always built.
        self.admission_reads_state = (getattr(admission, "reads_router_state", True)
                                      or snapshot_refresh_interval > 0)
        # The prefix-cache query (upstream cacheQueryFn), built only for policies that use it:
        # freezing every instance's prefix map each cache-signal-delay is not free.
        self.cache_view = None
        self.cache_query = None
        if (getattr(routing, "uses_cache_query", False)
                or getattr(admission, "uses_cache_query", False)):
            self.cache_view = PrefixCacheView(instances, cache_signal_delay)
            self.cache_query = self.cache_view.query

    def _push(self, time: int, kind: int, req) -> None:
        heappush(self.heap, (time, CLUSTER_LANE, kind, self.seq, kind, req))
        heappush(self.pending_times, time)
        self.seq += 1

    def _request_done(self, req, tick: int) -> None:
        """Instance callback: a request left; a session may answer with its next round."""
        if self.gateway is not None:
            self.gateway.finished += 1
        if self.tenants is not None:
            self.tenants.finished(req.tenant_id)
        if self.pd is not None and self.pd.request_left(req):
            return    # a P/D sub-request: its parent's completion answers the session
        if self.sessions is not None:
            follow_up = self.sessions.on_complete(req, tick)
            if follow_up is not None:
                self.arrivals_pushed += 1
                self._push(follow_up.arrival_time, CLUSTER_ARRIVAL, follow_up)

    def pending_arrivals(self) -> int:
        """Arrival events pushed and not yet popped (upstream pendingArrivals)."""
        return self.arrivals_pushed - self.arrivals

    def add_instance(self, inst, routable: bool = True) -> None:
        """An instance built during the run joins the cluster after the others (routable now,
        or once :meth:`start_routing` is called for it)."""
        self._own_routable()
        self.instances.append(inst)
        if routable:
            self.routable.append(inst)
        self.by_id[inst.id] = inst
        inst.on_done = self._request_done
        if self.snapshot_refresh_interval > 0:
            self._cached[inst.id] = _CachedSnapshot()
        if self.cache_view is not None:
            self.cache_view.add(inst)

    def start_routing(self, inst) -> None:
        """A loaded instance becomes routable, in its place in instance order."""
        self._own_routable()
        members = set(map(id, self.routable))
        members.add(id(inst))
        self.routable[:] = [i for i in self.instances if id(i) in members]

    def stop_routing(self, inst) -> None:
        """A draining instance leaves routing (it stays in ``instances`` to finish its work)."""
        self._own_routable()
        self.routable.remove(inst)

    def _own_routable(self) -> None:
        if self.routable is self.instances:
            self.routable = list(self.instances)

    def deliver(self, req, target, time: int, decode_with_kv: bool = False) -> None:
        """A routed request goes to its instance (a P/D decode sub-request with its KV)."""
        target.in_flight += 1
        target.routed += 1
        if self.tenants is not None:
            self.tenants.started(req.tenant_id)
        if decode_with_kv:
            target.inject_decode(req, time)
        else:
            target.inject(req, time)

    def parent_done(self, request, decode, state: str, tick: int) -> None:
        """A disaggregated request finished: its session sees the original request, with the
        decode half's progress, at the parent's completion time."""
        if self.sessions is None:
            return
        request.state = state
        request.progress = decode.progress
        follow_up = self.sessions.on_complete(request, tick)
        if follow_up is not None:
            self.arrivals_pushed += 1
            self._push(follow_up.arrival_time, CLUSTER_ARRIVAL, follow_up)

    def pool_state(self, req, pool_ids) -> RouterState:
        """Upstream buildPoolFilteredSnapshots: every instance's snapshot (so every refresh
        timer moves), then only the pool's, without refreshing the prefix-cache view."""
        state = self.router_state(None, refresh_cache=False)
        return RouterState([s for s in state.snapshots if s.id in pool_ids], state.clock,
                           state.cache_query)

    def router_state(self, req, refresh_cache: bool = True) -> RouterState:
        """Upstream buildRouterState with every field Immediate (``--snapshot-refresh-interval``
        0): live values of the instances serving the request's model."""
        clock = self.clock
        if self.cache_view is not None and refresh_cache:
            self.cache_view.refresh(clock)
        model = self.model
        if req is not None and req.model and model and req.model != model:
            return RouterState([], clock, self.cache_query)
        # Built once per instance for every admission and routing decision: tuple.__new__
        # skips the named tuple's Python-level constructor.
        make = tuple.__new__
        snapshots = []
        for inst in self.routable:
            kv = inst.kv
            used = kv.used_blocks()
            total = kv.total_blocks
            block_size = kv.block_size
            running = inst.running
            snapshots.append(make(Snapshot, (
                inst.id,
                len(inst.wait),
                len(running) if running else 0,
                used / total if total > 0 else 0.0,
                total - used,
                kv.cache_hit_rate(),
                inst.in_flight,
                inst.counters.preemptions,
                model,
                inst.gpu_type,
                inst.tp_degree,
                inst.cost_per_hour,
                total * block_size,
                used * block_size,
            )))
        return RouterState(snapshots, clock, self.cache_query)

    def _router_state_periodic(self, req, refresh_cache: bool = True) -> RouterState:
        """buildRouterState with Periodic field groups (``--snapshot-refresh-interval`` > 0).

        Only the instances that pass the model filter are queried, so only their timers move,
        as upstream. In-flight counts are always live (the cluster's own bookkeeping).
        """
        snapshots = []
        clock = self.clock
        interval = self.snapshot_refresh_interval
        if self.cache_view is not None and refresh_cache:
            self.cache_view.refresh(clock)
        cached = self._cached
        for inst in self.routable:
            if req is not None and req.model and self.model and req.model != self.model:
                continue
            c = cached[inst.id]
            if clock - c.t_preemptions >= interval:
                c.preemptions = inst.counters.preemptions
                c.t_preemptions = clock
            if clock - c.t_queue >= interval:
                c.queue_depth = len(inst.wait)
                c.t_queue = clock
            if clock - c.t_batch >= interval:
                running = inst.running
                c.batch_size = len(running) if running else 0
                c.t_batch = clock
            if clock - c.t_kv >= interval:
                kv = inst.kv
                used = kv.used_blocks()
                total = kv.total_blocks
                c.kv_utilization = used / total if total > 0 else 0.0
                c.free_kv_blocks = total - used
                c.cache_hit_rate = kv.cache_hit_rate()
                c.total_kv_capacity_tokens = total * kv.block_size
                c.kv_tokens_in_use = used * kv.block_size
                c.t_kv = clock
            snapshots.append(Snapshot(
                inst.id,
                c.queue_depth,
                c.batch_size,
                c.kv_utilization,
                c.free_kv_blocks,
                c.cache_hit_rate,
                inst.in_flight,
                c.preemptions,
                self.model,
                inst.gpu_type,
                inst.tp_degree,
                inst.cost_per_hour,
                c.total_kv_capacity_tokens,
                c.kv_tokens_in_use,
            ))
        return RouterState(snapshots, clock, self.cache_query)

    def _drop_unreachable_decode_keys(self, arrivals) -> None:
        """Turn off decode blocks' prefix-cache keys where no lookup of this run can reach one
        (``KVCache.decode_keys``). Sessions build prompts from earlier outputs and P/D hands
        requests between pools, so both keep them; so does the CPU tier, which stores them, and
        the reference engine (an instance that does not cruise)."""
        if self.sessions is not None or self.pd is not None:
            return
        verdicts = {}
        for inst in self.instances:
            kv = inst.kv
            if inst.tiered or not inst.cruise:
                continue
            size = kv.block_size
            if size not in verdicts:
                verdicts[size] = decode_keys_matter(arrivals, size)
            kv.decode_keys = verdicts[size]

    def run(self, requests, series=None, progress=None) -> None:
        """``series`` (a TimeSeries) samples the instances and ``progress`` (a Progress)
        reports on stderr; both only read state, at clock crossings (blis_core.timeseries)."""
        elastic = self.elastic
        if elastic is not None:
            elastic.start()    # the first scaling tick is queued before the arrivals
        heap = self.heap
        pending_times = self.pending_times
        # Arrivals in time order enter the heap one at a time, each as the one before it
        # leaves, with the sequence numbers they would have had had all been pushed now. The
        # pop order is the same, and every heap operation of the run works on the events in
        # flight rather than on the whole workload. Out of order, they are pushed at once.
        arrivals = requests if isinstance(requests, list) else list(requests)
        count = len(arrivals)
        first_seq = self.seq
        times = [req.arrival_time for req in arrivals]
        if all(map(le, times, islice(times, 1, None))):
            last_seq = first_seq + count
            self.seq = last_seq
            if count:
                heappush(heap, (times[0], CLUSTER_LANE, CLUSTER_ARRIVAL, first_seq,
                                CLUSTER_ARRIVAL, arrivals[0]))
                heappush(pending_times, times[0])
        else:
            last_seq = first_seq    # none held back
            for req in arrivals:
                self._push(req.arrival_time, CLUSTER_ARRIVAL, req)
        del times
        self.arrivals_pushed += count
        self._drop_unreachable_decode_keys(arrivals)
        horizon = self.horizon
        instances = self.instances
        pd = self.pd
        gateway = self.gateway
        # One comparison per event, as without sampling: the horizon check doubles as the check
        # for a due sample or progress update, ``mark`` being the earliest of the three.
        stop = horizon + 1
        mark = self._mark(stop, series, progress)
        # Instances may run decode-only steps ahead of the heap up to the mark (see
        # Instance._cruise_ahead), unless hooks after every instance event could act on them.
        # Without sessions and an autoscaler no instance event creates a cluster event, so an
        # instance may also run ahead of the other instances' events, up to the next cluster
        # event.
        ahead = self.fast_forward and gateway is None and pd is None
        if ahead:
            independent = self.sessions is None and elastic is None
            for inst in instances:
                inst.until = mark
                inst.cluster_times = pending_times if independent else None
        while heap:
            time, lane, _prio, seq, kind, req = heappop(heap)
            if time >= mark:
                if time > horizon:
                    break
                if series is not None and time >= series.next:
                    series.sample_until(time, self)
                if progress is not None and time >= progress.next:
                    progress.update(time, self)
                mark = self._mark(stop, series, progress)
                if ahead:
                    for inst in instances:
                        inst.until = mark
            if self.audit:
                if time < self.clock:
                    raise AssertionError(f"clock went backwards: {time} < {self.clock}")
                self.clock = time
            if lane >= 0:
                instances[lane].handle(time, kind, req)
                if self.audit:
                    instances[lane].audit()
                if gateway is not None and gateway.finished:
                    self.clock = time
                    gateway.after_instance_event()
                if elastic is not None:
                    elastic.after_instance_event(instances[lane], time)
                if pd is not None and (pd.prefill_done or pd.decode_done):
                    pd.after_instance_event(time)
                continue
            self.clock = time
            heappop(pending_times)
            if kind == CLUSTER_ARRIVAL:
                self.arrivals += 1
                if first_seq <= seq < last_seq - 1:   # a held-back arrival follows
                    after = arrivals[seq - first_seq + 1]
                    heappush(heap, (after.arrival_time, CLUSTER_LANE, CLUSTER_ARRIVAL, seq + 1,
                                    CLUSTER_ARRIVAL, after))
                    heappush(pending_times, after.arrival_time)
                self._push(time + self.admission_latency, ADMISSION, req)
            elif kind == ADMISSION:
                if self.admission_reads_state:
                    state = self.router_state(req)
                else:
                    state = None
                    if self.cache_view is not None:
                        self.cache_view.refresh(time)
                admitted, reason = self.admission.admit(req, state)
                if admitted and self.tenants is not None and self.tenants.sheds(req):
                    admitted = False  # the tenant-budget shed, after the policy admitted
                    reason = "tenant-budget-shed"
                if self.trace is not None:
                    self.trace.admission(req.id, time, admitted, reason)
                if admitted:
                    if gateway is not None:
                        gateway.admit(req, time)
                    elif pd is not None:
                        self._push(time, DISAGGREGATION, req)
                    else:
                        self._push(time + self.routing_latency, ROUTING, req)
                else:
                    self.rejected += 1
                    tier = req.slo_class or "standard"
                    self.shed_by_tier[tier] = self.shed_by_tier.get(tier, 0) + 1
            elif kind == ROUTING:
                state = self.router_state(req)
                if not state.snapshots:
                    self.routing_rejections += 1
                    continue
                decision = self.routing.route(req, state)
                target = self.by_id[decision.target]
                req.assigned_instance = target.id
                if self.trace is not None:
                    self.trace.routing(req.id, time, decision, state.snapshots)
                if pd is not None:
                    pd.observe_routing(req, target.id)
                self.deliver(req, target, time)
            elif kind >= SCALING_TICK or kind < 0:    # the autoscaler's and lifecycle events
                elastic.handle(time, kind, req)
            else:
                pd.handle(time, kind, req)
        if series is not None or progress is not None:
            last = max([self.clock] + [inst.clock for inst in instances])
            if series is not None:
                series.finish(self, last, horizon)
            if progress is not None:
                progress.finish(min(last, horizon), self)
        for inst in instances:
            inst.until = 0
            inst.finalize()

    @staticmethod
    def _mark(stop: int, series, progress) -> int:
        mark = stop
        if series is not None and series.next < mark:
            mark = series.next
        if progress is not None and progress.next < mark:
            mark = progress.next
        return mark
