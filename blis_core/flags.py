"""``blis run`` and ``blis replay`` flags, and how each one sets a field of a :class:`RunConfig`.

Flag names and defaults are upstream's (4e179804), so its command lines run unchanged. A flag
given on the command line sets its field; a flag left out leaves the field as the base
description has it (``--config FILE``, else the defaults). Layers, lowest first: the defaults,
``--config``, ``--policy-config`` (its set fields), then the flags given explicitly.

The CLI decorates its commands with :func:`run_options` / :func:`replay_options`;
:meth:`RunConfig.from_args` parses with the same options. This module never imports the CLI.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import attrs
import click

from blis_core.bundle import BundleError, ScorerEntry, load_bundle, merge_bundles
from blis_core.events import MAX_TICK
from blis_core.evaluation import FitnessError, parse_fitness_weights
from blis_core.plugins import get_registry
from blis_core.runconfig import ConfigurationError, RunConfig, TraceFiles

log = logging.getLogger("blis")

# Integer flags are int64 upstream; larger values are rejected by the flag parser.
INT64 = click.IntRange(-(2**63), 2**63 - 1)


def _coefficients(flag: str) -> Callable[[tuple[str, ...]], tuple[float, ...]]:
    """Comma-separated floats; a repeated flag appends, as pflag's float-slice flags do."""
    def convert(values: tuple[str, ...]) -> tuple[float, ...]:
        out = []
        for chunk in values:
            for item in chunk.split(","):
                item = item.strip()
                try:
                    out.append(float(item))
                except ValueError:
                    raise ConfigurationError(f"{flag}: {item!r} is not a number") from None
        return tuple(out)
    return convert


def _fitness(text: str) -> dict:
    try:
        return parse_fitness_weights(text)
    except FitnessError as exc:
        raise ConfigurationError(f"--fitness-weights: {exc}") from None


@attrs.frozen
class Flag:
    """One flag: its click option and the RunConfig field it sets (``None``: not part of the
    run description: output, logging and the file flags handled by the commands)."""

    name: str
    path: str | None
    default: Any
    help: str
    type: Any = None
    multiple: bool = False
    is_flag: bool = False
    convert: Callable[[Any], Any] | None = None
    param: str | None = None         # the click parameter name, when not derived from the flag

    @property
    def dest(self) -> str:
        return self.param or self.name.lstrip("-").replace("-", "_")

    def option(self):
        kwargs: dict[str, Any] = {"help": self.help}
        if self.multiple:
            kwargs["multiple"] = True
        elif self.is_flag:
            kwargs["is_flag"] = True
        else:
            kwargs["default"] = self.default
        if self.type is not None:
            kwargs["type"] = self.type
        names = [self.name] + ([self.param] if self.param else [])
        return click.option(*names, **kwargs)


