"""A GEPA adapter for evolving blis policy bundles.

GEPA (``pip install "blis[gepa]"``) evolves the text components of a candidate with a
reflection language model. Here a candidate's components are policy bundle YAML: a component
named ``bundle`` holds a whole PolicyBundle document, a component named after a bundle section
(``admission``, ``routing``, ``priority``, ``scheduler``, ``tenant_budgets``, ...) holds that
section's value. Together they make the bundle under which every workload of a batch runs.

A workload (GEPA's data instance) is a :class:`Workload`: a name and a typed run description
(:class:`blis_core.RunConfig`). The candidate's bundle overrides the description's own
policies. Each workload's score is its fitness (:func:`blis_core.evaluate`), 0 for a run in
which nothing completed or that failed; the trajectory keeps the evidence a reflection model
can act on: fitness components, anomalies, SLO misses, the worst requests, where requests were
routed and, from the decision trace, the routing decisions with the most regret.

Bundles are data, not code, so workloads run in this process: a candidate cannot do more than
pick and parameterize installed policies.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs
import click
import yaml

from blis_core.bundle import (
    BundleError,
    PolicyBundle,
    merge_bundles,
    parse_bundle,
    trim_bundle,
)
from blis_core.evaluation import FitnessError, parse_fitness_weights
from blis_core.runconfig import ConfigurationError, RunConfig

DEFAULT_FITNESS_WEIGHTS = {"throughput": 0.5, "p99_ttft": 0.5}
COUNTERFACTUAL_K = 3          # candidates shown beside each high-regret routing decision
WHOLE_BUNDLE = "bundle"
BUNDLE_SECTIONS = tuple(field.name for field in attrs.fields(PolicyBundle))
ANOMALY_FIELDS = ("priority_inversions", "hol_blocking_events", "rejected_requests",
                  "routing_rejections", "dropped_unservable", "length_capped_requests",
                  "timed_out_requests", "preemptions")


class CandidateError(ValueError):
    """A candidate whose components do not make a valid bundle; the message is one line."""


@attrs.frozen
class Workload:
    """One of GEPA's data instances: a named run description."""

    name: str
    config: RunConfig

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Workload":
        """A run description file (``blis run --dump-config``), named after the file."""
        return cls(Path(path).stem, RunConfig.load(path))

    def describe(self) -> str:
        config = self.config
        workload = config.workload
        if workload.source == "trace":
            offered = f"the trace {workload.trace.data}"
        elif workload.spec:
            offered = f"the workload spec {workload.spec}"
        else:
            rate = 1.0 if workload.rate is None else workload.rate
            count = 100 if workload.num_requests is None else workload.num_requests
            offered = (f"{count} requests at {rate:g} req/s (prompts ~{workload.prompt_tokens}, "
                       f"outputs ~{workload.output_tokens} tokens)")
        return (f"{config.cluster.num_instances} instance(s) of {config.model.name or 'the default model'}"
                f" serving {offered}")


