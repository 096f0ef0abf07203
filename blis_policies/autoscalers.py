"""Autoscalers: upstream's saturation pipeline, a threshold scaler and a pathological oscillator.

Each is a plain class with a ``name`` and ``decide(state) -> [ScaleDecision]`` (protocol
``blis_core.protocols.Autoscaler``); the cluster applies the decisions one scrape delay later.
"""

from __future__ import annotations

from blis_core.protocols import ScaleDecision, ScalingState


def _cheapest(variants):
    """Upstream's scale-up target order: cost ascending, then GPU type, then TP."""
    return min(variants, key=lambda v: (v[2], v[0], v[1]))


def _most_expensive(variants):
    """Upstream's scale-down target order: cost descending, then GPU type, then TP."""
    return min(variants, key=lambda v: (-v[2], v[0], v[1]))


class WVAPipeline:
    """Upstream's autoscaler at 4e179804: llm-d WVA's V2 saturation analyzer, the unlimited
    optimizer (one replica up or down per model and tick), then HPA stabilization windows.

    Per model, each replica with KV capacity supplies ``capacity x kv_cache_threshold`` tokens
    and demands its KV tokens in use plus ``queue depth x avg_input_tokens``; totals are summed
    per (GPU type, TP) variant, variants in cost order. Demand over ``scale_up_threshold`` of
    supply adds a replica of the cheapest variant. Otherwise, with more than one replica, supply
    above ``demand / scale_down_boundary`` even without the largest replica drains one of the
    most expensive variant. A decision passes only once its direction has been signalled on
    every tick for its window (0: at once); a tick without that direction restarts the window.
    """

    name = "wva"

    def __init__(self, scale_up_window_us: float = 0.0, scale_down_window_us: float = 0.0,
                 kv_cache_threshold: float = 0.8, scale_up_threshold: float = 0.8,
                 scale_down_boundary: float = 0.4, avg_input_tokens: float = 512.0) -> None:
        if not 0 < kv_cache_threshold <= 1:
            raise ValueError(f"kv_cache_threshold must be in (0, 1], got {kv_cache_threshold:g}")
        for key, value in (("scale_up_threshold", scale_up_threshold),
                           ("scale_down_boundary", scale_down_boundary),
                           ("avg_input_tokens", avg_input_tokens)):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value:g}")
        if scale_down_boundary >= scale_up_threshold:
            raise ValueError(f"scale_down_boundary {scale_down_boundary:g} must be < "
                             f"scale_up_threshold {scale_up_threshold:g}")
        if scale_up_window_us < 0 or scale_down_window_us < 0:
            raise ValueError("stabilization windows must be >= 0")
        self.windows = {1: int(scale_up_window_us), -1: int(scale_down_window_us)}
        self.kv_cache_threshold = kv_cache_threshold
        self.scale_up_threshold = scale_up_threshold
        self.scale_down_boundary = scale_down_boundary
        self.avg_input_tokens = avg_input_tokens
        self.first_signal = {1: {}, -1: {}}      # direction -> model -> first tick seen

    def decide(self, state: ScalingState) -> list[ScaleDecision]:
        wanted = [d for d in map(self.optimize, state.models) if d is not None]
        return self.stabilize(state.clock, wanted)

    def analyze(self, signals):
        """(supply, demand, required, spare, variants) of one model; each variant is
        (GPU type, TP, cost, supply, replicas), in cost order."""
        per_variant: dict = {}
        for r in signals.replicas:
            if r.total_kv_capacity_tokens <= 0:
                continue
            key = (r.gpu_type, r.tp)
            agg = per_variant.get(key)
            if agg is None:
                agg = per_variant[key] = [r.cost_per_hour, 0.0, 0.0, 0]
            agg[1] += r.total_kv_capacity_tokens * self.kv_cache_threshold
            agg[2] += r.kv_tokens_in_use + r.queue_depth * self.avg_input_tokens
            agg[3] += 1
        variants = sorted(((gpu, tp, cost, supply, demand, count)
                           for (gpu, tp), (cost, supply, demand, count) in per_variant.items()),
                          key=lambda v: (v[2], v[0], v[1]))
        supply = demand = 0.0
        for v in variants:
            supply += v[3]
            demand += v[4]
        required = demand / self.scale_up_threshold - supply
        spare = 0.0
        if required <= 0 and sum(v[5] for v in variants) > 1:
            room = supply - demand / self.scale_down_boundary
            largest = max((v[3] / v[5] for v in variants), default=0.0)
            if room > 0 and supply - largest > demand / self.scale_down_boundary:
                spare = room
        return supply, demand, max(required, 0.0), spare, variants

    def optimize(self, signals) -> ScaleDecision | None:
        _supply, _demand, required, spare, variants = self.analyze(signals)
        if required > 0 and variants:
            gpu, tp, *_ = _cheapest(variants)
            return ScaleDecision(signals.model, gpu, tp, 1)
        if spare > 0 and variants:
            gpu, tp, *_ = _most_expensive(variants)
            return ScaleDecision(signals.model, gpu, tp, -1)
        return None

    def stabilize(self, now: int, decisions) -> list[ScaleDecision]:
        for direction, first in self.first_signal.items():
            signalled = {d.model for d in decisions if (d.delta > 0) == (direction > 0)}
            for model in [m for m in first if m not in signalled]:
                del first[model]
        passed = []
        for d in decisions:
            direction = 1 if d.delta > 0 else -1
            first, window = self.first_signal[direction], self.windows[direction]
            if d.model not in first:
                first[d.model] = now
                if window > 0:
                    continue
            if now - first[d.model] < window:
                continue
            del first[d.model]
            passed.append(d)
        return passed


