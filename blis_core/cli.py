"""The ``blis`` command line: ``run``, ``replay``, ``plugins list`` and ``policies validate``.

Flag names and defaults follow upstream BLIS at 4e179804 so that its command lines run
unchanged. Bad input ends with one line on stderr naming the flag or field, and exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile

import attrs
import click

from blis_core.config import MAX_TICK, KVConfig, PolicyConfig, SimulationConfig
from blis_core.instance import BatchConfig
from blis_core.evaluation import FitnessError, evaluate_result, parse_fitness_weights
from blis_core.metrics import go_json
from blis_core.plugins import KINDS, PluginError, get_registry

log = logging.getLogger("blis")

LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
              "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


# Integer flags are int64 upstream; larger values are rejected by the flag parser.
INT64 = click.IntRange(-(2**63), 2**63 - 1)


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


def fail(message: str) -> None:
    raise UsageError(message)


# -- atomic file output -------------------------------------------------------------------------
def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, so a reader (or a
    crash) never sees a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".blis-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- shared flag groups -------------------------------------------------------------------------
def _coefficients(values: tuple[str, ...], flag: str) -> tuple[tuple[float, ...], bool]:
    """Comma-separated floats; a repeated flag appends, as pflag's float-slice flags do."""
    if not values:
        return (0.0, 0.0, 0.0), False
    out = []
    for chunk in values:
        for item in chunk.split(","):
            item = item.strip()
            try:
                out.append(float(item))
            except ValueError:
                fail(f"{flag}: {item!r} is not a number")
    return tuple(out), True