def candidate_bundle(candidate: Mapping[str, str], registry=None) -> PolicyBundle:
    """The PolicyBundle that a candidate's components describe; :class:`CandidateError` names
    the component at fault."""
    document: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for component in sorted(candidate):
        text = candidate[component]
        if not isinstance(text, str):
            raise CandidateError(f"{component}: expected YAML text, got {type(text).__name__}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CandidateError(f"{component}: not YAML: {' '.join(str(exc).split())}") \
                from None
        if component == WHOLE_BUNDLE:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise CandidateError(f"{component}: expected a policy bundle (a mapping of "
                                     f"sections), got {type(value).__name__}")
            sections = value
        elif component in BUNDLE_SECTIONS:
            if value is None:
                continue
            sections = {component: value}
        else:
            raise CandidateError(f"{component}: unknown component (use {WHOLE_BUNDLE!r} for a "
                                 f"whole bundle, or a section: {', '.join(BUNDLE_SECTIONS)})")
        for section, body in sections.items():
            if section in owner:
                raise CandidateError(f"{component}: sets {section}, which {owner[section]} "
                                     "sets already")
            owner[section] = component
            document[section] = body
    if not document:
        return PolicyBundle()
    text = yaml.safe_dump(document, sort_keys=True)
    try:
        return parse_bundle(text, "candidate", registry)
    except BundleError as exc:
        raise CandidateError(str(exc)) from None


def reflection_prompt(registry=None) -> str:
    """A reflection prompt template for ``gepa.optimize(reflection_prompt_template=...)`` that
    tells the model what the text is (blis bundle YAML) and which policies are installed;
    GEPA's default one asks for "instructions for an assistant"."""
    from blis_core.plugins import get_registry

    registry = registry or get_registry()
    installed = "\n".join(f"- {kind}: {', '.join(registry.names(kind))}"
                          for kind in ("admission", "routing", "priority", "scheduler"))
    return (
        "You tune the serving policies of a simulated cluster of LLM inference servers (blis). "
        "The current policy configuration, YAML in blis's PolicyBundle format (a whole bundle, or "
        "the value of one of its sections), is:\n```\n<curr_param>\n```\n\n"
        "It was run on the workloads below; each comes with its score (higher is better) and "
        "the evidence: fitness components, anomalies, SLO misses, where requests went, the "
        "routing decisions with the most regret and the slowest requests.\n```\n<side_info>\n"
        "```\n\nInstalled policies by section:\n" + installed + "\n\n"
        "Write an improved configuration of the same section in the same YAML format, naming "
        "only installed policies. Reply with the YAML alone inside ``` blocks.")


class BlisGEPAAdapter:
    """GEPA's adapter protocol over blis: ``evaluate`` and ``make_reflective_dataset``.

    ``fitness_weights`` (a mapping or ``"key:w,..."``) scores every workload; without it a
    workload's own weights are used, else throughput and p99 TTFT equally. ``slo_ttft_ms``
    (one target, or targets by SLO class with ``"default"`` for the rest) counts requests
    whose time to first token missed it. ``worst_requests`` and ``worst_decisions`` bound how
    much evidence each trajectory keeps.
    """

    propose_new_texts = None      # GEPA's own reflective proposer writes the new texts

    def __init__(self, fitness_weights: Mapping[str, float] | str | None = None, *,
                 slo_ttft_ms: float | Mapping[str, float] | None = None,
                 worst_requests: int = 5, worst_decisions: int = 5,
                 failure_score: float = 0.0, registry=None) -> None:
        if isinstance(fitness_weights, str):
            fitness_weights = parse_fitness_weights(fitness_weights)
        elif fitness_weights is not None:
            fitness_weights = dict(fitness_weights)
            parse_fitness_weights(",".join(f"{k}:{v}" for k, v in fitness_weights.items()))
        self.fitness_weights = fitness_weights
        self.slo_ttft_ms = _slo_targets(slo_ttft_ms)
        self.worst_requests = worst_requests
        self.worst_decisions = worst_decisions
        self.failure_score = failure_score
        self.registry = registry
        self.evaluations = 0          # workload runs done, for callers that budget them

    # -- GEPA's protocol --------------------------------------------------------------------------
    def evaluate(self, batch: Sequence[Workload], candidate: Mapping[str, str],
                 capture_traces: bool = False):
        from gepa import EvaluationBatch

        outputs, scores, trajectories = [], [], []
        try:
            bundle = candidate_bundle(candidate, self.registry)
            problem = None
        except CandidateError as exc:
            bundle, problem = None, f"bad candidate bundle: {exc}"
        for workload in batch:
            if problem is None:
                output, trajectory = self.run(workload, bundle, capture_traces)
            else:
                output = {"workload": workload.name, "score": self.failure_score,
                          "error": problem}
                trajectory = dict(output, description=workload.describe())
            outputs.append(output)
            scores.append(output["score"])
            trajectories.append(trajectory)
        return EvaluationBatch(outputs=outputs, scores=scores,
                               trajectories=trajectories if capture_traces else None,
                               num_metric_calls=len(batch))

    def make_reflective_dataset(self, candidate: Mapping[str, str], eval_batch,
                                components_to_update: Sequence[str]) -> dict[str, list[dict]]:
        trajectories = eval_batch.trajectories or [dict(o) for o in eval_batch.outputs]
        dataset = {}
        for component in components_to_update:
            records = []
            for trajectory in trajectories:
                records.append({
                    "Inputs": {"workload": trajectory["workload"],
                               "description": trajectory.get("description", "")},
                    "Generated Outputs": candidate.get(component, ""),
                    "Feedback": feedback(trajectory, component),
                    "score": trajectory["score"],
                })
            dataset[component] = records
        return dataset

    # -- one workload -----------------------------------------------------------------------------
    def run(self, workload: Workload, bundle: PolicyBundle | None,
            capture_traces: bool = True) -> tuple[dict, dict]:
        """Run ``workload`` under ``bundle``: its output (the score and the headline numbers)
        and its trajectory (the output plus the evidence). Never raises for the workload's
        own failure; that scores ``failure_score`` with the error."""
        from blis_core.runner import evaluate

        config = workload.config
        if bundle is not None:
            config = attrs.evolve(config, policies=merge_bundles(config.policies, bundle))
        if capture_traces and self.worst_decisions > 0:
            config = _with_decision_trace(config)
        weights = (self.fitness_weights or dict(workload.config.fitness_weights)
                   or DEFAULT_FITNESS_WEIGHTS)
        output: dict[str, Any] = {"workload": workload.name}
        quiet = logging.getLogger("blis")
        saved = quiet.level
        quiet.setLevel(logging.ERROR)    # the same catalog warnings for every candidate
        try:
            result = evaluate(config, fitness_weights=weights, registry=self.registry)
        except (ConfigurationError, FitnessError) as exc:
            output.update(score=self.failure_score, error=" ".join(str(exc).split()))
            return output, dict(output, description=workload.describe())
        except Exception as exc:  # a policy that crashes costs this workload, not the search
            output.update(score=self.failure_score,
                          error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            return output, dict(output, description=workload.describe())
        finally:
            quiet.setLevel(saved)
            self.evaluations += 1
        m = result.metrics
        score = float(result.score) if m.completed else self.failure_score
        output.update(score=score, completed=m.completed, arrived=m.arrived,
                      requests_per_sec=m.requests_per_sec, tokens_per_sec=m.tokens_per_sec,
                      ttft_p99_ms=m.ttft_us.p99 / 1e3, e2e_p99_ms=m.e2e_us.p99 / 1e3)
        if not m.completed:
            output["error"] = (f"no request completed ({m.injected} reached an instance, "
                               f"{m.still_queued} still queued)")
        if not capture_traces:
            return output, output
        trajectory = dict(output)
        trajectory["description"] = workload.describe()
        trajectory["bundle"] = trim_bundle(config.policies)
        trajectory["fitness"] = dict(result.fitness.components)
        anomalies = result.anomalies
        trajectory["anomalies"] = {name: getattr(anomalies, name) for name in ANOMALY_FIELDS
                                   if getattr(anomalies, name)}
        requests = result.simulation.requests
        trajectory["routing"] = _routing_counts(requests)
        trajectory["slo_misses"] = self._slo_misses(requests)
        trajectory["worst_requests"] = _worst_requests(requests, self.worst_requests)
        trajectory["decisions"] = _decision_evidence(result, self.worst_decisions)
        return output, trajectory

    def _slo_misses(self, requests) -> dict[str, dict[str, int]]:
        if not self.slo_ttft_ms:
            return {}
        misses: dict[str, dict[str, int]] = {}
        for r in requests:
            slo_class = r.slo_class or "default"
            target = self.slo_ttft_ms.get(slo_class, self.slo_ttft_ms.get("default"))
            if target is None:
                continue
            counts = misses.setdefault(slo_class, {"requests": 0, "missed": 0,
                                                   "target_ms": target})
            counts["requests"] += 1
            if not r.ttft_set or r.first_token_time / 1e3 > target:
                counts["missed"] += 1
        return dict(sorted(misses.items()))


def _slo_targets(value) -> dict[str, float]:
    if value is None:
        return {}
    targets = {"default": value} if isinstance(value, (int, float)) else dict(value)
    for name, target in targets.items():
        if isinstance(target, bool) or not isinstance(target, (int, float)) \
                or not math.isfinite(target) or target <= 0:
            raise ValueError(f"slo_ttft_ms[{name!r}]: expected a number of milliseconds > 0, "
                             f"got {target!r}")
    return {str(k): float(v) for k, v in targets.items()}


def _with_decision_trace(config: RunConfig) -> RunConfig:
    """``config`` recording its decisions with the counterfactual regret of each routing
    decision (docs/decision-trace.md); recording changes no result."""
    k = max(config.decision_trace.counterfactual_k, COUNTERFACTUAL_K)
    return config.replace(**{"decision_trace.level": "decisions",
                             "decision_trace.counterfactual_k": k})


def _decision_evidence(result, limit: int) -> dict:
    """The routing regret of the run and its ``limit`` worst routing decisions."""
    routings = [d for d in result.decisions if d["kind"] == "routing"]
    if not routings or limit <= 0:
        return {}
    regrets = [d["regret"] for d in routings]
    worst = sorted((d for d in routings if d["regret"] > 0),
                   key=lambda d: (-d["regret"], d["clock"], d["request_id"]))[:limit]
    return {"routing_decisions": len(routings),
            "mean_regret": sum(regrets) / len(regrets), "max_regret": max(regrets),
            "worst": [{"request_id": d["request_id"], "clock": d["clock"],
                       "chosen": d["chosen"], "reason": d["reason"], "regret": d["regret"],
                       "candidates": d["candidates"]} for d in worst]}


def _routing_counts(requests) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        if r.assigned_instance:
            counts[r.assigned_instance] = counts.get(r.assigned_instance, 0) + 1
    return dict(sorted(counts.items()))


def _worst_requests(requests, limit: int) -> list[dict]:
    """The slowest completed requests by end-to-end latency, then the ones never completed."""
    unfinished = [r for r in requests if r.state != "completed"]
    finished = sorted((r for r in requests if r.state == "completed"),
                      key=lambda r: (-r.e2e, r.arrival_time, r.id))
    chosen = sorted(unfinished, key=lambda r: (r.arrival_time, r.id))[:limit]
    chosen += finished[:max(0, limit - len(chosen))]
    rows = []
    for r in chosen:
        row = {"id": r.id, "state": r.state, "arrival_ms": r.arrival_time / 1e3,
               "instance": r.assigned_instance or None, "input_tokens": r.num_input,
               "output_tokens": r.num_output, "preemptions": r.preemptions}
        if r.slo_class:
            row["slo_class"] = r.slo_class
        if r.ttft_set:
            row["ttft_ms"] = r.first_token_time / 1e3
        if r.state == "completed":
            row["e2e_ms"] = r.e2e / 1e3
        if r.scheduling_delay >= 0:
            row["queued_ms"] = r.scheduling_delay / 1e3
        rows.append(row)
    return rows


def feedback(trajectory: Mapping[str, Any], component: str) -> str:
    """What a reflection model reads about one workload's run: one fact per line."""
    lines = [f"Workload {trajectory['workload']}: {trajectory.get('description', '')}",
             f"Score: {trajectory['score']:.4f} (higher is better)"]
    if trajectory.get("error"):
        lines.append(f"Error: {trajectory['error']}")
        if "completed" not in trajectory:
            lines.append(f"Fix the {component} component so that it is a valid blis policy "
                         "bundle section naming installed policies.")
            return "\n".join(lines)
    if "completed" in trajectory:
        lines.append(f"Completed {trajectory['completed']} of {trajectory['arrived']} requests; "
                     f"{trajectory['requests_per_sec']:.2f} req/s, "
                     f"{trajectory['tokens_per_sec']:.0f} output tokens/s; "
                     f"TTFT p99 {trajectory['ttft_p99_ms']:.1f} ms; "
                     f"E2E p99 {trajectory['e2e_p99_ms']:.1f} ms.")
    fitness = trajectory.get("fitness") or {}
    if fitness:
        parts = ", ".join(f"{key} {value:.4f}" for key, value in sorted(fitness.items()))
        lines.append(f"Fitness components (each in [0, 1]): {parts}.")
    anomalies = trajectory.get("anomalies") or {}
    if anomalies:
        parts = ", ".join(f"{key} {value}" for key, value in sorted(anomalies.items()))
        lines.append(f"Anomalies: {parts}.")
    else:
        lines.append("Anomalies: none.")
    for slo_class, counts in (trajectory.get("slo_misses") or {}).items():
        lines.append(f"SLO class {slo_class}: {counts['missed']} of {counts['requests']} "
                     f"requests missed the TTFT target of {counts['target_ms']:g} ms.")
    routing = trajectory.get("routing") or {}
    if routing:
        total = sum(routing.values())
        parts = ", ".join(f"{inst} {count / total:.0%}" for inst, count in routing.items())
        lines.append(f"Requests per instance: {parts}.")
    decisions = trajectory.get("decisions") or {}
    if decisions:
        lines.append(f"Routing regret (best counterfactual score minus the chosen one) over "
                     f"{decisions['routing_decisions']} decisions: mean "
                     f"{decisions['mean_regret']:.4f}, max {decisions['max_regret']:.4f}.")
        if decisions["worst"]:
            lines.append("Routing decisions with the most regret (score: the policy's, or minus "
                         "the load queue + batch + in flight):")
        for d in decisions["worst"]:
            others = ", ".join(f"{c['instance']} (score {c['score']:.3f}, queue "
                               f"{c['queue_depth']}, batch {c['batch_size']}, in flight "
                               f"{c['in_flight_requests']}, KV {c['kv_utilization']:.0%})"
                               for c in d["candidates"] or [])
            lines.append(f"  {d['request_id']} at {d['clock'] / 1e3:.1f} ms went to "
                         f"{d['chosen']} ({d['reason']}), regret {d['regret']:.4f}; the best "
                         f"were {others}.")
    worst = trajectory.get("worst_requests") or []
    if worst:
        lines.append("Worst requests:")
        for row in worst:
            latency = (f"E2E {row['e2e_ms']:.1f} ms" if "e2e_ms" in row
                       else f"never completed ({row['state']})")
            ttft = f", TTFT {row['ttft_ms']:.1f} ms" if "ttft_ms" in row else ""
            lines.append(f"  {row['id']} on {row['instance'] or 'no instance'}: {latency}{ttft}, "
                         f"{row['input_tokens']} prompt / {row['output_tokens']} output tokens, "
                         f"{row['preemptions']} preemptions")
    return "\n".join(lines)


# -- the CLI command ------------------------------------------------------------------------------
def _load_candidate(policy_config: str | None, candidate_file: str | None) -> dict[str, str]:
    if policy_config is not None:
        try:
            text = Path(policy_config).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"--policy-config: {policy_config}: cannot read: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
        return {WHOLE_BUNDLE: text}
    try:
        data = json.loads(Path(candidate_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.UsageError(f"--candidate: {candidate_file}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise click.UsageError(f"--candidate: {candidate_file}: expected a JSON object of "
                               "component names to YAML text")
    return data


@click.command("gepa-evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy-config", metavar="BUNDLE_YAML",
              help="The candidate: a policy bundle file.")
@click.option("--candidate", "candidate_file", metavar="CANDIDATE_JSON",
              help="The candidate as GEPA holds it: a JSON object of component texts.")
@click.option("--workloads", "workload_files", multiple=True, metavar="RUN_YAML",
              help="A run description to score on (repeatable; default: blis's defaults).")
@click.option("--fitness-weights", default=None, metavar="KEY:W,...",
              help="Score every workload with these weights (default: each workload's own, "
                   "else throughput:0.5,p99_ttft:0.5).")
@click.option("--slo-ttft-ms", type=float, default=None,
              help="Count requests whose TTFT exceeds this many milliseconds.")
@click.option("--feedback", "show_feedback", is_flag=True,
              help="Add the reflective feedback GEPA would show its reflection model.")
def gepa_evaluate_command(policy_config, candidate_file, workload_files, fitness_weights,
                          slo_ttft_ms, show_feedback):
    """Score a candidate policy bundle the way the GEPA adapter does: JSON on stdout."""
    if (policy_config is None) == (candidate_file is None):
        raise click.UsageError("give exactly one of --policy-config or --candidate")
    candidate = _load_candidate(policy_config, candidate_file)
    try:
        bundle = candidate_bundle(candidate)
    except CandidateError as exc:
        raise click.UsageError(f"bad candidate bundle: {exc}") from None
    workloads = []
    for path in workload_files:
        try:
            workloads.append(Workload.load(path))
        except ConfigurationError as exc:
            raise click.UsageError(f"--workloads: {exc}") from None
    if not workloads:
        workloads = [Workload("defaults", RunConfig())]
    try:
        adapter = BlisGEPAAdapter(fitness_weights, slo_ttft_ms=slo_ttft_ms)
    except ValueError as exc:
        option = "--fitness-weights" if isinstance(exc, FitnessError) else "--slo-ttft-ms"
        raise click.UsageError(f"{option}: {exc}") from None
    rows = []
    for workload in workloads:
        output, trajectory = adapter.run(workload, bundle, capture_traces=show_feedback)
        if show_feedback:
            output = dict(output, feedback=feedback(trajectory, WHOLE_BUNDLE))
        rows.append(output)
    scores = [row["score"] for row in rows]
    report = {"mean_score": sum(scores) / len(scores), "workloads": rows}
    click.echo(json.dumps(report, indent=2, sort_keys=True))


class GEPACommand:
    """Score a candidate bundle as the GEPA adapter does."""

    name = "gepa-evaluate"

    @staticmethod
    def command():
        return gepa_evaluate_command
