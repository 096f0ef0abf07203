"""Request generation from a v2 ``WorkloadSpec`` (upstream ``GenerateRequests`` and
``GenerateWorkload`` at 4e179804; engine.md §5.4–5.5, cluster-policies.md §6.3).

RNG structure, which fixes every value: the "workload-gen" subsystem stream draws the shared
prefixes and then one seed per client with a positive rate; each client then draws everything
from its own generator. Clients are therefore independent, which lets generation run lazily:
clients are merged by arrival time (ties keep client order, exactly like upstream's stable sort
of the concatenation) and nothing past ``max_requests`` is ever generated.
"""

from __future__ import annotations

import functools
import heapq
import math
from itertools import islice
from operator import attrgetter
from typing import Callable, Iterator

import attrs
import numpy as np

from blis_core.collector import collector_paused
from blis_core.gorand import GoRand, PartitionedRNG
from blis_core.request import Request
from blis_workloads.distributions import (MAX_TOKEN_ID, BlockRand, LengthSampler,
                                          arrival_sampler, length_sampler)
from blis_workloads.inference_perf import expand_inference_perf
from blis_workloads.sessions import SessionBlueprint, SessionManager, compute_deadline
from blis_workloads.spec import (ActiveWindow, ClientSpec, CohortSpec, LifecycleSpec,
                                 WorkloadError, WorkloadSpec, go_quote, upgrade_v1_to_v2)

__all__ = ["MAX_HORIZON", "Workload", "expand_cohorts", "generate_requests", "generate_workload"]

MAX_HORIZON = (1 << 63) - 1
DEFAULT_PREFIX_LENGTH = 50          # a prefix group without prefix_length gets 50 tokens
_BLUEPRINT_SEED_OFFSET = 7919
_CONCURRENCY_SEED_OFFSET = 10007
_US_PER_HOUR = 3_600_000_000

_by_arrival = attrgetter("arrival_time")


def _int64(x: int) -> int:
    """Go's wrapping int64 addition, for the seed offsets."""
    return (x + (1 << 63)) % (1 << 64) - (1 << 63)


@attrs.define(eq=False)
class Workload:
    """The generated workload: initial requests (sorted, ids ``request_<i>``), the session
    manager that creates closed-loop follow-ups (None without sessions), the follow-up cap
    (-1 = none) and the spec seed (the trace header's ``workload_seed``)."""

    requests: list[Request]
    sessions: SessionManager | None = None
    follow_up_budget: int = -1
    seed: int = 0

    @property
    def follow_ups(self) -> list[Request]:
        """Follow-up requests created so far by the session manager, in creation order."""
        return self.sessions.follow_ups if self.sessions is not None else []


# --------------------------------------------------------------------------------------------
# Cohorts.

def _diurnal_windows(peak_hour: int, ratio: float) -> list[ActiveWindow]:
    windows = []
    for h in range(24):
        angle = 2.0 * math.pi * float(h - peak_hour) / 24.0
        multiplier = (1.0 + math.cos(angle)) / 2.0 * (1.0 - 1.0 / ratio) + 1.0 / ratio
        duration = min(max(int(float(_US_PER_HOUR) * multiplier), 1), _US_PER_HOUR)
        windows.append(ActiveWindow(h * _US_PER_HOUR, h * _US_PER_HOUR + duration))
    return windows