def engine_options(func):
    """Flags shared by ``run`` and ``replay``: model, latency, engine, KV, cluster, output."""
    options = [
        click.option("--model", default="", help="LLM name (lowercased), e.g. meta-llama/llama-3.1-8b-instruct."),
        click.option("--latency-model", default="roofline", help="roofline, blackbox or trained-physics."),
        click.option("--alpha-coeffs", multiple=True, help="Comma-separated alpha coefficients (repeat to append)."),
        click.option("--beta-coeffs", multiple=True, help="Comma-separated beta coefficients (repeat to append)."),
        click.option("--hardware", default="", help="GPU type (default from the model's catalog entry)."),
        click.option("--tp", default=0, type=INT64, help="Tensor parallelism (default from the catalog)."),
        click.option("--vllm-version", default="", help="vLLM version used to select coefficients."),
        click.option("--gpu-memory-utilization", default=0.9, type=float, help="GPU memory fraction for KV (0, 1]."),
        click.option("--model-config-folder", default="", help="Folder with a HuggingFace config.json."),
        click.option("--hardware-config", default="", help="GPU specification JSON (upstream format)."),
        click.option("--defaults-filepath", default="defaults.yaml", help="Upstream defaults.yaml (default: the shipped catalog)."),
        click.option("--seed", default=42, type=INT64, help="Master random seed."),
        click.option("--horizon", default=MAX_TICK, type=INT64, help="Simulation horizon in microseconds."),
        click.option("--log", "log_level", default="warn", help="Log level on stderr."),
        click.option("--total-kv-blocks", default=1_000_000, type=INT64, help="GPU KV blocks per instance (auto-derived when omitted)."),
        click.option("--block-size-in-tokens", default=16, type=INT64, help="Tokens per KV block."),
        click.option("--max-num-running-reqs", default=256, type=INT64, help="Maximum running requests per instance."),
        click.option("--max-num-scheduled-tokens", default=2048, type=INT64, help="Token budget per step."),
        click.option("--long-prefill-token-threshold", default=0, type=INT64, help="Prefill chunk cap (0 = off)."),
        click.option("--max-model-len", default=0, type=INT64, help="Maximum sequence length (0 = unlimited; roofline derives it)."),
        click.option("--kv-cpu-blocks", default=0, type=INT64, help="CPU-tier KV blocks (0 = single tier)."),
        click.option("--kv-offload-threshold", default=0.9, type=float, help="Deprecated; accepted for compatibility."),
        click.option("--kv-transfer-bandwidth", default=100.0, type=float, help="CPU->GPU reload bandwidth in blocks per tick."),
        click.option("--kv-transfer-base-latency", default=0, type=INT64, help="Fixed CPU->GPU reload latency in ticks."),
        click.option("--num-instances", default=1, type=INT64, help="Number of serving instances."),
        click.option("--admission-policy", default="always-admit", help="Admission policy plugin name."),
        click.option("--admission-latency", default=0, type=INT64, help="Admission decision latency (ticks)."),
        click.option("--routing-policy", default="round-robin", help="Routing policy plugin name."),
        click.option("--routing-latency", default=0, type=INT64, help="Routing decision latency (ticks)."),
        click.option("--routing-scorers", default="", help="Weighted routing scorers name:weight,... (default precise-prefix-cache:2,queue-depth:1,kv-utilization:1)."),
        click.option("--snapshot-refresh-interval", default=0, type=INT64, help="Refresh interval of routing snapshot signals in ticks (0 = live)."),
        click.option("--cache-signal-delay", default=50000, type=INT64, help="Staleness of the prefix-cache signals routers see, in ticks (0 = live)."),
        click.option("--token-bucket-capacity", default=10000.0, type=float, help="Token-bucket admission: capacity in tokens."),
        click.option("--token-bucket-refill-rate", default=1000.0, type=float, help="Token-bucket admission: refill rate in tokens per second."),
        click.option("--priority-policy", default="constant", help="Instance priority policy plugin name."),
        click.option("--scheduler", default="fcfs", help="Instance scheduler plugin name."),
        click.option("--trace-output", default="", help="Write the run as TraceV2: PREFIX.yaml + PREFIX.csv."),
        click.option("--policy-config", default="", help="Policy bundle YAML (admission, routing, priority, scheduler); flags given explicitly override it."),
        click.option("--fitness-weights", default="", help="Fitness score as key:weight,... (keys: throughput, tokens_per_sec, p50/p99/mean_ttft, p50/p99/mean_e2e)."),
        click.option("--format", "output_format", default="auto", type=click.Choice(["auto", "json", "table"]), help="stdout: json (upstream's report), table, or auto (table on a terminal)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# (plugin kind, flag parameter) of every policy flag, in upstream's validation order; an empty
# value means the default, as upstream's "" does.
POLICY_FLAGS = (("admission", "admission_policy"), ("routing", "routing_policy"),
                ("priority", "priority_policy"), ("scheduler", "scheduler"))
POLICY_DEFAULTS = {"admission": "always-admit", "routing": "round-robin",
                   "priority": "constant", "scheduler": "fcfs"}


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _routing_params(p: dict, bundle_scorers=()) -> dict:
    """Scorers of the ``weighted`` policy: ``--routing-scorers`` if given (non-empty), else the
    bundle's ``routing.scorers``; checked now (one line, exit 2)."""
    scorers = p["routing_scorers"]
    routing = p["routing_policy"] or POLICY_DEFAULTS["routing"]
    if routing != "weighted":
        if scorers:
            log.warning("--routing-scorers has no effect when routing policy is %r "
                        "(only applies to 'weighted')", routing)
        return {}
    if not scorers:
        return {"scorers": list(bundle_scorers)} if bundle_scorers else {}
    try:
        get_registry().get("routing", routing)(scorers=scorers)
    except ValueError as exc:
        fail(f"--routing-scorers: {exc}")
    return {"scorers": scorers}


def _apply_bundle(ctx: click.Context, p: dict, bundle=None):
    """Fill the policy flags from ``--policy-config`` or a loaded ``bundle`` (cluster-policies.md
    §4.1): a bundle value replaces a flag's default, a flag given on the command line wins.
    Returns the bundle's admission parameters, routing scorers and tenant budgets, or
    None, () and None without a bundle."""
    from blis_core.bundle import BundleError, load_bundle

    if bundle is None:
        if not p["policy_config"]:
            return None, (), None
        try:
            bundle = load_bundle(p["policy_config"])
        except BundleError as exc:
            fail(f"--policy-config: {exc}")
    for value, flag in ((bundle.admission.policy, "admission_policy"),
                        (bundle.routing.policy, "routing_policy"),
                        (bundle.priority.policy, "priority_policy"),
                        (bundle.scheduler, "scheduler")):
        if value and not _given(ctx, flag):
            p[flag] = value
    a = bundle.admission
    for value, flag in ((a.token_bucket_capacity, "token_bucket_capacity"),
                        (a.token_bucket_refill_rate, "token_bucket_refill_rate")):
        if value is not None and not _given(ctx, flag):
            p[flag] = value
    scorers = tuple((s.name, s.weight) for s in bundle.routing.scorers)
    return bundle.admission, scorers, bundle.tenant_budgets


def _admission_params(p: dict, section) -> dict:
    """The admission policy's constructor parameters from the flags and the bundle."""
    policy = p["admission_policy"]
    if policy == "token-bucket":
        for flag in ("token_bucket_capacity", "token_bucket_refill_rate"):
            if not p[flag] > 0 or math.isinf(p[flag]):
                fail(f"--{flag.replace('_', '-')} must be a finite value > 0 for "
                     f"--admission-policy token-bucket, got {p[flag]:g}")
        return {"capacity": p["token_bucket_capacity"],
                "refill_rate": p["token_bucket_refill_rate"]}
    slo = dict(section.slo_priorities) if section and section.slo_priorities is not None else None
    if policy == "tier-shed":
        threshold = section.tier_shed_threshold if section else None
        min_priority = section.tier_shed_min_priority if section else None
        if min_priority is None and section is not None and section.policy == "tier-shed":
            min_priority = 3
        if section is None or section.policy != "tier-shed":
            log.warning("tier-shed admission selected by --admission-policy: tier_shed_threshold "
                        "is %d and tier_shed_min_priority is %d, which admits every tier with "
                        "priority >= %d under overload", threshold or 0, min_priority or 0,
                        min_priority or 0)
        params = {"threshold": threshold or 0, "min_priority": min_priority or 0}
        if slo is not None:
            params["slo_priorities"] = slo
        return params
    if policy == "gaie-legacy":
        params = {}
        if section is not None:
            if section.gaie_qd_threshold is not None:
                params["qd_threshold"] = section.gaie_qd_threshold
            if section.gaie_kv_threshold is not None:
                params["kv_threshold"] = section.gaie_kv_threshold
        if slo is not None:
            params["slo_priorities"] = slo
        return params
    return {}


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (tests and embedding callers swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _setup_logging(level: str) -> None:
    """Configure the ``blis`` logger for this run; safe to call once per run in one process."""
    if level not in LOG_LEVELS:
        fail(f"--log: invalid log level {level!r} (use trace, debug, info, warn, error, fatal or panic)")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("level=%(levelname)s msg=%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(LOG_LEVELS[level])


def _resolve(ctx: click.Context, p: dict):
    from blis_core.resolve import LatencyOptions, ResolveError, resolve_latency

    alpha, alpha_given = _coefficients(p["alpha_coeffs"], "--alpha-coeffs")
    beta, beta_given = _coefficients(p["beta_coeffs"], "--beta-coeffs")
    options = LatencyOptions(
        model=p["model"].lower(),
        latency_model=p["latency_model"], latency_model_given=_given(ctx, "latency_model"),
        alpha=alpha, alpha_given=alpha_given, beta=beta, beta_given=beta_given,
        hardware=p["hardware"], tp=p["tp"], vllm_version=p["vllm_version"],
        total_kv_blocks=p["total_kv_blocks"], total_kv_blocks_given=_given(ctx, "total_kv_blocks"),
        block_size=p["block_size_in_tokens"],
        gpu_memory_utilization=p["gpu_memory_utilization"],
        max_model_len=p["max_model_len"], max_model_len_given=_given(ctx, "max_model_len"),
        model_config_folder=p["model_config_folder"], hardware_config=p["hardware_config"],
        defaults_filepath=p["defaults_filepath"],
        defaults_filepath_given=_given(ctx, "defaults_filepath"),
    )
    try:
        resolved = resolve_latency(options)
    except ResolveError as exc:
        for warning in exc.warnings:
            log.warning(warning)
        fail(str(exc))
    for warning in resolved.warnings:
        log.warning(warning)
    return resolved


def _simulation_config(ctx: click.Context, p: dict, bundle=None) -> SimulationConfig:
    """Validate the engine flags and build the run configuration (upstream's order)."""
    from blis_core.latency import LatencyConfigError, build_latency_model

    _setup_logging(p["log_level"])
    if not p["model"]:
        fail("--model: LLM name not provided")
    if not 0 < p["gpu_memory_utilization"] <= 1 or not math.isfinite(p["gpu_memory_utilization"]):
        fail(f"--gpu-memory-utilization must be a finite value in (0, 1.0], got {p['gpu_memory_utilization']}")
    if p["block_size_in_tokens"] <= 0:
        fail("--block-size-in-tokens must be > 0")
    if p["max_model_len"] < 0:
        fail("--max-model-len must be >= 0")
    resolved = _resolve(ctx, p)
    checks = [
        (p["num_instances"] < 1, "--num-instances must be >= 1"),
        (resolved.total_kv_blocks <= 0, "--total-kv-blocks must be > 0"),
        (p["max_num_running_reqs"] <= 0, "--max-num-running-reqs must be > 0"),
        (p["max_num_scheduled_tokens"] <= 0, "--max-num-scheduled-tokens must be > 0"),
        (p["long_prefill_token_threshold"] < 0, "--long-prefill-token-threshold must be >= 0"),
        (_given(ctx, "horizon") and p["horizon"] <= 0, "--horizon must be > 0"),
        (p["kv_cpu_blocks"] < 0, "--kv-cpu-blocks must be >= 0"),
        (not 0 <= p["kv_offload_threshold"] <= 1,
         "--kv-offload-threshold must be a finite value in [0, 1]"),
        (p["kv_cpu_blocks"] > 0 and not p["kv_transfer_bandwidth"] > 0,
         "--kv-transfer-bandwidth must be a finite value > 0 when --kv-cpu-blocks > 0"),
        (p["kv_transfer_base_latency"] < 0, "--kv-transfer-base-latency must be >= 0"),
        (p["admission_latency"] < 0, "--admission-latency must be >= 0"),
        (p["routing_latency"] < 0, "--routing-latency must be >= 0"),
        (p["snapshot_refresh_interval"] < 0, "--snapshot-refresh-interval must be >= 0"),
        (p["cache_signal_delay"] < 0, "--cache-signal-delay must be >= 0"),
    ]
    for bad, message in checks:
        if bad:
            fail(message)
    bundle_admission, bundle_scorers, tenant_budgets = _apply_bundle(ctx, p, bundle)
    registry = get_registry()
    for kind, flag in POLICY_FLAGS:
        try:
            registry.get(kind, p[flag] or POLICY_DEFAULTS[kind])
        except PluginError as exc:
            fail(f"--{flag.replace('_', '-')}: {exc}")
    admission_params = _admission_params(p, bundle_admission)
    if p["kv_cpu_blocks"] > 0 and p["kv_offload_threshold"] != 0:
        log.warning("--kv-offload-threshold is deprecated and ignored")
    block_size = p["block_size_in_tokens"]
    mml = resolved.max_model_len
    if mml > 0 and -(-mml // block_size) > resolved.total_kv_blocks:
        fail(f"KV cache too small for MaxModelLen: need {-(-mml // block_size)} blocks "
             f"(ceil({mml}/{block_size})) but TotalKVBlocks={resolved.total_kv_blocks}")
    try:
        latency = build_latency_model(resolved.backend, list(resolved.alpha), list(resolved.beta),
                                      resolved.model_config, resolved.hardware_config,
                                      resolved.tp, warn=log.warning)
    except LatencyConfigError as exc:
        fail(str(exc))
    return SimulationConfig(
        latency=latency,
        batch=BatchConfig(p["max_num_running_reqs"], p["max_num_scheduled_tokens"],
                          p["long_prefill_token_threshold"], mml),
        kv=KVConfig(resolved.total_kv_blocks, block_size, p["kv_cpu_blocks"],
                    p["kv_transfer_bandwidth"], p["kv_transfer_base_latency"]),
        policies=PolicyConfig(admission=p["admission_policy"] or POLICY_DEFAULTS["admission"],
                              routing=p["routing_policy"] or POLICY_DEFAULTS["routing"],
                              priority=p["priority_policy"] or POLICY_DEFAULTS["priority"],
                              scheduler=p["scheduler"] or POLICY_DEFAULTS["scheduler"],
                              admission_params=admission_params,
                              routing_params=_routing_params(p, bundle_scorers)),
        num_instances=p["num_instances"],
        horizon=p["horizon"],
        seed=p["seed"],
        admission_latency=p["admission_latency"],
        routing_latency=p["routing_latency"],
        model=resolved.model,
        snapshot_refresh_interval=p["snapshot_refresh_interval"],
        cache_signal_delay=p["cache_signal_delay"],
        tenant_budgets=dict(tenant_budgets) if tenant_budgets is not None else None,
        slo_priorities=(dict(bundle_admission.slo_priorities)
                        if bundle_admission is not None
                        and bundle_admission.slo_priorities is not None else None),
    )


# -- commands -----------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main_group() -> None:
    """blis: a discrete-event simulator of LLM inference serving."""


@main_group.command("run")
@engine_options
@click.option("--workload", default="distribution", help="Workload generator: distribution, a preset (chatbot, summarization, contentgen, multidoc) or a scenario (blis plugins list --kind workload).")
@click.option("--workload-spec", default="", help="Workload specification YAML (overrides --workload).")
@click.option("--rate", default=1.0, type=float, help="Arrival rate in requests per second.")
@click.option("--num-requests", default=100, type=INT64, help="Number of requests to generate.")
@click.option("--concurrency", default=0, type=INT64, help="Closed-loop concurrency (instead of --rate).")
@click.option("--think-time-ms", default=0, type=INT64, help="Closed-loop think time in ms.")
@click.option("--prefix-tokens", default=0, type=INT64, help="Shared prefix length in tokens.")
@click.option("--prompt-tokens", default=512, type=INT64, help="Mean prompt length.")
@click.option("--prompt-tokens-stdev", default=256, type=INT64, help="Prompt length standard deviation.")
@click.option("--prompt-tokens-min", default=2, type=INT64, help="Minimum prompt length.")
@click.option("--prompt-tokens-max", default=7000, type=INT64, help="Maximum prompt length.")
@click.option("--output-tokens", default=512, type=INT64, help="Mean output length.")
@click.option("--output-tokens-stdev", default=256, type=INT64, help="Output length standard deviation.")
@click.option("--output-tokens-min", default=2, type=INT64, help="Minimum output length.")
@click.option("--output-tokens-max", default=7000, type=INT64, help="Maximum output length.")
@click.option("--metrics-path", default="", help="Write the summary plus per-request records as JSON.")
@click.pass_context
def run_command(ctx: click.Context, **p) -> None:
    """Simulate a generated workload."""
    from blis_workloads.runner import write_run_trace

    run = prepare_run(ctx, p)
    _execute(run, p, metrics_path=p["metrics_path"])
    if p["trace_output"]:
        with _output_errors("--trace-output", p["trace_output"]):
            write_run_trace(p["trace_output"], run.workload, run.simulation)


@attrs.frozen
class PreparedRun:
    """A validated ``blis run``: the engine configuration, its workload and fitness weights."""

    simulation: SimulationConfig
    workload: object                  # blis_workloads.runner.RunWorkload
    fitness_weights: dict


def _fitness_weights(p: dict) -> dict:
    try:
        return parse_fitness_weights(p["fitness_weights"])
    except FitnessError as exc:
        fail(f"--fitness-weights: {exc}")


def prepare_run(ctx: click.Context, p: dict, bundle=None) -> PreparedRun:
    """Validate the flags of ``blis run`` (``bundle`` stands in for ``--policy-config``) and
    generate the workload; every problem is reported by ``fail`` before anything runs."""
    from blis_workloads.runner import build_run_workload

    config = _simulation_config(ctx, p, bundle)
    weights = _fitness_weights(p)
    workload = build_run_workload(p, {name: _given(ctx, name) for name in p})
    if workload.horizon is not None:
        config = attrs.evolve(config, horizon=workload.horizon)
    return PreparedRun(config, workload, weights)


@main_group.command("replay")
@engine_options
@click.option("--trace-header", required=True, help="TraceV2 header YAML.")
@click.option("--trace-data", required=True, help="TraceV2 data CSV.")
@click.option("--results-path", default="", help="Write per-request results as JSON.")
@click.pass_context
def replay_command(ctx: click.Context, **p) -> None:
    """Replay a recorded TraceV2 workload."""
    from blis_workloads.runner import build_replay_workload, write_replay_results, write_run_trace

    config = _simulation_config(ctx, p)
    run = PreparedRun(config, build_replay_workload(p), _fitness_weights(p))
    result = _execute(run, p, metrics_path="")
    if p["results_path"]:
        with _output_errors("--results-path", p["results_path"]):
            write_replay_results(p["results_path"], result)
    if p["trace_output"]:
        with _output_errors("--trace-output", p["trace_output"]):
            write_run_trace(p["trace_output"], run.workload, config)


@contextlib.contextmanager
def _output_errors(flag: str, path: str):
    """An output file that cannot be written is bad input of ``flag``: name the flag and the
    path the user gave (not the temporary file the atomic write failed on)."""
    try:
        yield
    except OSError as exc:
        fail(f"{flag}: cannot write {path}: {exc.strerror or exc}")


def _execute(run: PreparedRun, p: dict, metrics_path: str):
    from blis_core.report import render
    from blis_core.simulation import simulate

    result = simulate(run.simulation, run.workload.requests, run.workload.sessions)
    evaluation = evaluate_result(result, run.fitness_weights)
    sys.stdout.write(render(evaluation, p["output_format"], sys.stdout.isatty()))
    if metrics_path:
        with _output_errors("--metrics-path", metrics_path):
            write_atomically(metrics_path, go_json(result.summary.output(with_requests=True)))
        log.info("Metrics written to: %s", metrics_path)
    return result


@main_group.group("workload")
def workload_group() -> None:
    """Check, preview and export workloads without running a simulation."""


@workload_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def workload_validate(file: str) -> None:
    """Check a workload spec as --workload-spec would (exit 0 if valid, 2 if not)."""
    from blis_workloads.preview import validate_command

    validate_command(file)


@workload_group.command("preview")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--workload", default=None, help="A workload generator (preset or scenario) instead of FILE.")
@click.option("--rate", default=None, type=float, help="Arrival rate for --workload (default 1.0).")
@click.option("--num-requests", default=None, type=INT64, help="Request cap; overrides the spec's num_requests.")
@click.option("--seed", default=None, type=INT64, help="Seed; overrides the spec's seed.")
@click.option("--horizon", default=None, type=INT64, help="Generation horizon in microseconds.")
@click.option("--buckets", default=20, type=INT64, help="Buckets of the rate and length histograms.")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]), help="Output format.")
def workload_preview(file, workload, rate, num_requests, seed, horizon, buckets, fmt) -> None:
    """Generate a workload as blis run would and summarize it."""
    from blis_workloads.preview import preview_command

    preview_command(file, workload, rate, num_requests, seed, horizon, buckets, fmt)


@workload_group.command("export")
@click.argument("name")
@click.option("--rate", default=None, type=float, help="Arrival rate (default 1.0).")
@click.option("--num-requests", default=None, type=INT64, help="Requests (default 100).")
@click.option("--seed", default=None, type=INT64, help="Seed (default 42).")
@click.option("--output", "-o", default="", help="Write to this file instead of stdout.")
def workload_export(name, rate, num_requests, seed, output) -> None:
    """Print a named workload (scenario or preset) as workload-spec YAML."""
    from blis_workloads.preview import export_command

    export_command(name, rate, num_requests, seed, output)


@main_group.group("plugins")
def plugins_group() -> None:
    """Inspect installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--kind", default="", help="Only this kind (admission, routing, priority, scheduler, workload, arrival, length).")
def plugins_list(as_json: bool, kind: str) -> None:
    """List every installed policy and workload plugin."""
    registry = get_registry()
    known = sorted(KINDS.values())
    if kind and kind not in known:
        fail(f"--kind: unknown kind {kind!r} (known: {', '.join(known)})")
    entries = registry.entries(kind or None)
    if as_json:
        rows = [{"kind": e.kind, "name": e.name, "distribution": e.distribution,
                 "version": e.version, "summary": e.summary, "pathological": e.pathological}
                for e in entries]
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("KIND", "NAME", "DISTRIBUTION", "VERSION", "SUMMARY")
    rows = [(e.kind, e.name + (" (pathological)" if e.pathological else ""), e.distribution,
             e.version, e.summary) for e in entries]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


@main_group.group("policies")
def policies_group() -> None:
    """Work with policy bundles (--policy-config files)."""


@policies_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def policies_validate(file: str) -> None:
    """Check a policy bundle without running anything (exit 0 if valid, 2 if not)."""
    from blis_core.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(file)
    except BundleError as exc:
        fail(str(exc))
    chosen = [f"{kind}={value}" for kind, value in (
        ("admission", bundle.admission.policy), ("routing", bundle.routing.policy),
        ("priority", bundle.priority.policy), ("scheduler", bundle.scheduler)) if value]
    click.echo(f"{file}: valid policy bundle" + (f" ({', '.join(chosen)})" if chosen else ""))


def main(argv=None) -> None:
    """Console entry point: every failure becomes one line on stderr and exit code 2."""
    try:
        main_group.main(args=argv, prog_name="blis", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        _die(exc.format_message().splitlines()[0])
    except click.Abort:
        _die("aborted")
    except (UsageError, PluginError) as exc:
        _die(str(exc))
    except ValueError as exc:
        # Validation errors of configuration objects (attrs validators, spec loaders).
        _die(str(exc))
    except OverflowError as exc:
        # An integer flag too large to size anything with (e.g. --total-kv-blocks 1e23 as digits).
        _die(f"value out of range: {exc}")
    except OSError as exc:
        _die(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except KeyboardInterrupt:
        _die("interrupted")


def _die(message: str) -> None:
    # Exactly one line, whatever the exception text looked like.
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    sys.stderr.write(f"blis: error: {message}\n")
    sys.exit(2)


if __name__ == "__main__":
    main()
