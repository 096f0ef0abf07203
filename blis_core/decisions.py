"""The decision trace: every admission and routing decision, with counterfactual regret.

Upstream's ``--trace-level decisions`` at 4e179804 keeps the trace in memory and prints only its
summary (``--summarize-trace``); blis also hands the records to Python
(:attr:`blis_core.EvaluationResult.decisions`) and writes them as JSON Lines
(``--decision-trace PATH``). A record is a plain dict in the schema of docs/decision-trace.md,
so the file, the Python records and the summary all come from one list.

Counterfactual (``counterfactual_k`` > 0): every candidate instance gets a score, the routing
policy's own when it reports scores (:attr:`RoutingDecision.scores`), else minus its effective
load; the top ``k`` by score (ties by instance id) are kept with their snapshot fields, and the
regret is the best score minus the chosen instance's, never below 0.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping

import attrs

TRACE_LEVELS = ("none", "decisions")


@attrs.frozen
class TraceConfig:
    """What the engine records; ``level`` "none" records nothing and costs nothing."""

    level: str = "none"
    counterfactual_k: int = 0
    summarize: bool = False

    @property
    def records(self) -> bool:
        return self.level == "decisions"


class DecisionTrace:
    """The records of one run, in event order."""

    def __init__(self, counterfactual_k: int = 0) -> None:
        self.counterfactual_k = counterfactual_k
        self.records: list[dict] = []

    def admission(self, request_id: str, clock: int, admitted: bool, reason: str) -> None:
        self.records.append({"kind": "admission", "request_id": request_id, "clock": clock,
                             "admitted": admitted, "reason": reason})

    def record(self, record: dict) -> None:
        """A record built by its subsystem (P/D: disaggregation, kv_transfer)."""
        self.records.append(record)

    def routing(self, request_id: str, clock: int, decision, snapshots, kind: str = "routing",
                parent_id: str | None = None) -> None:
        """A routing decision; P/D pool routings have ``kind`` prefill_routing or
        decode_routing and are recorded under the parent's id."""
        scores = decision.scores
        by_instance = None
        if scores is not None:
            by_instance = {s.id: float(v) for s, v in zip(snapshots, scores)}
        if parent_id is not None:
            request_id = parent_id
        record = {"kind": kind, "request_id": request_id, "clock": clock,
                  "chosen": decision.target, "reason": decision.reason, "scores": by_instance,
                  "candidates": None, "regret": 0.0}
        if self.counterfactual_k > 0:
            record["candidates"], record["regret"] = counterfactual(
                decision.target, snapshots, by_instance, self.counterfactual_k)
        self.records.append(record)


def counterfactual(chosen: str, snapshots, scores: Mapping[str, float] | None,
                   k: int) -> tuple[list[dict] | None, float]:
    """The top ``k`` candidates and the regret of choosing ``chosen``."""
    if not any(s.id == chosen for s in snapshots):
        return None, 0.0

    def score(s) -> float:
        return scores[s.id] if scores is not None else -float(s.effective_load)

    ranked = sorted(((score(s), s) for s in snapshots), key=lambda pair: (-pair[0], pair[1].id))
    best = ranked[0][0]
    chosen_score = next(value for value, s in ranked if s.id == chosen)
    candidates = [{"instance": s.id, "score": value, "queue_depth": s.queue_depth,
                   "batch_size": s.batch_size, "in_flight_requests": s.in_flight_requests,
                   "kv_utilization": s.kv_utilization, "free_kv_blocks": s.free_kv_blocks}
                  for value, s in ranked[:k]]
    return candidates, max(0.0, best - chosen_score)


@attrs.frozen
class TraceSummary:
    """Upstream's TraceSummary over the standard (non-P/D) path."""

    total_decisions: int
    admitted: int
    rejected: int
    unique_targets: int
    target_distribution: Mapping[str, int]
    mean_regret: float
    max_regret: float

    @classmethod
    def of(cls, records: Iterable[Mapping]) -> "TraceSummary":
        admitted = rejected = 0
        targets: dict[str, int] = {}
        regrets = []
        for record in records:
            kind = record["kind"]
            if kind == "admission":
                if record["admitted"]:
                    admitted += 1
                else:
                    rejected += 1
            elif kind == "routing":
                targets[record["chosen"]] = targets.get(record["chosen"], 0) + 1
                regrets.append(record["regret"])
        mean = 0.0
        if regrets:
            total = 0.0
            for regret in regrets:      # in record order, as upstream sums them
                total += regret
            mean = total / len(regrets)
        return cls(admitted + rejected, admitted, rejected, len(targets),
                   dict(sorted(targets.items())), mean, max(regrets, default=0.0))

    def lines(self) -> list[str]:
        out = ["=== Trace Summary ===", f"Total Decisions: {self.total_decisions}",
               f"  Admitted: {self.admitted}", f"  Rejected: {self.rejected}",
               f"Unique Targets: {self.unique_targets}"]
        if self.target_distribution:
            out.append("Target Distribution:")
            out += [f"  {inst}: {count}" for inst, count in self.target_distribution.items()]
        out += [f"Mean Regret: {self.mean_regret:.6f}", f"Max Regret: {self.max_regret:.6f}"]
        return out


def to_jsonl(records: Iterable[Mapping]) -> str:
    """One JSON object per line, keys in schema order; the same records give the same bytes."""
    return "".join(json.dumps(record) + "\n" for record in records)


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