# Engine flags, shared by ``run`` and ``replay``, in upstream's order.
ENGINE_FLAGS = (
    Flag("--model", "model.name", "", "LLM name (lowercased), e.g. meta-llama/llama-3.1-8b-instruct.",
         convert=str.lower),
    Flag("--latency-model", "model.latency_model", "roofline", "roofline, blackbox or trained-physics."),
    Flag("--alpha-coeffs", "model.alpha_coeffs", None, "Comma-separated alpha coefficients (repeat to append).",
         multiple=True, convert=_coefficients("--alpha-coeffs")),
    Flag("--beta-coeffs", "model.beta_coeffs", None, "Comma-separated beta coefficients (repeat to append).",
         multiple=True, convert=_coefficients("--beta-coeffs")),
    Flag("--hardware", "model.hardware", "", "GPU type (default from the model's catalog entry)."),
    Flag("--tp", "model.tp", 0, "Tensor parallelism (default from the catalog).", INT64),
    Flag("--vllm-version", "model.vllm_version", "", "vLLM version used to select coefficients."),
    Flag("--gpu-memory-utilization", "model.gpu_memory_utilization", 0.9, "GPU memory fraction for KV (0, 1].", float),
    Flag("--model-config-folder", "model.model_config_folder", "", "Folder with a HuggingFace config.json."),
    Flag("--hardware-config", "model.hardware_config", "", "GPU specification JSON (upstream format)."),
    Flag("--defaults-filepath", "model.defaults_filepath", "defaults.yaml", "Upstream defaults.yaml (default: the shipped catalog)."),
    Flag("--seed", "seed", 42, "Master random seed.", INT64),
    Flag("--horizon", "horizon", MAX_TICK, "Simulation horizon in microseconds.", INT64),
    Flag("--log", None, "warn", "Log level on stderr.", param="log_level"),
    Flag("--total-kv-blocks", "engine.total_kv_blocks", 1_000_000, "GPU KV blocks per instance (auto-derived when omitted).", INT64),
    Flag("--block-size-in-tokens", "engine.block_size_in_tokens", 16, "Tokens per KV block.", INT64),
    Flag("--max-num-running-reqs", "engine.max_num_running_reqs", 256, "Maximum running requests per instance.", INT64),
    Flag("--max-num-scheduled-tokens", "engine.max_num_scheduled_tokens", 2048, "Token budget per step.", INT64),
    Flag("--long-prefill-token-threshold", "engine.long_prefill_token_threshold", 0, "Prefill chunk cap (0 = off).", INT64),
    Flag("--max-model-len", "engine.max_model_len", 0, "Maximum sequence length (0 = unlimited; roofline derives it).", INT64),
    Flag("--kv-cpu-blocks", "engine.kv_cpu_blocks", 0, "CPU-tier KV blocks (0 = single tier).", INT64),
    Flag("--kv-offload-threshold", "engine.kv_offload_threshold", 0.9, "Deprecated; accepted for compatibility.", float),
    Flag("--kv-transfer-bandwidth", "engine.kv_transfer_bandwidth", 100.0, "CPU->GPU reload bandwidth in blocks per tick.", float),
    Flag("--kv-transfer-base-latency", "engine.kv_transfer_base_latency", 0, "Fixed CPU->GPU reload latency in ticks.", INT64),
    Flag("--num-instances", "cluster.num_instances", 1, "Number of serving instances.", INT64),
    Flag("--admission-policy", "policies.admission.policy", "always-admit", "Admission policy plugin name."),
    Flag("--admission-latency", "cluster.admission_latency", 0, "Admission decision latency (ticks).", INT64),
    Flag("--routing-policy", "policies.routing.policy", "round-robin", "Routing policy plugin name."),
    Flag("--routing-latency", "cluster.routing_latency", 0, "Routing decision latency (ticks).", INT64),
    Flag("--routing-scorers", None, "", "Weighted routing scorers name:weight,... (default precise-prefix-cache:2,queue-depth:1,kv-utilization:1)."),
    Flag("--snapshot-refresh-interval", "cluster.snapshot_refresh_interval", 0, "Refresh interval of routing snapshot signals in ticks (0 = live).", INT64),
    Flag("--cache-signal-delay", "cluster.cache_signal_delay", 50000, "Staleness of the prefix-cache signals routers see, in ticks (0 = live).", INT64),
    Flag("--model-autoscaler-interval-us", "policies.autoscaler.interval_us", 0.0, "Autoscaler tick interval in ticks (0 = off); replaces the bundle's autoscaler.interval_us.", float),
    Flag("--token-bucket-capacity", "policies.admission.token_bucket_capacity", 10000.0, "Token-bucket admission: capacity in tokens.", float),
    Flag("--token-bucket-refill-rate", "policies.admission.token_bucket_refill_rate", 1000.0, "Token-bucket admission: refill rate in tokens per second.", float),
    Flag("--priority-policy", "policies.priority.policy", "constant", "Instance priority policy plugin name."),
    Flag("--scheduler", "policies.scheduler", "fcfs", "Instance scheduler plugin name."),
    Flag("--trace-output", None, "", "Write the run as TraceV2: PREFIX.yaml + PREFIX.csv."),
    Flag("--prefill-instances", "disaggregation.prefill_instances", 0, "P/D: instances in the prefill pool (instance_0..P-1).", INT64),
    Flag("--decode-instances", "disaggregation.decode_instances", 0, "P/D: instances in the decode pool (the next D).", INT64),
    Flag("--pd-decider", "disaggregation.decider", "never", "P/D: which requests to split: never, always, prefix-threshold (or a plugin)."),
    Flag("--pd-prefix-threshold", "disaggregation.prefix_threshold", 512, "P/D prefix-threshold: split when more uncached prompt tokens than this.", INT64),
    Flag("--pd-transfer-bandwidth", "disaggregation.transfer_bandwidth", 25.0, "P/D: KV transfer bandwidth in GB/s.", float),
    Flag("--pd-transfer-base-latency", "disaggregation.transfer_base_latency", 0.05, "P/D: fixed latency of one KV transfer in ms.", float),
    Flag("--pd-transfer-contention", "disaggregation.transfer_contention", False, "P/D: concurrent KV transfers share the bandwidth.", is_flag=True),
    Flag("--prefill-routing-scorers", "disaggregation.prefill_routing_scorers", "", "P/D: weighted scorers of the prefill pool's router (default: the main router)."),
    Flag("--decode-routing-scorers", "disaggregation.decode_routing_scorers", "", "P/D: weighted scorers of the decode pool's router (default: the main router)."),
    Flag("--prefill-tp", "disaggregation.prefill_tp", 0, "P/D: tensor parallelism of the prefill pool.", INT64),
    Flag("--decode-tp", "disaggregation.decode_tp", 0, "P/D: tensor parallelism of the decode pool.", INT64),
    Flag("--prefill-hardware", "disaggregation.prefill_hardware", "", "P/D: GPU of the prefill pool."),
    Flag("--decode-hardware", "disaggregation.decode_hardware", "", "P/D: GPU of the decode pool."),
    Flag("--prefill-latency-model", "disaggregation.prefill_latency_model", "", "P/D: latency model of the prefill pool."),
    Flag("--decode-latency-model", "disaggregation.decode_latency_model", "", "P/D: latency model of the decode pool."),
    Flag("--prefill-max-model-len", "disaggregation.prefill_max_model_len", 0, "P/D: MaxModelLen of the prefill pool.", INT64),
    Flag("--decode-max-model-len", "disaggregation.decode_max_model_len", 0, "P/D: MaxModelLen of the decode pool.", INT64),
    Flag("--flow-control", "flow_control.enabled", False, "Hold admitted requests in a gateway queue, dispatched while the cluster is not saturated.", is_flag=True),
    Flag("--saturation-detector", "flow_control.saturation_detector", "never", "Flow control: saturation detector: never, utilization, concurrency (or a plugin)."),
    Flag("--dispatch-order", "flow_control.dispatch_order", "fifo", "Flow control: gateway dispatch order: fifo, priority (or a plugin)."),
    Flag("--max-gateway-queue-depth", "flow_control.max_gateway_queue_depth", 0, "Flow control: gateway queue capacity; the lowest-priority request is shed beyond it (0 = unlimited).", INT64),
    Flag("--queue-depth-threshold", "flow_control.queue_depth_threshold", 5.0, "Flow control, utilization detector: wait-queue length of a saturated instance.", float),
    Flag("--kv-cache-util-threshold", "flow_control.kv_cache_util_threshold", 0.8, "Flow control, utilization detector: KV utilization of a saturated instance.", float),
    Flag("--max-concurrency", "flow_control.max_concurrency", 100, "Flow control, concurrency detector: requests in flight per instance at saturation.", INT64),
    Flag("--trace-level", "decision_trace.level", "none", "Decision trace: none or decisions."),
    Flag("--counterfactual-k", "decision_trace.counterfactual_k", 0, "Counterfactual candidates (and regret) per routing decision; needs --trace-level decisions.", INT64),
    Flag("--summarize-trace", "decision_trace.summarize", False, "Print the decision trace summary; needs --trace-level decisions.", is_flag=True),
    Flag("--decision-trace", None, "", "Write every decision as JSON Lines (records decisions even with --trace-level none)."),
    Flag("--policy-config", None, "", "Policy bundle YAML (admission, routing, priority, scheduler); flags given explicitly override it."),
    Flag("--fitness-weights", "fitness_weights", "", "Fitness score as key:weight,... (keys: throughput, tokens_per_sec, p50/p99/mean_ttft, p50/p99/mean_e2e).",
         convert=_fitness),
    Flag("--format", None, "auto", "stdout: json (upstream's report), table, or auto (table on a terminal).",
         click.Choice(["auto", "json", "table"]), param="output_format"),
    Flag("--config", None, "", "Run description YAML or JSON (blis run --dump-config writes one); flags given explicitly override it.",
         param="config_path"),
    Flag("--dump-config", None, False, "Print the run description these flags make, as YAML, and exit.",
         is_flag=True, param="dump_config"),
)

