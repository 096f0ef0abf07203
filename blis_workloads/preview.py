"""``blis workload validate|preview|export``: look at a workload before a long run.

- ``validate FILE`` loads and checks a spec the way ``blis run --workload-spec FILE`` does
  (same loader, same checks, same messages) but generates nothing past the first tick;
- ``preview`` generates the workload exactly as ``blis run`` would (a spec file, or a named
  generator with ``--workload``) and summarizes it: request count, arrival span, rate over
  time, length histograms and counts per SLO class, tenant, client and prefix group;
- ``export NAME`` writes a generator's spec (a scenario, a preset) as YAML to edit and run
  with ``--workload-spec``.

Every output is a pure function of the inputs: no wall clock, and every table is sorted.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

import attrs
import click
import numpy as np

from blis_core.files import write_atomically
from blis_core.runconfig import ConfigurationError
from blis_core.plugins import PluginError, get_registry
from blis_core.progress import wanted
from blis_workloads.cli_synthesis import WorkloadOptions, build_cli_workload
from blis_workloads.scenarios import dump_workload_spec
from blis_workloads.spec import WorkloadError, WorkloadSpec, go_fmt_v, load_workload_spec

__all__ = ["WorkloadCommands", "WorkloadPreview", "export_command", "preview_command",
           "preview_workload",
           "render_json", "render_text", "validate_command", "validate_spec_file"]

_BAR_WIDTH = 40


def fail(message: str):
    raise ConfigurationError(message)


# --------------------------------------------------------------------------------------------
# validate

def _declares(spec: WorkloadSpec) -> str:
    """What a spec declares, in a few words."""
    parts = []
    if spec.clients:
        parts.append(f"{len(spec.clients)} client{'s' if len(spec.clients) != 1 else ''}")
    if spec.cohorts:
        members = sum(c.population for c in spec.cohorts)
        parts.append(f"{len(spec.cohorts)} cohort{'s' if len(spec.cohorts) != 1 else ''} "
                     f"({members} member{'s' if members != 1 else ''})")
    if spec.servegen_data is not None:
        parts.append(f"servegen_data {spec.servegen_data.path}")
    if spec.inference_perf is not None:
        stages = len(spec.inference_perf.stages)
        parts.append(f"inference_perf ({stages} stage{'s' if stages != 1 else ''})")
    if spec.aggregate_rate > 0:
        parts.append(f"aggregate_rate {go_fmt_v(spec.aggregate_rate)} req/s")
    parts.append(f"num_requests {spec.num_requests}" if spec.num_requests > 0
                 else "num_requests unlimited")
    if spec.horizon > 0:
        parts.append(f"horizon {spec.horizon} us")
    parts.append(f"seed {spec.seed}")
    if spec.num_requests <= 0 and spec.horizon <= 0:
        parts.append("unbounded: blis run needs --num-requests or --horizon")
    return ", ".join(parts)


def validate_spec_file(path: str) -> str:
    """The confirmation line for a valid spec; ``WorkloadError`` with ``blis run``'s message
    otherwise. Generation runs to a horizon of one tick, so every check that precedes drawing
    requests runs (including servegen_data loading and inference_perf expansion)."""
    build_cli_workload(WorkloadOptions(), spec_path=path, horizon=1)
    spec = load_workload_spec(path)
    return f"{path}: valid workload spec ({_declares(spec)})"


def validate_command(file: str) -> None:
    try:
        line = validate_spec_file(file)
    except WorkloadError as exc:
        fail(str(exc))
    click.echo(line)


# --------------------------------------------------------------------------------------------
# preview

def _percentile(sorted_values: np.ndarray, p: float) -> int:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    rank = max(math.ceil(p / 100.0 * len(sorted_values)), 1)
    return int(sorted_values[rank - 1])


def _length_summary(values: np.ndarray, buckets: int) -> dict[str, Any]:
    """Min, mean, percentiles and a histogram of equal-width integer bins. A long tail (max
    above twice p99) gets one overflow bin, so the bulk of the values keeps its resolution."""
    if len(values) == 0:
        return {"min": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "histogram": []}
    ordered = np.sort(values, kind="stable")
    lo, hi = int(ordered[0]), int(ordered[-1])
    p99 = _percentile(ordered, 99)
    top = p99 if len(ordered) >= 100 and hi > 2 * p99 else hi
    width = max(math.ceil((top - lo + 1) / buckets), 1)
    edges = np.arange(lo, top + 1, width, dtype=np.int64)
    counts = np.bincount(np.minimum((ordered - lo) // width, len(edges)),
                         minlength=len(edges) + 1)
    histogram = [{"from": int(start), "to": int(min(start + width - 1, top)),
                  "requests": int(counts[i])} for i, start in enumerate(edges)]
    if counts[len(edges)]:
        histogram.append({"from": top + 1, "to": hi, "requests": int(counts[len(edges)])})
    return {"min": lo, "mean": float(values.mean()), "p50": _percentile(ordered, 50),
            "p90": _percentile(ordered, 90), "p99": p99, "max": hi, "histogram": histogram}


def _shares(counter: Counter) -> list[dict[str, Any]]:
    total = sum(counter.values())
    return [{"name": name, "requests": count, "share": count / total}
            for name, count in sorted(counter.items())]


@attrs.define
class WorkloadPreview:
    """The summary of a generated workload (all times in µs)."""

    source: str
    seed: int
    requests: int
    first_arrival_us: int
    last_arrival_us: int
    rate_over_time: list[dict[str, int]]
    input_tokens: dict[str, Any]
    output_tokens: dict[str, Any]
    slo_classes: list[dict[str, Any]]
    tenants: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    prefix_groups: list[dict[str, Any]]
    sessions: dict[str, Any]

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second of simulated time from t = 0 to the last arrival."""
        return self.requests / (self.last_arrival_us / 1e6) if self.last_arrival_us > 0 else 0.0