def _drain_windows(start: int, ramp: int) -> list[ActiveWindow]:
    segment = max(ramp // 10, 1)
    windows = [ActiveWindow(0, start)] if start > 0 else []
    for i in range(10):
        seg_start = start + i * segment
        active = max(int(float(segment) * (float(10 - i) / 10.0)), 1)
        windows.append(ActiveWindow(seg_start, seg_start + active))
    return windows


def expand_cohorts(cohorts: list[CohortSpec]) -> list[ClientSpec]:
    """Members ``<id>-<j>`` sharing the cohort's fields, each with rate_fraction/population and
    lifecycle windows from the diurnal, spike and drain patterns (in that order)."""
    members = []
    for cohort in cohorts:
        if cohort.population <= 0:
            continue
        windows: list[ActiveWindow] = []
        if cohort.diurnal is not None:
            windows += _diurnal_windows(cohort.diurnal.peak_hour,
                                        cohort.diurnal.peak_to_trough_ratio)
        if cohort.spike is not None:
            windows.append(ActiveWindow(cohort.spike.start_time_us,
                                        cohort.spike.start_time_us + cohort.spike.duration_us))
        if cohort.drain is not None:
            windows += _drain_windows(cohort.drain.start_time_us, cohort.drain.ramp_duration_us)
        fraction = cohort.rate_fraction / float(cohort.population)
        for j in range(cohort.population):
            members.append(ClientSpec(
                id=f"{cohort.id}-{j}", tenant_id=cohort.tenant_id, slo_class=cohort.slo_class,
                model=cohort.model, rate_fraction=fraction, arrival=cohort.arrival,
                input_distribution=cohort.input_distribution,
                output_distribution=cohort.output_distribution,
                prefix_group=cohort.prefix_group, prefix_length=cohort.prefix_length,
                streaming=cohort.streaming, network=cohort.network,
                lifecycle=LifecycleSpec(list(windows)) if windows else None,
                multimodal=cohort.multimodal, reasoning=cohort.reasoning,
                timeout=cohort.timeout, closed_loop=cohort.closed_loop))
    return members


# --------------------------------------------------------------------------------------------
# Spec preparation.

def _prepared_clients(spec: WorkloadSpec, horizon: int, max_requests: int
                      ) -> tuple[WorkloadSpec, list[ClientSpec]]:
    """A working copy of the spec (inference-perf expanded, upgraded, validated) and the full
    client list (clients, then cohort members). The caller's spec is left untouched."""
    spec = attrs.evolve(spec, clients=[attrs.evolve(c) for c in spec.clients])
    if horizon <= 0:
        # Upstream returns before expanding anything; only GenerateWorkload's view remains.
        return spec, spec.clients + expand_cohorts(spec.cohorts)
    if max_requests < 0:
        raise WorkloadError(f"maxRequests must be non-negative, got {max_requests}")
    sources = [name for name, present in (("clients", bool(spec.clients)),
                                          ("servegen_data", spec.servegen_data is not None),
                                          ("inference_perf", spec.inference_perf is not None))
               if present]
    if len(sources) > 1:
        raise WorkloadError(f"workload sources {{{', '.join(sources)}}} are mutually exclusive; "
                            "specify exactly one of: clients, servegen_data, inference_perf")
    if spec.inference_perf is not None and not spec.clients:
        try:
            expanded = expand_inference_perf(spec.inference_perf)
        except WorkloadError as exc:
            raise WorkloadError(f"expanding inference-perf spec: {exc}") from None
        spec.clients = expanded.clients
        if not spec.category:
            spec.category = expanded.category
        # The stage rates are the ground truth; a given aggregate_rate is overridden.
        spec.aggregate_rate = expanded.aggregate_rate
    if spec.servegen_data is not None and not spec.clients:
        from blis_workloads.servegen import load_servegen_clients
        try:
            spec.clients = load_servegen_clients(spec.servegen_data)
        except WorkloadError as exc:
            raise WorkloadError(f"loading ServeGen data: {exc}") from None
    upgrade_v1_to_v2(spec)
    try:
        spec.validate()
    except WorkloadError as exc:
        raise WorkloadError(f"invalid workload spec: {exc}") from None
    return spec, spec.clients + expand_cohorts(spec.cohorts)


def _client_rates(clients: list[ClientSpec], aggregate_rate: float) -> list[float]:
    """Requests per µs: aggregate · (fraction / Σ fractions) / 1e6, summed in client order."""
    total = 0.0
    for c in clients:
        total += c.rate_fraction
    if total == 0:
        return [0.0] * len(clients)
    return [aggregate_rate * (c.rate_fraction / total) / 1e6 for c in clients]


def _prefix_tokens(clients: list[ClientSpec], rng) -> dict[str, np.ndarray]:
    """One token run per prefix group, drawn when the group first appears; its length comes
    from that first client (later clients of the group cannot change it)."""
    prefixes: dict[str, np.ndarray] = {}
    for c in clients:
        if c.prefix_group and c.prefix_group not in prefixes:
            length = c.prefix_length if c.prefix_length > 0 else DEFAULT_PREFIX_LENGTH
            prefixes[c.prefix_group] = rng.intn_array(MAX_TOKEN_ID, length)
    return prefixes


def _samplers(client: ClientSpec) -> tuple[LengthSampler, LengthSampler]:
    try:
        inp = length_sampler(client.input_distribution)
    except WorkloadError as exc:
        raise WorkloadError(f"client {go_quote(client.id)} input distribution: {exc}") from None
    try:
        out = length_sampler(client.output_distribution)
    except WorkloadError as exc:
        raise WorkloadError(f"client {go_quote(client.id)} output distribution: {exc}") from None
    return inp, out


# --------------------------------------------------------------------------------------------
# Per-client generators.

def _in_window(t: int, windows: list[ActiveWindow]) -> bool:
    for w in windows:
        if w.start_us <= t < w.end_us:
            return True
    return False


def _multimodal_samplers(client: ClientSpec) -> tuple:
    """The text sampler and per modality (image, audio, video) its (count, item) samplers,
    built once per client; a distribution that is missing or invalid gives None, and so does
    a modality lacking either of its two (upstream ignores such modalities)."""
    mm = client.multimodal

    def sampler(dist):
        if not dist.type:
            return None
        try:
            return length_sampler(dist)
        except WorkloadError:
            return None

    modalities = []
    for item_dist, count_dist in ((mm.image_distribution, mm.image_count_distribution),
                                  (mm.audio_distribution, mm.audio_count_distribution),
                                  (mm.video_distribution, mm.video_count_distribution)):
        count_s, item_s = sampler(count_dist), sampler(item_dist)
        modalities.append((count_s, item_s) if count_s is not None and item_s is not None
                          else None)
    return sampler(mm.text_distribution), modalities


def _multimodal_input(rng, samplers: tuple) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Text length, then per modality a count and that many item lengths."""
    text_s, modalities = samplers
    counts = [text_s.sample(rng) if text_s is not None else 0]
    for pair in modalities:
        total = 0
        if pair is not None:
            count_s, item_s = pair
            for _ in range(count_s.sample(rng)):
                total += item_s.sample(rng)
        counts.append(total)
    length = sum(counts) or 1
    return rng.intn_array(MAX_TOKEN_ID, length), tuple(counts)


def _negative_iat(client: ClientSpec, iat: int) -> WorkloadError:
    """0 ends a client's arrivals; a negative inter-arrival time is a bug of its process."""
    return WorkloadError(f"client {go_quote(client.id)}: arrival process "
                         f"{go_quote(client.arrival.process)} returned a negative "
                         f"inter-arrival time ({iat})")


def _standard_requests(client: ClientSpec, rng, arrivals, inp: LengthSampler,
                       out: LengthSampler, prefix: np.ndarray | None, horizon: int,
                       cap: int) -> Iterator[Request]:
    """An open-loop client: one request per inter-arrival time, in arrival order."""
    windows = client.lifecycle.windows if client.lifecycle is not None else None
    last_end = max(w.end_us for w in windows) if windows else 0
    prefix_len = len(prefix) if prefix is not None else 0
    # compute_deadline(t, ...) is 0 or t + a fixed offset; hoisted out of the hot loop.
    deadline_offset = compute_deadline(0, client.timeout, client.is_closed_loop)
    sample_iat = arrivals.sample_iat
    sample_in, sample_out = inp.sample, out.sample
    draw = rng.intn_array
    fields = dict(client_id=client.id, tenant_id=client.tenant_id, slo_class=client.slo_class,
                  prefix_group=client.prefix_group, prefix_length=prefix_len,
                  model=client.model, streaming=client.streaming)
    modal_samplers = _multimodal_samplers(client) if client.multimodal is not None else None
    t = 0
    count = 0
    while t < horizon:
        if cap and count >= cap:
            return
        iat = sample_iat(rng)
        if iat <= 0:
            if iat == 0:
                return                  # an exhausted normalized-exponential timer
            raise _negative_iat(client, iat)
        t += iat
        if t >= horizon:
            return
        if windows is not None and not _in_window(t, windows):
            if t >= last_end:
                return
            continue
        modal = None
        shared = None
        if modal_samplers is not None:
            input_tokens, modal = _multimodal_input(rng, modal_samplers)
            output_tokens = draw(MAX_TOKEN_ID, sample_out(rng))
            if prefix_len:
                input_tokens = np.concatenate((prefix, input_tokens))
        else:
            in_len = sample_in(rng)
            out_len = sample_out(rng)
            # Input and output ids are consecutive draws: one run, split.
            tokens = draw(MAX_TOKEN_ID, in_len + out_len)
            input_tokens, output_tokens = tokens[:in_len], tokens[in_len:]
            if prefix_len:
                shared = prefix      # joined when the engine first reads the prompt
        req = Request("", t, input_tokens, output_tokens, len(output_tokens),
                      t + deadline_offset if deadline_offset else 0, shared_prefix=shared,
                      **fields)
        if modal is not None:
            req.text_tokens, req.image_tokens, req.audio_tokens, req.video_tokens = modal
        yield req
        count += 1


def _ratio_sampler(client: ClientSpec) -> LengthSampler | None:
    dist = client.reasoning.reason_ratio_distribution
    if not dist.type:
        return None
    try:
        return length_sampler(dist)
    except WorkloadError as exc:
        raise WorkloadError(f"client {go_quote(client.id)} reasoning: reason ratio "
                            f"distribution: {exc}") from None


def _session_rounds(rng, client: ClientSpec, inp: LengthSampler, out: LengthSampler,
                    start: int, ratio_of: Callable[[], LengthSampler | None]
                    ) -> list[Request]:
    """Upstream ``GenerateReasoningRequests``: every round of one session, drawn up front.
    ``ratio_of()`` gives the client's reason-ratio sampler (built on first use: upstream
    reports a bad one only once a session is generated)."""
    mt = client.reasoning.multi_turn
    ratio_sampler = ratio_of()
    session_id = f"sess_{rng.int63()}"
    accumulate = mt.context_growth == "accumulate"
    context: np.ndarray | None = None
    t = start
    rounds = []
    for r in range(mt.max_rounds):
        in_len = inp.sample(rng)
        out_len = out.sample(rng)
        tokens = rng.intn_array(MAX_TOKEN_ID, in_len + out_len)
        new_input, output = tokens[:in_len], tokens[in_len:]
        if accumulate and r > 0:
            input_tokens = np.concatenate((context, new_input))
        else:
            input_tokens = new_input
        ratio = 0.0
        if ratio_sampler is not None:
            ratio = min(1.0, max(0.0, float(ratio_sampler.sample(rng)) / 100.0))
        rounds.append(Request("", t, input_tokens, output, len(output), 0,
                              session_id=session_id, round_index=r, client_id=client.id,
                              tenant_id=client.tenant_id, slo_class=client.slo_class,
                              model=client.model, reason_ratio=ratio))
        if accumulate:
            parts = (new_input, output) if context is None else (context, new_input, output)
            context = np.concatenate(parts)
        # The next round follows after the think time plus 1 µs per output token.
        t += mt.think_time_us + out_len
    return rounds


def _finish_rounds(rounds: list[Request], client: ClientSpec, prefix: np.ndarray | None,
                   horizon: int, out: list[Request]) -> None:
    """Prefix and deadline on every round; keep rounds before the horizon and in a window."""
    windows = client.lifecycle.windows if client.lifecycle is not None else None
    for req in rounds:
        if prefix is not None and len(prefix) > 0:
            req.input_tokens = np.concatenate((prefix, req.input_tokens))
            req.num_input = len(req.input_tokens)
            req.prefix_length = len(prefix)
        req.deadline = compute_deadline(req.arrival_time, client.timeout, True)
    for req in rounds:
        if req.arrival_time >= horizon:
            break
        if windows is not None and not _in_window(req.arrival_time, windows):
            continue
        out.append(req)


def _multi_turn_requests(client: ClientSpec, rng, arrivals, inp: LengthSampler,
                         out: LengthSampler, prefix: np.ndarray | None, horizon: int,
                         cap: int) -> list[Request]:
    """A multi-turn client's surviving rounds, sorted by arrival (stable)."""
    mt = client.multi_turn
    windows = client.lifecycle.windows if client.lifecycle is not None else None
    kept: list[Request] = []
    ratio = functools.cache(functools.partial(_ratio_sampler, client))
    if mt.single_session:
        iat = arrivals.sample_iat(rng)
        if iat <= 0:
            if iat == 0:
                return kept
            raise _negative_iat(client, iat)
        start = windows[0].start_us + iat if windows else iat
        if start >= horizon or (windows is not None and not _in_window(start, windows)):
            return kept
        _finish_rounds(_session_rounds(rng, client, inp, out, start, ratio), client, prefix,
                       horizon, kept)
        return kept
    last_end = max(w.end_us for w in windows) if windows else 0
    generated = 0
    t = 0
    while t < horizon:
        if cap and generated >= cap:
            break
        iat = arrivals.sample_iat(rng)
        if iat <= 0:
            if iat == 0:
                break
            raise _negative_iat(client, iat)
        t += iat
        if t >= horizon:
            break
        if windows is not None and not _in_window(t, windows):
            if t >= last_end:
                break
            continue
        rounds = _session_rounds(rng, client, inp, out, t, ratio)
        generated += len(rounds)        # every drawn round counts toward the cap
        _finish_rounds(rounds, client, prefix, horizon, kept)
    # Sessions overlap in time; a stable sort keeps generation order among equal arrivals.
    kept.sort(key=_by_arrival)
    return kept


# --------------------------------------------------------------------------------------------
# GenerateRequests / GenerateWorkload.

def _generate(spec: WorkloadSpec, horizon: int, max_requests: int
              ) -> tuple[list[Request], list[ClientSpec]]:
    spec, clients = _prepared_clients(spec, horizon, max_requests)
    if horizon <= 0:
        return [], clients
    workload_rng = BlockRand(PartitionedRNG(spec.seed).for_subsystem("workload-gen"))
    rates = _client_rates(clients, spec.aggregate_rate)
    prefixes = _prefix_tokens(clients, workload_rng)
    # Each client generates at most 2·max_requests before the merge truncates.
    cap = 2 * max_requests if max_requests > 0 else 0

    # Generation builds a few container objects per request and frees none of them.
    with collector_paused():
        streams = []
        for client, rate in zip(clients, rates):
            if rate <= 0:
                continue                # concurrency clients: no seed is drawn for them
            rng = BlockRand(workload_rng.int63())
            if client.arrival_factory is not None:
                arrivals = client.arrival_factory(rng.int63())
            else:
                try:
                    arrivals = arrival_sampler(client.arrival, rate)
                except WorkloadError as exc:
                    raise WorkloadError(f"client {go_quote(client.id)}: {exc}") from None
            inp, out = _samplers(client)
            prefix = prefixes.get(client.prefix_group) if client.prefix_group else None
            make = _multi_turn_requests if client.multi_turn is not None else _standard_requests
            streams.append(make(client, rng, arrivals, inp, out, prefix, horizon, cap))
        # heapq.merge breaks ties by stream index: exactly a stable sort of the concatenation.
        merged = heapq.merge(*streams, key=_by_arrival) if len(streams) != 1 else streams[0]
        requests = list(islice(merged, max_requests) if max_requests > 0 else merged)
    for i, req in enumerate(requests):
        req.id = f"request_{i}"
    return requests, clients


def generate_requests(spec: WorkloadSpec, horizon: int, max_requests: int) -> list[Request]:
    """Upstream ``GenerateRequests``: every client's requests (all rounds of multi-turn
    sessions), sorted by arrival, truncated to ``max_requests`` (0 = no cap), ids
    ``request_<i>``. Raises ``WorkloadError``."""
    return _generate(spec, horizon, max_requests)[0]


def _closed_loop_blueprints(client: ClientSpec, own_round0: list[Request],
                            blueprint_rng: GoRand, horizon: int) -> list[SessionBlueprint]:
    """The client's sessions, from its round-0 requests (in generation order)."""
    mt = client.multi_turn
    inp, out = _samplers(client)
    prefix = None
    if client.prefix_group and client.prefix_length > 0 and own_round0:
        # The first prefix_length tokens of the client's first round 0, even when the group's
        # prefix has another length (upstream quirk).
        first = own_round0[0].input_tokens
        if len(first) >= client.prefix_length:
            prefix = first[:client.prefix_length].copy()
    blueprints = []
    for session_id in sorted({r.session_id for r in own_round0}):
        blueprints.append(SessionBlueprint(
            session_id=session_id, client_id=client.id, max_rounds=mt.max_rounds,
            think_time_us=mt.think_time_us, horizon=horizon, input_sampler=inp,
            output_sampler=out, rng=BlockRand(blueprint_rng.int63()), prefix=prefix,
            context_growth=mt.context_growth, timeout=client.timeout,
            tenant_id=client.tenant_id, slo_class=client.slo_class, model=client.model))
    return blueprints


def _concurrency_seeds(clients: list[ClientSpec], seed: int, horizon: int, max_requests: int,
                       already: int) -> tuple[list[Request], list[SessionBlueprint], int]:
    """Seed requests and unlimited-round blueprints of the concurrency clients' virtual users."""
    users_rng = GoRand(_int64(seed + _CONCURRENCY_SEED_OFFSET))
    # The same prefixes as generation: a fresh "workload-gen" stream, same order.
    prefixes = _prefix_tokens(
        clients, BlockRand(PartitionedRNG(seed).for_subsystem("workload-gen")))
    seeds: list[Request] = []
    blueprints: list[SessionBlueprint] = []
    total_users = 0
    for client in clients:
        if client.concurrency <= 0:
            continue
        inp, out = _samplers(client)
        prefix = prefixes.get(client.prefix_group) if client.prefix_group else None
        prefix_len = len(prefix) if prefix is not None else 0
        for u in range(client.concurrency):
            if max_requests > 0 and already + len(seeds) >= max_requests:
                break
            rng = BlockRand(users_rng.int63())
            session_id = f"concurrency_{client.id}_user_{u}"
            # Stagger the first requests across one think time.
            arrival = 0
            if client.think_time_us > 0 and client.concurrency > 1:
                arrival = u * client.think_time_us // client.concurrency
            in_len = inp.sample(rng)
            out_len = out.sample(rng)
            tokens = rng.intn_array(MAX_TOKEN_ID, in_len + out_len)
            input_tokens, output = tokens[:in_len], tokens[in_len:]
            if prefix_len:
                input_tokens = np.concatenate((prefix, input_tokens))
            seeds.append(Request(
                "", arrival, input_tokens, output, len(output),
                compute_deadline(arrival, client.timeout, True),
                session_id=session_id, round_index=0, client_id=client.id,
                tenant_id=client.tenant_id, slo_class=client.slo_class,
                prefix_group=client.prefix_group, prefix_length=prefix_len,
                model=client.model, streaming=client.streaming))
            blueprints.append(SessionBlueprint(
                session_id=session_id, client_id=client.id, max_rounds=0,
                think_time_us=client.think_time_us, horizon=horizon, input_sampler=inp,
                output_sampler=out, rng=BlockRand(users_rng.int63()), prefix=prefix,
                timeout=client.timeout, unlimited_rounds=True, tenant_id=client.tenant_id,
                slo_class=client.slo_class, model=client.model))
        total_users += client.concurrency
    return seeds, blueprints, total_users


def generate_workload(spec: WorkloadSpec, horizon: int, max_requests: int) -> Workload:
    """Upstream ``GenerateWorkload``: ``generate_requests``, then closed-loop sessions keep only
    their round 0 (later rounds come from the returned session manager at run time) and
    concurrency clients add one seed request per virtual user. Raises ``WorkloadError``."""
    requests, clients = _generate(spec, horizon, max_requests)
    if not any(c.is_closed_loop or c.concurrency > 0 for c in clients):
        return Workload(requests, seed=spec.seed)

    blueprint_rng = GoRand(_int64(spec.seed + _BLUEPRINT_SEED_OFFSET))
    round0_by_client: dict[str, list[Request]] = {}
    for r in requests:
        if r.session_id and r.round_index == 0:
            round0_by_client.setdefault(r.client_id, []).append(r)
    blueprints: list[SessionBlueprint] = []
    for client in clients:
        if client.is_closed_loop and client.multi_turn is not None:
            blueprints += _closed_loop_blueprints(client, round0_by_client.get(client.id, []),
                                                  blueprint_rng, horizon)
    closed_sessions = {bp.session_id for bp in blueprints}
    kept = [r for r in requests if r.round_index == 0 or r.session_id not in closed_sessions]

    seeds, user_blueprints, total_users = _concurrency_seeds(clients, spec.seed, horizon,
                                                             max_requests, len(kept))
    blueprints += user_blueprints
    merged = kept + seeds
    merged.sort(key=_by_arrival)
    for i, req in enumerate(merged):
        req.id = f"request_{i}"

    budget = -1
    if max_requests > 0 and total_users > 0:
        budget = max(max_requests - len(merged), 0)
    sessions = SessionManager(blueprints, budget) if blueprints else None
    return Workload(merged, sessions, budget, spec.seed)
