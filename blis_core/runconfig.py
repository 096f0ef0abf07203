"""The typed description of one run: what ``blis run`` builds from its flags, what ``blis run
--config`` reads, what ``blis_core.evaluate`` runs and what a sweep ships to another machine.

A :class:`RunConfig` is plain data (attrs, frozen). It round-trips through YAML and JSON; every
field has the default of the ``blis run`` flag of the same name, and a field that upstream
treats differently when its flag is given (``--seed``, ``--rate``, ``--horizon``,
``--total-kv-blocks``...) is ``None`` until it is set. Structure is checked when a description
is read (an unknown key or a wrong type is one line naming its path); meaning is checked by
:meth:`RunConfig.prepare`, in upstream's order and with the CLI's one-line messages.

Nothing here knows about the command line: ``blis_core.flags`` maps flags onto these fields,
and the CLI is a thin layer over both.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs
import yaml

from blis_core.bundle import (BundleError, PolicyBundle, bundle_problems, first_error,
                              merge_bundles, strict_converter, strip_nulls, structure_bundle,
                              trim_bundle)
from blis_core.strictyaml import YamlError, strict_yaml

__all__ = ["ClusterSection", "ConfigurationError", "EngineSection", "FlowControlSection",
           "ModelSection", "OutputSection", "RunConfig", "TraceFiles", "WorkloadSection"]


class ConfigurationError(ValueError):
    """A run blis refuses; the message is one line (the CLI prints it and exits with 2)."""


@attrs.frozen
class ModelSection:
    """The model, the GPU and how step times are computed (``--model`` ... ``--defaults-filepath``)."""

    name: str = ""
    # None: roofline, unless both coefficient sets are given (then blackbox), as upstream.
    latency_model: str | None = None
    alpha_coeffs: tuple[float, ...] | None = None     # None: from the catalog
    beta_coeffs: tuple[float, ...] | None = None
    hardware: str = ""                                # "": the model's default GPU
    tp: int = 0                                       # 0: the model's default
    vllm_version: str = ""
    gpu_memory_utilization: float = 0.9
    model_config_folder: str = ""
    hardware_config: str = ""
    defaults_filepath: str | None = None              # None: blis's shipped catalog


@attrs.frozen
class EngineSection:
    """One instance: batch formation and KV cache (``--total-kv-blocks`` ... ``--kv-transfer-*``)."""

    total_kv_blocks: int | None = None     # None: derived from the model and GPU
    block_size_in_tokens: int = 16
    max_num_running_reqs: int = 256
    max_num_scheduled_tokens: int = 2048
    long_prefill_token_threshold: int = 0
    max_model_len: int | None = None       # None: derived (roofline) or unlimited
    kv_cpu_blocks: int = 0
    kv_offload_threshold: float = 0.9
    kv_transfer_bandwidth: float = 100.0
    kv_transfer_base_latency: int = 0


@attrs.frozen
class ClusterSection:
    """Instances and the decision pipeline above them."""

    num_instances: int = 1
    admission_latency: int = 0
    routing_latency: int = 0
    snapshot_refresh_interval: int = 0
    cache_signal_delay: int = 50_000


@attrs.frozen
class TraceFiles:
    """A recorded TraceV2 workload (``blis replay --trace-header --trace-data``)."""

    header: str
    data: str


@attrs.frozen
class WorkloadSection:
    """Where the requests come from: a named generator, a workload-spec file, or a trace.

    ``spec`` overrides ``generator``; ``trace`` replays a recording (the generator fields are
    then unused). ``rate`` and ``num_requests`` are None until set: a spec keeps its own
    request count unless ``num_requests`` is set, as with upstream's flags.
    """

    generator: str = "distribution"
    spec: str | None = None
    trace: TraceFiles | None = None
    rate: float | None = None              # None: 1.0 req/s
    num_requests: int | None = None        # None: 100, or the spec's own
    concurrency: int = 0
    think_time_ms: int = 0
    prefix_tokens: int = 0
    prompt_tokens: int = 512
    prompt_tokens_stdev: int = 256
    prompt_tokens_min: int = 2
    prompt_tokens_max: int = 7000
    output_tokens: int = 512
    output_tokens_stdev: int = 256
    output_tokens_min: int = 2
    output_tokens_max: int = 7000

    @property
    def source(self) -> str:
        """The workload-source plugin that builds these requests."""
        return "trace" if self.trace is not None else "generate"


@attrs.frozen
class DecisionTraceSection:
    """The decision trace (upstream ``--trace-level``, ``--counterfactual-k``,
    ``--summarize-trace``); blis_core.decisions."""

    level: str = "none"                    # none | decisions ("" counts as none)
    counterfactual_k: int = 0              # top-k candidates and regret per routing decision
    summarize: bool = False                # print === Trace Summary ===


@attrs.frozen
class DisaggregationSection:
    """Prefill/decode pools (upstream ``--prefill-instances`` and the ``--pd-*`` flags);
    blis_core.disaggregation. ``instance_0..P-1`` prefill, the next D decode."""

    prefill_instances: int = 0
    decode_instances: int = 0
    decider: str = "never"                 # a disaggregation decider plugin
    prefix_threshold: int = 512            # prefix-threshold: uncached prompt tokens to split
    transfer_bandwidth: float = 25.0       # GB/s
    transfer_base_latency: float = 0.05    # ms
    transfer_contention: bool = False      # concurrent transfers share the bandwidth
    prefill_routing_scorers: str = ""      # name:weight,...: a weighted router for the pool
    decode_routing_scorers: str = ""
    prefill_tp: int = 0                    # per-pool overrides (0 / "": the model's)
    decode_tp: int = 0
    prefill_hardware: str = ""
    decode_hardware: str = ""
    prefill_latency_model: str = ""
    decode_latency_model: str = ""
    prefill_max_model_len: int = 0
    decode_max_model_len: int = 0


@attrs.frozen
class FlowControlSection:
    """The gateway queue between admission and routing (upstream ``--flow-control`` and its
    flags); blis_core.flowcontrol. Every other field matters only when ``enabled``."""

    enabled: bool = False
    saturation_detector: str = "never"     # a saturation detector plugin ("" counts as never)
    dispatch_order: str = "fifo"           # a dispatch order plugin: fifo | priority
    max_gateway_queue_depth: int = 0       # 0 = unlimited
    queue_depth_threshold: float = 5.0     # utilization detector
    kv_cache_util_threshold: float = 0.8   # utilization detector
    max_concurrency: int = 100             # concurrency detector: in flight per instance


@attrs.frozen
class OutputSection:
    """What a run shows and records besides its results; none of it changes a number
    (``--timeseries``, ``--timeseries-interval``, ``--progress``). docs/report.md."""

    timeseries: str = ""                   # "": no time series; .json: JSON, else CSV
    timeseries_interval: int = 100_000     # simulated µs between two samples
    progress: bool | None = None           # None: on when stderr is a terminal


DEFAULT_SEED = 42


@attrs.frozen
class RunConfig:
    """One run: model, engine, cluster, policies, workload, horizon, seed and fitness weights.

    ``RunConfig.from_args("--model meta-llama/llama-3.1-8b-instruct --rate 40")`` builds one
    from ``blis run`` flags; ``RunConfig.load("run.yaml")`` reads one; ``to_yaml()`` writes it.
    """

    model: ModelSection = ModelSection()
    engine: EngineSection = EngineSection()
    cluster: ClusterSection = ClusterSection()
    policies: PolicyBundle = PolicyBundle()
    workload: WorkloadSection = WorkloadSection()
    horizon: int | None = None             # None: no horizon (a spec may set one)
    seed: int | None = None                # None: 42, and a spec keeps its own seed
    fitness_weights: Mapping[str, float] = attrs.field(factory=dict)
    decision_trace: DecisionTraceSection = DecisionTraceSection()
    disaggregation: DisaggregationSection = DisaggregationSection()
    flow_control: FlowControlSection = FlowControlSection()
    output: OutputSection = OutputSection()

    @property
    def engine_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_args(cls, args: str | Sequence[str]) -> "RunConfig":
        """The description ``blis run ARGS`` would run, checked at once (ConfigurationError).

        Output flags (``--metrics-path``, ``--trace-output``, ``--format``, ``--log``) are
        accepted and ignored: they say what to write, not what to run. ``--timeseries`` and
        ``--progress`` set the ``output`` section (sampling is part of the run).
        """
        from blis_core.flags import run_config_from_args

        config = run_config_from_args(shlex.split(args) if isinstance(args, str) else args)
        config.prepare()            # refuse a bad run now, not at the first evaluation
        return config

    @classmethod
    def from_dict(cls, data: Any, source: str = "run config") -> "RunConfig":
        """From plain data (parsed YAML or JSON); structural problems are one line naming the
        field path. ``null`` anywhere means the field's default."""
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source}: expected a mapping at the top level")
        data = strip_nulls(data)
        policies = data.pop("policies", None)
        try:
            config = _converter.structure(data, cls)
        except Exception as exc:  # a cattrs validation group, or a leaf error
            path, problem = first_error(exc)
            raise ConfigurationError(f"{source}: {path}: {problem}" if path
                                     else f"{source}: {problem}") from None
        if policies is not None:
            try:
                bundle = structure_bundle(policies, f"{source}: policies")
            except BundleError as exc:
                raise ConfigurationError(str(exc).replace(": policies: ", ": policies.", 1)) \
                    from None
            config = attrs.evolve(config, policies=bundle)
        return config

    @classmethod
    def from_yaml(cls, text: str, source: str = "run config") -> "RunConfig":
        try:
            data = strict_yaml(text)
        except YamlError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        if data is None:
            raise ConfigurationError(f"{source}: the file is empty")
        return cls.from_dict(data, source)

    @classmethod
    def from_json(cls, text: str, source: str = "run config") -> "RunConfig":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{source}: not JSON: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunConfig":
        """Read a YAML (or ``.json``) description. Relative file names inside it are relative
        to the file's folder, so a description and its spec travel together."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read run config: "
                                     f"{exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{path}: cannot read run config: not UTF-8 text") from None
        reader = cls.from_json if path.suffix == ".json" else cls.from_yaml
        return reader(text, str(path)).relative_to(path.parent)

    def relative_to(self, folder: str | os.PathLike) -> "RunConfig":
        """File names made absolute against ``folder`` (absolute ones are kept)."""
        def at(name):
            return name if not name or os.path.isabs(name) else str(Path(folder) / name)

        m, w = self.model, self.workload
        model = attrs.evolve(m, model_config_folder=at(m.model_config_folder),
                             hardware_config=at(m.hardware_config),
                             defaults_filepath=None if m.defaults_filepath is None
                             else at(m.defaults_filepath))
        trace = None if w.trace is None else TraceFiles(at(w.trace.header), at(w.trace.data))
        workload = attrs.evolve(w, spec=None if w.spec is None else at(w.spec), trace=trace)
        output = attrs.evolve(self.output, timeseries=at(self.output.timeseries))
        return attrs.evolve(self, model=model, workload=workload, output=output)

    # -- writing ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain data: every field, the policies as a bundle file would say them (set fields
        only), file names as given."""
        data = _plain(_converter.unstructure(self))
        data["fitness_weights"] = dict(self.fitness_weights)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False,
                              allow_unicode=True)

    # -- changing ---------------------------------------------------------------------------
    def with_bundle(self, bundle: PolicyBundle | str | os.PathLike) -> "RunConfig":
        """This run under ``bundle``: the bundle fills every policy field this description does
        not set, as ``--policy-config`` does under flags given explicitly."""
        from blis_core.bundle import load_bundle

        if not isinstance(bundle, PolicyBundle):
            try:
                bundle = load_bundle(str(bundle))
            except BundleError as exc:
                raise ConfigurationError(f"bundle: {exc}") from None
        return attrs.evolve(self, policies=merge_bundles(bundle, self.policies))

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with fields replaced by dotted path: ``replace(**{"workload.rate": 40})``."""
        config = self
        for path, value in changes.items():
            config = _replace_path(config, path.split("."), value, path)
        return config

    # -- running ----------------------------------------------------------------------------
    def prepare(self, bundle=None, registry=None):
        """Check the run and build it: a :class:`blis_core.runner.PreparedRun` with a freshly
        generated workload. ``bundle`` (a path or a PolicyBundle) is applied as by
        :meth:`with_bundle`. Raises :class:`ConfigurationError`."""
        from blis_core.runner import prepare_run

        config = self if bundle is None else self.with_bundle(bundle)
        return prepare_run(config, registry)

    def problems_of_policies(self, registry) -> list[str]:
        """What is wrong with the policies section, as ``policies.<path>: problem`` lines."""
        return [f"policies.{line}" for line in bundle_problems(self.policies, registry)]


def _plain(value: Any) -> Any:
    """Lists for tuples, so YAML and JSON writers take the data as it is."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _replace_path(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    name = parts[0]
    if not attrs.has(type(obj)) or name not in attrs.fields_dict(type(obj)):
        raise ConfigurationError(f"{full}: unknown field {name!r}")
    if len(parts) == 1:
        return attrs.evolve(obj, **{name: value})
    return attrs.evolve(obj, **{name: _replace_path(getattr(obj, name), parts[1:], value, full)})


_converter = strict_converter()
_converter.register_unstructure_hook(PolicyBundle, trim_bundle)