def preview_workload(cli, source: str, buckets: int = 20) -> WorkloadPreview:
    """Summarize ``cli`` (a ``CliWorkload``). Closed-loop follow-up rounds are not part of it:
    they are created during a run, when earlier rounds complete."""
    requests = cli.workload.requests
    n = len(requests)
    arrivals = np.fromiter((r.arrival_time for r in requests), dtype=np.int64, count=n)
    inputs = np.fromiter((r.num_input for r in requests), dtype=np.int64, count=n)
    outputs = np.fromiter((r.max_output_len for r in requests), dtype=np.int64, count=n)
    last = int(arrivals.max()) if n else 0
    rate = []
    if n:
        # Buckets tile [0, last arrival]: the rate profile starts at the simulation's t = 0.
        width = max(math.ceil((last + 1) / buckets), 1)
        counts = np.bincount(arrivals // width, minlength=math.ceil((last + 1) / width))
        rate = [{"start_us": i * width, "end_us": (i + 1) * width, "requests": int(c)}
                for i, c in enumerate(counts)]
    session_ids = {r.session_id for r in requests if r.session_id}
    manager = cli.workload.sessions
    blueprints = list(manager.sessions.values()) if manager is not None else []
    max_rounds = [bp.blueprint.max_rounds for bp in blueprints
                  if not bp.blueprint.unlimited_rounds]
    sessions = {
        "sessions": len(session_ids),
        "closed_loop": len(blueprints),
        "unlimited_rounds": sum(1 for bp in blueprints if bp.blueprint.unlimited_rounds),
        "max_rounds": max(max_rounds) if max_rounds else 0,
        "follow_up_budget": cli.workload.follow_up_budget,
    }
    return WorkloadPreview(
        source=source, seed=cli.spec.seed, requests=n,
        first_arrival_us=int(arrivals.min()) if n else 0, last_arrival_us=last,
        rate_over_time=rate, input_tokens=_length_summary(inputs, buckets),
        output_tokens=_length_summary(outputs, buckets),
        slo_classes=_shares(Counter(r.slo_class for r in requests)),
        tenants=_shares(Counter(r.tenant_id for r in requests)),
        clients=_shares(Counter(r.client_id for r in requests)),
        prefix_groups=_shares(Counter(r.prefix_group for r in requests if r.prefix_group)),
        sessions=sessions)


def render_json(p: WorkloadPreview) -> str:
    data = attrs.asdict(p)
    data["mean_rate_per_s"] = p.mean_rate_per_s
    return json.dumps(data, indent=2)


def _bar(count: int, largest: int) -> str:
    return "#" * (round(count / largest * _BAR_WIDTH) if largest else 0)


def _seconds(us: int) -> str:
    return f"{us / 1e6:.6f}"


def _length_lines(title: str, s: dict[str, Any]) -> list[str]:
    lines = [f"{title}: min {s['min']}  mean {s['mean']:.1f}  p50 {s['p50']}  p90 {s['p90']}  "
             f"p99 {s['p99']}  max {s['max']}",
             f"  {'from':>9} {'to':>9} {'requests':>9}"]
    largest = max((b["requests"] for b in s["histogram"]), default=0)
    for b in s["histogram"]:
        lines.append(f"  {b['from']:>9} {b['to']:>9} {b['requests']:>9}  "
                     f"{_bar(b['requests'], largest)}".rstrip())
    return lines


def _share_lines(title: str, rows: list[dict[str, Any]]) -> list[str]:
    width = max([len(title)] + [len(r["name"] or "(none)") for r in rows])
    lines = [f"{title:<{width}}  {'requests':>9}  {'share':>7}"]
    for r in rows:
        lines.append(f"{r['name'] or '(none)':<{width}}  {r['requests']:>9}  "
                     f"{100 * r['share']:>6.2f}%")
    return lines


def render_text(p: WorkloadPreview) -> str:
    lines = [f"workload: {p.source} (seed {p.seed})", f"requests: {p.requests}"]
    if p.requests == 0:
        return "\n".join(lines + ["no request arrives before the horizon"]) + "\n"
    lines.append(f"arrivals: {_seconds(p.first_arrival_us)} s to {_seconds(p.last_arrival_us)} s, "
                 f"mean rate {p.mean_rate_per_s:.3f} req/s")
    s = p.sessions
    if s["sessions"] or s["closed_loop"]:
        text = f"sessions: {s['sessions']} in these requests, {s['closed_loop']} closed-loop"
        if s["closed_loop"]:
            text += (" (their later rounds are created during a run: up to "
                     + (f"{s['max_rounds']} rounds each" if s["max_rounds"] else "")
                     + (", " if s["max_rounds"] and s["unlimited_rounds"] else "")
                     + (f"{s['unlimited_rounds']} unlimited" if s["unlimited_rounds"] else "")
                     + ")")
        if s["follow_up_budget"] >= 0:
            text += f"; follow-up budget {s['follow_up_budget']}"
        lines.append(text)
    rate = p.rate_over_time
    width_s = (rate[0]["end_us"] - rate[0]["start_us"]) / 1e6
    lines += ["", f"rate over time ({len(rate)} buckets of {width_s:.6f} s)",
              f"  {'from_s':>12} {'requests':>9} {'req/s':>11}"]
    largest = max(b["requests"] for b in rate)
    for b in rate:
        lines.append(f"  {_seconds(b['start_us']):>12} {b['requests']:>9} "
                     f"{b['requests'] / width_s:>11.3f}  {_bar(b['requests'], largest)}".rstrip())
    lines.append("")
    lines += _length_lines("input tokens (shared prefix included)", p.input_tokens)
    lines.append("")
    lines += _length_lines("output tokens", p.output_tokens)
    for title, rows in (("slo_class", p.slo_classes), ("tenant", p.tenants),
                        ("client", p.clients), ("prefix_group", p.prefix_groups)):
        if rows:
            lines.append("")
            lines += _share_lines(title, rows)
    return "\n".join(lines) + "\n"


def _options(rate: float | None, num_requests: int | None, seed: int | None) -> WorkloadOptions:
    explicit = {flag for flag, value in (("rate", rate), ("num-requests", num_requests),
                                         ("seed", seed)) if value is not None}
    options = WorkloadOptions(explicit=frozenset(explicit))
    if rate is not None:
        options.rate = rate
    if num_requests is not None:
        options.num_requests = num_requests
    if seed is not None:
        options.seed = seed
    return options


def _generators() -> dict[str, object]:
    return {entry.name: entry.cls() for entry in get_registry().entries("workload")}


def _check_generator(name: str, label: str) -> None:
    try:
        get_registry().get("workload", name)
    except PluginError as exc:
        fail(f"{label}: {exc}")


def preview_command(file: str | None, workload: str | None, rate: float | None,
                    num_requests: int | None, seed: int | None, horizon: int | None,
                    buckets: int, fmt: str, progress: bool | None = None) -> None:
    """Generate like ``blis run`` (same flag semantics: an explicit --seed or --num-requests
    overrides the spec's) and print the summary."""
    if (file is None) == (workload is None):
        fail("give a workload spec FILE or --workload NAME (one of them)")
    if file is not None and rate is not None:
        fail("--rate applies to --workload generators; a spec sets its own aggregate_rate")
    if horizon is not None and horizon <= 0:
        fail(f"--horizon must be > 0, got {horizon}")
    if not 1 <= buckets <= 1000:
        fail(f"--buckets must be in [1, 1000], got {buckets}")
    if workload is not None:
        _check_generator(workload, "--workload")
    options = _options(rate, num_requests, seed)
    source = file if file is not None else f"--workload {workload}"
    # Generation is one call with no progress of its own: a large workload shows its phases
    # (generating, summarizing) on stderr, with the time each took.
    say = (lambda line: click.echo(f"blis: {line}", err=True)) if wanted(progress) else None
    start = time.monotonic()
    if say:
        say(f"generating {source}...")
    try:
        cli = build_cli_workload(options, workload or "distribution", file, horizon,
                                 _generators())
    except WorkloadError as exc:
        fail(str(exc))
    if say:
        say(f"generated {len(cli.workload.requests)} requests in "
            f"{time.monotonic() - start:.1f}s; summarizing...")
    summary = preview_workload(cli, source, buckets)
    if say:
        say(f"done in {time.monotonic() - start:.1f}s")
    click.echo(render_json(summary) if fmt == "json" else render_text(summary), nl=fmt == "json")


# --------------------------------------------------------------------------------------------
# export

def export_command(name: str, rate: float | None, num_requests: int | None, seed: int | None,
                   output: str) -> None:
    """Write the spec of generator ``name`` as YAML (stdout, or ``output`` atomically)."""
    _check_generator(name, "NAME")
    options = _options(rate, num_requests, seed)
    try:
        spec = _generators()[name].to_spec(options)
    except WorkloadError as exc:
        fail(str(exc))
    header = (f"blis workload export {name} --rate {go_fmt_v(options.rate)} "
              f"--num-requests {options.num_requests} --seed {options.seed}\n"
              f"Run it with: blis run --workload-spec FILE ... (docs/workloads.md)")
    text = dump_workload_spec(spec, header)
    if output:
        try:
            write_atomically(output, text)
        except OSError as exc:
            fail(f"--output: cannot write {output}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)


# --------------------------------------------------------------------------------------------
# ``blis workload ...``, contributed to the CLI through the ``blis_commands`` hook.

_INT64 = click.IntRange(-(2**63), 2**63 - 1)


@click.group("workload")
def workload_group() -> None:
    """Check, preview and export workloads without running a simulation."""


@workload_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def _validate(file: str) -> None:
    """Check a workload spec as --workload-spec would (exit 0 if valid, 2 if not)."""
    validate_command(file)


@workload_group.command("preview")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--workload", default=None, help="A workload generator (preset or scenario) instead of FILE.")
@click.option("--rate", default=None, type=float, help="Arrival rate for --workload (default 1.0).")
@click.option("--num-requests", default=None, type=_INT64, help="Request cap; overrides the spec's num_requests.")
@click.option("--seed", default=None, type=_INT64, help="Seed; overrides the spec's seed.")
@click.option("--horizon", default=None, type=_INT64, help="Generation horizon in microseconds.")
@click.option("--buckets", default=20, type=_INT64, help="Buckets of the rate and length histograms.")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]), help="Output format.")
@click.option("--progress/--no-progress", default=None, help="Phases and their times on stderr (default: when stderr is a terminal).")
def _preview(file, workload, rate, num_requests, seed, horizon, buckets, fmt, progress) -> None:
    """Generate a workload as blis run would and summarize it."""
    preview_command(file, workload, rate, num_requests, seed, horizon, buckets, fmt, progress)


@workload_group.command("export")
@click.argument("name")
@click.option("--rate", default=None, type=float, help="Arrival rate (default 1.0).")
@click.option("--num-requests", default=None, type=_INT64, help="Requests (default 100).")
@click.option("--seed", default=None, type=_INT64, help="Seed (default 42).")
@click.option("--output", "-o", default="", help="Write to this file instead of stdout.")
def _export(name, rate, num_requests, seed, output) -> None:
    """Print a named workload (scenario or preset) as workload-spec YAML."""
    export_command(name, rate, num_requests, seed, output)


class WorkloadCommands:
    """blis workload validate|preview|export: look at a workload before a long run."""

    name = "workload"

    @staticmethod
    def command() -> click.Command:
        return workload_group