# Workload flags of ``run`` (``replay`` reads its workload from a trace).
WORKLOAD_FLAGS = (
    Flag("--workload", "workload.generator", "distribution", "Workload generator: distribution, a preset (chatbot, summarization, contentgen, multidoc) or a scenario (blis plugins list --kind workload)."),
    Flag("--workload-spec", "workload.spec", "", "Workload specification YAML (overrides --workload).",
         convert=lambda text: text or None),
    Flag("--rate", "workload.rate", 1.0, "Arrival rate in requests per second.", float),
    Flag("--num-requests", "workload.num_requests", 100, "Number of requests to generate.", INT64),
    Flag("--concurrency", "workload.concurrency", 0, "Closed-loop concurrency (instead of --rate).", INT64),
    Flag("--think-time-ms", "workload.think_time_ms", 0, "Closed-loop think time in ms.", INT64),
    Flag("--prefix-tokens", "workload.prefix_tokens", 0, "Shared prefix length in tokens.", INT64),
    Flag("--prompt-tokens", "workload.prompt_tokens", 512, "Mean prompt length.", INT64),
    Flag("--prompt-tokens-stdev", "workload.prompt_tokens_stdev", 256, "Prompt length standard deviation.", INT64),
    Flag("--prompt-tokens-min", "workload.prompt_tokens_min", 2, "Minimum prompt length.", INT64),
    Flag("--prompt-tokens-max", "workload.prompt_tokens_max", 7000, "Maximum prompt length.", INT64),
    Flag("--output-tokens", "workload.output_tokens", 512, "Mean output length.", INT64),
    Flag("--output-tokens-stdev", "workload.output_tokens_stdev", 256, "Output length standard deviation.", INT64),
    Flag("--output-tokens-min", "workload.output_tokens_min", 2, "Minimum output length.", INT64),
    Flag("--output-tokens-max", "workload.output_tokens_max", 7000, "Maximum output length.", INT64),
    Flag("--metrics-path", None, "", "Write the summary plus per-request records as JSON."),
)

