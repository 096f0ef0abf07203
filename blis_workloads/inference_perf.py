"""Expansion of the compact ``inference_perf: {stages, shared_prefix}`` block into clients.

Upstream ``ExpandInferencePerfSpec`` at 4e179804 (engine.md §5.6): N system prompts × M users
give C = N·M clients per stage, each in prefix group and tenant ``prompt-<p>`` with constant
question/output lengths. One stage: the clients share the stage rate evenly; multi-turn chat
turns each client into one long session, otherwise each client replays inference-perf's
normalized exponential timer. Several stages: one client set per stage, gated by lifecycle
windows, with Poisson arrivals.
"""

from __future__ import annotations

import math

import attrs

from blis_core.gomath import trunc_int64
from blis_workloads.distributions import BlockRand, NormalizedExponentialArrival
from blis_workloads.spec import (ActiveWindow, ArrivalSpec, ClientSpec, DistSpec,
                                 InferencePerfSpec, LifecycleSpec, MultiTurnSpec, ReasoningSpec,
                                 WorkloadError, go_fmt_f)

__all__ = ["ExpandedInferencePerf", "expand_inference_perf"]

_US_PER_S = 1_000_000


def _validate(spec: InferencePerfSpec) -> None:
    if not spec.stages:
        raise WorkloadError("inference_perf: at least one stage required")
    for i, stage in enumerate(spec.stages):
        if stage.duration <= 0:
            raise WorkloadError(f"inference_perf.stages[{i}]: duration must be positive, "
                                f"got {stage.duration}")
        if not stage.rate > 0 or math.isinf(stage.rate):
            raise WorkloadError(f"inference_perf.stages[{i}]: rate must be a finite positive "
                                f"number, got {go_fmt_f(stage.rate)}")
    sp = spec.shared_prefix
    if sp is None:
        raise WorkloadError("inference_perf: shared_prefix is required")
    for name in ("num_unique_system_prompts", "num_users_per_system_prompt"):
        if getattr(sp, name) <= 0:
            raise WorkloadError(f"inference_perf.shared_prefix: {name} must be positive, "
                                f"got {getattr(sp, name)}")
    for name in ("system_prompt_len", "question_len", "output_len"):
        if getattr(sp, name) < 0:
            raise WorkloadError(f"inference_perf.shared_prefix: {name} must be non-negative, "
                                f"got {getattr(sp, name)}")


def _even_split(total: int, n: int) -> list[int]:
    """``total`` over ``n`` clients; the first ``total % n`` get one more."""
    base, rem = divmod(total, n)
    return [base + 1 if i < rem else base for i in range(n)]


def _stage_total(index: int, rate: float, duration: int) -> int:
    total = trunc_int64(rate * float(duration))
    if total < 1:
        raise WorkloadError(f"inference_perf.stages[{index}]: rate {rate:.4f} × duration "
                            f"{duration} produces {total} requests (< 1); increase rate or "
                            "duration")
    return total


def _reasoning(stage_rate: float, sessions: int, rounds: int) -> ReasoningSpec:
    # Think time spaces a session's rounds so that C sessions together emit the stage rate.
    return ReasoningSpec(
        reason_ratio_distribution=DistSpec("constant", {"value": 0.0}),
        multi_turn=MultiTurnSpec(max_rounds=rounds,
                                 think_time_us=trunc_int64(float(sessions) / stage_rate * 1e6),
                                 context_growth="", single_session=True))


def _normalized_timer(count: int, duration_us: int):
    """The arrival factory: a fresh timer over the client's sub-generator for each run."""
    return lambda seed: NormalizedExponentialArrival(BlockRand(seed), count, duration_us)


@attrs.frozen
class ExpandedInferencePerf:
    """The expansion result: clients in stage, prompt, user order, plus category and rate."""

    clients: list[ClientSpec]
    category: str
    aggregate_rate: float


def expand_inference_perf(spec: InferencePerfSpec) -> ExpandedInferencePerf:
    try:
        _validate(spec)
    except WorkloadError as exc:
        raise WorkloadError(f"validating inference-perf spec: {exc}") from None
    sp = spec.shared_prefix
    prompts, users = sp.num_unique_system_prompts, sp.num_users_per_system_prompt
    per_stage = prompts * users
    input_dist = DistSpec("constant", {"value": float(sp.question_len)})
    output_dist = DistSpec("constant", {"value": float(sp.output_len)})
    multi_turn = sp.enable_multi_turn_chat
    category = "reasoning" if multi_turn else "language"
    clients: list[ClientSpec] = []

    def client(client_id: str, p: int, rate_fraction: float, **extra) -> ClientSpec:
        group = f"prompt-{p}"
        return ClientSpec(id=client_id, tenant_id=group, slo_class="standard",
                          rate_fraction=rate_fraction, arrival=ArrivalSpec("poisson"),
                          input_distribution=input_dist, output_distribution=output_dist,
                          prefix_group=group, prefix_length=sp.system_prompt_len, **extra)

    if len(spec.stages) == 1:
        stage = spec.stages[0]
        fraction = 1.0 / float(per_stage)
        shares = _even_split(_stage_total(0, stage.rate, stage.duration), per_stage)
        duration_us = stage.duration * _US_PER_S
        for idx in range(per_stage):
            p, u = divmod(idx, users)
            cid = f"prompt-{p}-user-{u}"
            if multi_turn:
                clients.append(client(cid, p, fraction,
                                      reasoning=_reasoning(stage.rate, per_stage, shares[idx])))
                continue
            count = shares[idx]
            if count <= 0:
                raise WorkloadError(f"inference_perf: client {cid} got 0 requests "
                                    f"(totalRequests={sum(shares)} < numClients={per_stage}); "
                                    "increase rate or duration")
            if duration_us < count:
                raise WorkloadError(f"inference_perf: durationUs ({duration_us}) < "
                                    f"requestsPerClient ({count}) produces degenerate "
                                    "distribution")
            clients.append(client(cid, p, fraction,
                                  arrival_factory=_normalized_timer(count, duration_us)))
        return ExpandedInferencePerf(clients, category, stage.rate)

    aggregate = 0.0
    for stage in spec.stages:
        aggregate += stage.rate
    start = 0
    for s, stage in enumerate(spec.stages):
        end = start + stage.duration * _US_PER_S
        lifecycle = LifecycleSpec([ActiveWindow(start, end)])
        fraction = stage.rate / float(per_stage)
        shares = (_even_split(_stage_total(s, stage.rate, stage.duration), per_stage)
                  if multi_turn else None)
        for idx in range(per_stage):
            p, u = divmod(idx, users)
            extra = {"lifecycle": lifecycle}
            if shares is not None:
                extra["reasoning"] = _reasoning(stage.rate, per_stage, shares[idx])
            clients.append(client(f"stage-{s}-prompt-{p}-user-{u}", p, fraction, **extra))
        start = end
    return ExpandedInferencePerf(clients, category, aggregate)