class ThresholdScaler:
    """Scale out when the replicas' mean KV utilization exceeds ``scale_out_utilization`` or
    their mean queue depth exceeds ``scale_out_queue_depth``; scale in when utilization is
    below ``scale_in_utilization`` with nothing queued. One replica per action, none within
    ``cooldown_us`` of the previous one, the replica count kept in [min, max] (max 0: as many
    as the pools hold). New replicas go to the cheapest GPU type with room, drains come from
    the most expensive one."""

    name = "threshold"

    def __init__(self, scale_out_utilization: float = 0.8, scale_in_utilization: float = 0.3,
                 scale_out_queue_depth: float = 4.0, cooldown_us: float = 10_000_000,
                 min_replicas: float = 1, max_replicas: float = 0) -> None:
        if not 0 <= scale_in_utilization < scale_out_utilization:
            raise ValueError(f"scale_in_utilization {scale_in_utilization:g} must be >= 0 and < "
                             f"scale_out_utilization {scale_out_utilization:g}")
        if scale_out_queue_depth < 0 or cooldown_us < 0:
            raise ValueError("scale_out_queue_depth and cooldown_us must be >= 0")
        if min_replicas < 0 or max_replicas < 0 or min_replicas != int(min_replicas) \
                or max_replicas != int(max_replicas):
            raise ValueError("min_replicas and max_replicas must be whole numbers >= 0")
        if max_replicas and min_replicas > max_replicas:
            raise ValueError(f"min_replicas {min_replicas:g} must be <= max_replicas "
                             f"{max_replicas:g}")
        self.out_util = scale_out_utilization
        self.in_util = scale_in_utilization
        self.out_queue = scale_out_queue_depth
        self.cooldown = int(cooldown_us)
        self.min = int(min_replicas)
        self.max = int(max_replicas)
        self.last_action: dict = {}

    def decide(self, state: ScalingState) -> list[ScaleDecision]:
        models = {m.model: m.replicas for m in state.models}
        if state.model and state.model not in models:
            models[state.model] = ()
        out = []
        for model in sorted(models):
            replicas = models[model]
            last = self.last_action.get(model)
            if last is not None and state.clock - last < self.cooldown:
                continue
            decision = self._decide_model(model, replicas, state.variants)
            if decision is not None:
                self.last_action[model] = state.clock
                out.append(decision)
        return out

    def _decide_model(self, model: str, replicas, variants) -> ScaleDecision | None:
        n = len(replicas)
        util = sum(r.kv_utilization for r in replicas) / n if n else 0.0
        queue = sum(r.queue_depth for r in replicas) / n if n else 0.0
        grow = n < self.min or (n > 0 and (util > self.out_util or queue > self.out_queue))
        if grow and (not self.max or n < self.max):
            return scale_out(model, variants)
        shrink = (self.max and n > self.max) or (util < self.in_util and queue == 0)
        if shrink and n > self.min:
            return scale_in(model, replicas)
        return None


class Oscillator:
    """Pathological: adds a replica on one tick and drains one on the next, forever (within
    ``min_replicas``), whatever the load. It exists to exercise the oscillation counter."""

    name = "oscillator"

    def __init__(self, min_replicas: float = 1) -> None:
        if min_replicas < 0 or min_replicas != int(min_replicas):
            raise ValueError("min_replicas must be a whole number >= 0")
        self.min = int(min_replicas)
        self.ticks = 0

    def decide(self, state: ScalingState) -> list[ScaleDecision]:
        self.ticks += 1
        replicas = ()
        for m in state.models:
            if m.model == state.model:
                replicas = m.replicas
        if self.ticks % 2 == 1:
            decision = scale_out(state.model, state.variants)
        else:
            decision = scale_in(state.model, replicas) if len(replicas) > self.min else None
        return [decision] if decision is not None else []


def scale_out(model: str, variants) -> ScaleDecision | None:
    """One more replica on the cheapest GPU type with room for it (None: the pools are full)."""
    fits = [v for v in variants if v.free_gpus >= v.tp]
    if not fits:
        return None
    v = _cheapest([(v.gpu_type, v.tp, v.cost_per_hour) for v in fits])
    return ScaleDecision(model, v[0], v[1], 1)


def scale_in(model: str, replicas) -> ScaleDecision | None:
    """One replica fewer, from the most expensive variant serving ``model``."""
    if not replicas:
        return None
    v = _most_expensive([(r.gpu_type, r.tp, r.cost_per_hour) for r in replicas])
    return ScaleDecision(model, v[0], v[1], -1)