# What a run shows and records over time (the ``output`` section), for ``run`` and ``replay``.
OUTPUT_FLAGS = (
    Flag("--timeseries", "output.timeseries", "", "Sample every instance at a fixed simulated interval and write the series (CSV, or JSON for a .json path)."),
    Flag("--timeseries-interval", "output.timeseries_interval", 100_000, "Simulated microseconds between two time-series samples.", INT64),
    Flag("--progress/--no-progress", "output.progress", None, "Progress on stderr (default: when stderr is a terminal).",
         param="progress"),
)

REPLAY_FLAGS = (
    Flag("--trace-header", None, "", "TraceV2 header YAML."),
    Flag("--trace-data", None, "", "TraceV2 data CSV."),
    Flag("--results-path", None, "", "Write per-request results as JSON."),
)

RUN_FLAGS = ENGINE_FLAGS + WORKLOAD_FLAGS + OUTPUT_FLAGS
ALL_FLAGS = ENGINE_FLAGS + WORKLOAD_FLAGS + OUTPUT_FLAGS + REPLAY_FLAGS


def _decorate(flags: Sequence[Flag]):
    def decorator(func):
        for flag in reversed(flags):
            func = flag.option()(func)
        return func
    return decorator


def run_options(func):
    """The options of ``blis run``."""
    return _decorate(RUN_FLAGS)(func)


