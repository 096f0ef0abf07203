"""Run metrics: per-instance and cluster summaries, per-request records, stdout sections.

Statistics follow upstream exactly (engine.md section 6): means are sequential sums over values
sorted ascending, percentiles interpolate linearly between ranks, and everything is reported in
milliseconds from integer microsecond ticks.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from typing import Iterable

from blis_core.gomath import format_go_float

_EXACT_INT_SUM = 2**53


def sequential_mean(sorted_values) -> float:
    """Upstream's mean: ``sum += float(x)`` in ascending order, divided by the count.

    For integer values whose total stays below 2**53 every partial sum is exact, so the float
    result equals the integer sum; only beyond that do we add one by one.
    """
    n = len(sorted_values)
    if n == 0:
        return 0.0
    total = sum(sorted_values)
    if isinstance(total, int) and abs(total) < _EXACT_INT_SUM:
        return float(total) / n
    acc = 0.0
    for x in sorted_values:
        acc += float(x)
    return acc / n


def percentile(sorted_values, p: float, scale: float = 1000.0) -> float:
    """Linear interpolation between the two ranks around ``p/100*(n-1)``, divided by ``scale``."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = p / 100.0 * float(n - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return sorted_values[lo] / scale
    low = sorted_values[lo]
    return float(low) / scale + float(sorted_values[hi] - low) * (rank - float(lo)) / scale


class CountedValues:
    """A sorted multiset kept as (value, count) pairs: the ITL distribution of a whole run has
    millions of entries but only thousands of distinct step durations."""

    def __init__(self, counts: Counter) -> None:
        self.values = sorted(counts)
        self.cumulative = []
        running = 0
        for v in self.values:
            running += counts[v]
            self.cumulative.append(running)
        self.n = running
        self.total = sum(v * counts[v] for v in self.values)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rank: int):
        from bisect import bisect_right
        return self.values[bisect_right(self.cumulative, rank)]

    def mean(self) -> float:
        if self.n == 0:
            return 0.0
        if abs(self.total) < _EXACT_INT_SUM:
            return float(self.total) / self.n
        acc = 0.0
        counts = Counter(dict(zip(self.values, self._counts())))
        for v in self.values:
            for _ in range(counts[v]):
                acc += float(v)
        return acc / self.n

    def _counts(self):
        previous = 0
        for c in self.cumulative:
            yield c - previous
            previous = c


class Summary:
    """The numbers of one MetricsOutput block (an instance or the whole cluster)."""

    def __init__(self, instance_id: str, requests: Iterable, counters: dict, itl_counts: Counter,
                 cache_hit_rate: float = 0.0, thrashing_rate: float = 0.0) -> None:
        self.instance_id = instance_id
        self.requests = list(requests)
        self.counters = counters
        self.itl = CountedValues(itl_counts)
        self.cache_hit_rate = cache_hit_rate
        self.thrashing_rate = thrashing_rate
        self.ttfts = sorted(r.first_token_time for r in self.requests if r.ttft_set)
        completed = [r for r in self.requests if r.state == "completed"]
        self.e2es = sorted(r.e2e for r in completed)
        self.delays = sorted(r.scheduling_delay for r in self.requests if r.scheduling_delay >= 0)

    def output(self, with_requests: bool = False) -> dict:
        """The MetricsOutput object, keys in upstream's order."""
        c = self.counters
        duration = c["sim_ended_time"] / 1e6
        completed = c["completed"]
        out = {
            "instance_id": self.instance_id,
            "completed_requests": completed,
            "still_queued": c["still_queued"],
            "still_running": c["still_running"],
            "injected_requests": (completed + c["still_queued"] + c["still_running"]
                                  + c["dropped_unservable"] + c["timed_out"]),
            "total_input_tokens": c["total_input_tokens"],
            "total_output_tokens": c["total_output_tokens"],
            "vllm_estimated_duration_s": duration,
            "responses_per_sec": completed / duration if completed > 0 and duration > 0 else 0.0,
            "tokens_per_sec": (c["total_output_tokens"] / duration
                               if completed > 0 and duration > 0 else 0.0),
        }
        # Upstream computes the latency statistics only when a request completed: an instance
        # cut off by the horizon with first tokens but no completion reports zeros.
        any_completed = completed > 0
        for name, values, mean in (("e2e", self.e2es, None), ("ttft", self.ttfts, None),
                                   ("itl", self.itl, None)):
            if not any_completed:
                values = ()
            elif name == "itl":
                mean = self.itl.mean()
            out[f"{name}_mean_ms"] = (sequential_mean(values) if mean is None else mean) / 1000
            for p in (90, 95, 99):
                out[f"{name}_p{p}_ms"] = percentile(values, float(p))
        out["scheduling_delay_p99_ms"] = percentile(self.delays if any_completed else (), 99.0)
        if c["kv_allocation_failures"]:
            out["kv_allocation_failures"] = c["kv_allocation_failures"]
        out["preemption_count"] = c["preemptions"]
        out["dropped_unservable"] = c["dropped_unservable"]
        out["length_capped_requests"] = c["length_capped"]
        out["timed_out_requests"] = c["timed_out"]
        if with_requests:
            records = request_records(self.requests)
            if records:
                out["requests"] = records
        return out


def request_records(requests) -> list[dict]:
    """Per-request records: ordered by ID, then (stably) by arrival time."""
    ordered = sorted(requests, key=lambda r: r.id.encode())
    ordered.sort(key=lambda r: r.arrival_time)
    records = []
    for r in ordered:
        completed = r.state == "completed"
        rec = {
            "arrived_at": r.arrival_time / 1e6,
            "requestID": r.id,
            "num_prefill_tokens": r.num_input,
            "num_decode_tokens": r.num_output,
            "ttft_ms": r.first_token_time / 1e3 if r.ttft_set else 0.0,
            "itl_ms": r.itl_mean / 1e3 if completed else 0.0,
            "e2e_ms": r.e2e / 1e3 if completed else 0.0,
            "scheduling_delay_ms": r.scheduling_delay / 1e3 if r.scheduling_delay >= 0 else 0.0,
        }
        if r.slo_class:
            rec["slo_class"] = r.slo_class
        if r.tenant_id:
            rec["tenant_id"] = r.tenant_id
        if r.assigned_instance:
            rec["handled_by"] = r.assigned_instance
        if r.model:
            rec["model"] = r.model
        if r.length_capped:
            rec["length_capped"] = True
        enqueued, dispatched = r.gateway_enqueue_time, r.gateway_dispatch_time
        if enqueued > 0 and dispatched > 0 and dispatched != enqueued:
            rec["gateway_queue_delay_ms"] = (dispatched - enqueued) / 1e3
        records.append(rec)
    return records


COUNTER_FIELDS = (
    "completed", "total_input_tokens", "total_output_tokens", "ttft_sum", "preemptions",
    "kv_allocation_failures", "dropped_unservable", "length_capped", "timed_out",
    "still_queued", "still_running",
)


def instance_summary(inst) -> Summary:
    c = inst.counters
    counters = {name: getattr(c, name) for name in COUNTER_FIELDS}
    counters["sim_ended_time"] = c.sim_ended_time
    return Summary(inst.id, inst.requests.values(), counters, inst.itl_counts,
                   inst.kv.cache_hit_rate(), inst.kv.thrashing_rate())


def cluster_summary(instances, pd=None) -> Summary:
    """The cluster's block. With P/D pools (``pd``, a Disaggregation), each disaggregated
    request counts once, with its latencies projected from its two halves, and the counters are
    corrected as upstream corrects them at the end of a run."""
    counters = {name: sum(getattr(i.counters, name) for i in instances) for name in COUNTER_FIELDS}
    counters["sim_ended_time"] = max((i.counters.sim_ended_time for i in instances), default=0)
    itl = Counter()
    requests = {}
    for inst in instances:
        itl.update(inst.itl_counts)
        requests.update(inst.requests)
    if pd is not None:
        _project_parents(pd, counters, requests)
    n = len(instances)
    hit = sum(i.kv.cache_hit_rate() for i in instances) / n if n else 0.0
    thrash = sum(i.kv.thrashing_rate() for i in instances) / n if n else 0.0
    return Summary("cluster", requests.values(), counters, itl, hit, thrash)


def _project_parents(pd, counters: dict, requests: dict) -> None:
    from blis_core.disaggregation import ParentView, completed_parents

    for parent in pd.parents.values():
        requests.pop(parent.prefill.id, None)
        if parent.decode is not None:
            requests.pop(parent.decode.id, None)
    for parent in completed_parents(pd):
        requests[parent.request.id] = ParentView(parent)
    counters["completed"] -= pd.prefill_completed
    counters["dropped_unservable"] += pd.dropped_at_decode_kv
    in_transfer = pd.in_transfer()
    if in_transfer > 0:
        counters["still_running"] += in_transfer
    elif in_transfer < 0:
        logging.getLogger("blis").warning("PD conservation: %d more sub-requests finished than "
                                          "started their transfer", -in_transfer)


# -- JSON in Go's encoding ------------------------------------------------------------------------
# Everything Go's encoding/json escapes; most strings (keys, ids) contain none of it.
_GO_ESCAPED = re.compile(r'["\\\x00-\x1f<>&\u2028\u2029]')
_GO_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_escape(match: re.Match) -> str:
    ch = match.group()
    return _GO_SHORT_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _go_string(s: str) -> str:
    if _GO_ESCAPED.search(s) is None:
        return '"' + s + '"'
    return '"' + _GO_ESCAPED.sub(_go_escape, s) + '"'


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def _go_null(_value) -> str:
    return "null"


# Formatters by exact type: per-request records are tens of thousands of flat dicts, so their
# values skip the isinstance chain (which still serves subclasses, such as numpy scalars).
_GO_SCALARS = {bool: _go_bool, int: str, float: format_go_float, str: _go_string,
               type(None): _go_null}
_GO_KEYS: dict = {}  # a dict key, quoted, with its colon: records repeat the same few keys


def go_json(value, indent: str = "  ", _level: int = 0) -> str:
    """``json.MarshalIndent(value, "", indent)`` as Go prints it."""
    scalar = _GO_SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, bool):
        return _go_bool(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_go_float(float(value))
    if isinstance(value, str):
        return _go_string(str(value))
    pad = "\n" + indent * (_level + 1)
    end = "\n" + indent * _level
    scalars = _GO_SCALARS
    inner = _level + 1
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for k, v in value.items():
            key = _GO_KEYS.get(k)
            if key is None:
                key = _go_string(k) + ": "
                if len(_GO_KEYS) < 4096:  # bounded: keys can also be ids (tenants, classes)
                    _GO_KEYS[k] = key
            scalar = scalars.get(type(v))
            items.append(key + (scalar(v) if scalar is not None else go_json(v, indent, inner)))
        return "{" + pad + ("," + pad).join(items) + end + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [go_json(v, indent, inner) for v in value]
        return "[" + pad + ("," + pad).join(items) + end + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def jain_fairness(values: list) -> float:
    if not values:
        return 0.0
    total = 0.0
    squares = 0.0
    for x in values:
        total += float(x)
        squares += float(x) * float(x)
    if squares == 0:
        return 1.0
    return total * total / (len(values) * squares)