def replay_options(func):
    """The options of ``blis replay``."""
    return _decorate(ENGINE_FLAGS + REPLAY_FLAGS + OUTPUT_FLAGS)(func)


def given(ctx: click.Context, dest: str) -> bool:
    source = ctx.get_parameter_source(dest)
    return source is not None and source.name == "COMMANDLINE"


def run_config_from_context(ctx: click.Context) -> RunConfig:
    """The run description of a parsed ``blis run`` / ``blis replay`` command line."""
    p = ctx.params
    config = RunConfig.load(p["config_path"]) if p.get("config_path") else RunConfig()
    if p.get("policy_config"):
        try:
            bundle = load_bundle(p["policy_config"])
        except BundleError as exc:
            raise ConfigurationError(f"--policy-config: {exc}") from None
        config = attrs.evolve(config, policies=merge_bundles(config.policies, bundle))
    by_dest = {flag.dest: flag for flag in ALL_FLAGS}
    changes = {}
    for dest, value in p.items():
        flag = by_dest.get(dest)
        if flag is None or flag.path is None or not given(ctx, dest):
            continue
        changes[flag.path] = flag.convert(value) if flag.convert else value
    config = config.replace(**changes)
    if given(ctx, "trace_header") or given(ctx, "trace_data"):
        trace = config.workload.trace
        header = p["trace_header"] if given(ctx, "trace_header") else (trace.header if trace else "")
        data = p["trace_data"] if given(ctx, "trace_data") else (trace.data if trace else "")
        config = config.replace(**{"workload.trace": TraceFiles(header, data)})
    if given(ctx, "routing_scorers"):
        config = _apply_routing_scorers(config, p["routing_scorers"])
    return config


def _apply_routing_scorers(config: RunConfig, text: str) -> RunConfig:
    """``--routing-scorers``: only the ``weighted`` policy takes scorers; an empty value keeps
    the bundle's (or the default profile)."""
    routing = config.policies.routing.policy or "round-robin"
    if routing != "weighted":
        if text:
            log.warning("--routing-scorers has no effect when routing policy is %r "
                        "(only applies to 'weighted')", routing)
        return config
    if not text:
        return config
    try:
        get_registry().get("routing", routing)(scorers=text)
    except ValueError as exc:
        raise ConfigurationError(f"--routing-scorers: {exc}") from None
    entries = []
    for item in text.split(","):
        name, _, weight = item.strip().partition(":")
        entries.append(ScorerEntry(name.strip(), float(weight.strip())))
    routing_section = attrs.evolve(config.policies.routing, scorers=tuple(entries))
    return attrs.evolve(config, policies=attrs.evolve(config.policies, routing=routing_section))


def _params_of(flags: Sequence[Flag]) -> list[click.Parameter]:
    holder = _decorate(flags)(lambda **_: None)
    return list(reversed(holder.__click_params__))


def run_config_from_args(args: Sequence[str]) -> RunConfig:
    """The run description of ``blis run ARGS`` (structure only; :meth:`RunConfig.prepare`
    checks the meaning)."""
    command = click.Command("run", params=_params_of(RUN_FLAGS))
    try:
        ctx = command.make_context("run", [str(a) for a in args])
    except click.ClickException as exc:
        raise ConfigurationError(exc.format_message().splitlines()[0]) from None
    return run_config_from_context(ctx)


__all__ = ["ALL_FLAGS", "ENGINE_FLAGS", "Flag", "INT64", "OUTPUT_FLAGS", "REPLAY_FLAGS", "RUN_FLAGS",
           "WORKLOAD_FLAGS", "given", "replay_options", "run_config_from_args",
           "run_config_from_context", "run_options"]
