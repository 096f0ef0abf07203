"""From ``blis run`` workload flags to a generated workload (cluster-policies.md §6.1).

Every CLI workload is a v2 ``WorkloadSpec``: ``--workload-spec FILE`` loads one, ``--concurrency``
synthesizes a closed-loop client, ``--workload distribution`` (the default) and the presets
synthesize one constant-rate client with gaussian lengths. The checks run in upstream's order
and fail with upstream's message text (engine.md §8.2 item 3), as ``WorkloadError``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Mapping

import attrs

from blis_workloads.generate import MAX_HORIZON, Workload, generate_workload
from blis_workloads.presets import PRESETS, PresetLengths
from blis_workloads.spec import (ArrivalSpec, ClientSpec, DistSpec, WorkloadError, WorkloadSpec,
                                 go_fmt_v, go_quote, load_workload_spec)

__all__ = [
    "BUILTIN_GENERATORS",
    "ChatbotWorkload",
    "CliWorkload",
    "ContentgenWorkload",
    "DistributionWorkload",
    "MultidocWorkload",
    "SummarizationWorkload",
    "WorkloadError",
    "WorkloadOptions",
    "build_cli_workload",
    "concurrency_spec",
    "distribution_spec",
    "preset_spec",
]


@attrs.define
class WorkloadOptions:
    """The workload flags of ``blis run`` with upstream's defaults.

    ``explicit`` names the flags given on the command line (``"seed"``, ``"rate"``,
    ``"num-requests"``): upstream treats an explicit flag differently from its default.
    """

    rate: float = 1.0
    num_requests: int = 100
    seed: int = 42
    prefix_tokens: int = 0
    prompt_tokens: int = 512
    prompt_tokens_stdev: int = 256
    prompt_tokens_min: int = 2
    prompt_tokens_max: int = 7000
    output_tokens: int = 512
    output_tokens_stdev: int = 256
    output_tokens_min: int = 2
    output_tokens_max: int = 7000
    concurrency: int = 0
    think_time_ms: int = 0
    explicit: frozenset[str] = frozenset()


def _check_rate(rate: float) -> None:
    if not rate > 0 or math.isinf(rate):
        raise WorkloadError(f"--rate must be a finite value > 0, got {go_fmt_v(rate)}")


def _check_lengths(o: WorkloadOptions) -> None:
    """Upstream's distribution checks. The last pair also requires the stdev to lie in
    [min, max], a carry-over quirk (a stdev below the min is fatal)."""
    for flag, value in (("prompt-tokens-min", o.prompt_tokens_min),
                        ("prompt-tokens-max", o.prompt_tokens_max),
                        ("output-tokens-min", o.output_tokens_min),
                        ("output-tokens-max", o.output_tokens_max)):
        if value < 1:
            raise WorkloadError(f"--{flag} must be >= 1, got {value}")
    for flag, value in (("prompt-tokens-stdev", o.prompt_tokens_stdev),
                        ("output-tokens-stdev", o.output_tokens_stdev)):
        if value < 0:
            raise WorkloadError(f"--{flag} must be >= 0, got {value}")
    for kind, lo, hi in (("prompt", o.prompt_tokens_min, o.prompt_tokens_max),
                         ("output", o.output_tokens_min, o.output_tokens_max)):
        if lo > hi:
            raise WorkloadError(f"--{kind}-tokens-min ({lo}) must be <= --{kind}-tokens-max ({hi})")
    for kind, mean, std, lo, hi in (
            ("prompt", o.prompt_tokens, o.prompt_tokens_stdev, o.prompt_tokens_min,
             o.prompt_tokens_max),
            ("output", o.output_tokens, o.output_tokens_stdev, o.output_tokens_min,
             o.output_tokens_max)):
        if mean > hi or mean < lo or std > hi or std < lo:
            raise WorkloadError(f"{kind}-tokens and {kind}-tokens-stdev should be in range "
                                f"[{kind}-tokens-min, {kind}-tokens-max]")


def _gaussian(mean: int, std: int, lo: int, hi: int) -> DistSpec:
    return DistSpec("gaussian", {"mean": float(mean), "std_dev": float(std), "min": float(lo),
                                 "max": float(hi)})


def _synthesize(lengths: WorkloadOptions | PresetLengths, *, seed: int, num_requests: int,
                rate: float = 0.0, concurrency: int = 0, think_time_ms: int = 0) -> WorkloadSpec:
    """Upstream ``SynthesizeFromDistribution``: one client "distribution", constant arrivals
    (rate mode) or ``concurrency`` virtual users, gaussian input and output lengths."""
    client = ClientSpec(
        id="distribution", arrival=ArrivalSpec("constant"),
        input_distribution=_gaussian(lengths.prompt_tokens, lengths.prompt_tokens_stdev,
                                     lengths.prompt_tokens_min, lengths.prompt_tokens_max),
        output_distribution=_gaussian(lengths.output_tokens, lengths.output_tokens_stdev,
                                      lengths.output_tokens_min, lengths.output_tokens_max))
    aggregate_rate = 0.0
    if concurrency > 0:
        client.concurrency = concurrency
        client.think_time_us = think_time_ms * 1000
    else:
        client.rate_fraction = 1.0
        aggregate_rate = rate
    if lengths.prefix_tokens > 0:
        client.prefix_group = "shared"
        client.prefix_length = lengths.prefix_tokens
    return WorkloadSpec(version="2", seed=seed, category="language",
                        aggregate_rate=aggregate_rate, num_requests=num_requests,
                        clients=[client])


def distribution_spec(options: WorkloadOptions) -> WorkloadSpec:
    """``--workload distribution``: validated, then synthesized from the length flags."""
    _check_rate(options.rate)
    _check_lengths(options)
    return _synthesize(options, seed=options.seed, num_requests=options.num_requests,
                       rate=options.rate)


def preset_spec(name: str, options: WorkloadOptions,
                presets: Mapping[str, PresetLengths] = PRESETS) -> WorkloadSpec:
    """A preset: lengths from the table, rate and request count from the flags (the length
    checks of ``distribution`` are not applied, as upstream)."""
    _check_rate(options.rate)
    lengths = presets.get(name)
    if lengths is None:
        raise WorkloadError(f"Undefined workload {go_quote(name)}. Use one among (chatbot, "
                            "summarization, contentgen, multidoc) or --workload-spec")
    return _synthesize(lengths, seed=options.seed, num_requests=options.num_requests,
                       rate=options.rate)


def concurrency_spec(options: WorkloadOptions) -> WorkloadSpec:
    """``--concurrency N``: N closed-loop virtual users; ``num_requests`` only if given."""
    _check_lengths(options)
    num_requests = options.num_requests if "num-requests" in options.explicit else 0
    return _synthesize(options, seed=options.seed, num_requests=num_requests,
                       concurrency=options.concurrency, think_time_ms=options.think_time_ms)


# --------------------------------------------------------------------------------------------
# Named workload generators (the ``--workload NAME`` values), discovered through the plugin.

class DistributionWorkload:
    """Gaussian prompt and output lengths from the --prompt-* and --output-* flags, constant rate."""

    name: ClassVar[str] = "distribution"

    def to_spec(self, options: WorkloadOptions) -> WorkloadSpec:
        return distribution_spec(options)


class _PresetWorkload:
    name: ClassVar[str]

    def __init__(self, presets: Mapping[str, PresetLengths] = PRESETS) -> None:
        self.presets = presets

    def to_spec(self, options: WorkloadOptions) -> WorkloadSpec:
        return preset_spec(self.name, options, self.presets)


class ChatbotWorkload(_PresetWorkload):
    """Chat preset: prompts 256±100 tokens (2..800), answers 256±100 (1..1024)."""

    name = "chatbot"


class SummarizationWorkload(_PresetWorkload):
    """Summarization preset: prompts 4096±500 tokens (100..8192), answers 512±150 (10..2048)."""

    name = "summarization"


class ContentgenWorkload(_PresetWorkload):
    """Content-generation preset: prompts 1024±150 (10..2048), answers 1024±200 (10..2048)."""

    name = "contentgen"


class MultidocWorkload(_PresetWorkload):
    """Multi-document preset: prompts 10240±1200 (500..20480), answers 1536±300 (50..4096)."""

    name = "multidoc"


BUILTIN_GENERATORS: tuple[type, ...] = (DistributionWorkload, ChatbotWorkload,
                                        SummarizationWorkload, ContentgenWorkload,
                                        MultidocWorkload)


# --------------------------------------------------------------------------------------------
# The whole CLI path.

@attrs.define(eq=False)
class CliWorkload:
    """What ``blis run`` needs: the final spec (its seed goes into the trace header), the
    horizon (a spec may set it), the request cap and the generated workload."""

    spec: WorkloadSpec
    horizon: int
    max_requests: int
    workload: Workload


def build_cli_workload(options: WorkloadOptions, workload: str = "distribution",
                       spec_path: str | None = None, horizon: int | None = None,
                       generators: Mapping[str, object] | None = None) -> CliWorkload:
    """Run upstream's workload steps of ``blis run`` in order.

    ``horizon`` is the ``--horizon`` value, None when not given. ``generators`` maps
    ``--workload`` names to generator objects (``to_spec(options)``); the built-ins by default.
    Errors are ``WorkloadError`` with the complete fatal message (``Failed to ...`` included).
    """
    o = options
    if o.num_requests < 0:
        raise WorkloadError(f"--num-requests must be >= 0, got {o.num_requests}")
    if o.prefix_tokens < 0:
        raise WorkloadError(f"--prefix-tokens must be >= 0, got {o.prefix_tokens}")
    if o.concurrency < 0:
        raise WorkloadError(f"--concurrency must be >= 0, got {o.concurrency}")
    if o.think_time_ms < 0:
        raise WorkloadError(f"--think-time-ms must be >= 0, got {o.think_time_ms}")
    if o.concurrency > 0 and "rate" in o.explicit:
        raise WorkloadError("--concurrency and --rate are mutually exclusive; use one or the "
                            "other")

    effective_horizon = MAX_HORIZON if horizon is None else horizon
    if spec_path:
        if o.concurrency > 0:
            raise WorkloadError("--concurrency cannot be used with --workload-spec; define "
                                "concurrency in the spec file using clients[].concurrency "
                                "instead")
        try:
            spec = load_workload_spec(spec_path)
        except WorkloadError as exc:
            raise WorkloadError(f"Failed to load workload spec: {exc}") from None
        if "seed" in o.explicit:
            spec.seed = o.seed
        if spec.horizon > 0 and horizon is None:
            effective_horizon = spec.horizon
    elif o.concurrency > 0:
        spec = concurrency_spec(o)
    else:
        if generators is None:
            generators = {cls.name: cls() for cls in BUILTIN_GENERATORS}
        generator = generators.get(workload)
        if generator is None:
            _check_rate(o.rate)     # upstream checks the rate before the name
            raise WorkloadError(f"Undefined workload {go_quote(workload)}. Use one among "
                                "(chatbot, summarization, contentgen, multidoc) or "
                                "--workload-spec")
        spec = generator.to_spec(o)

    max_requests = o.num_requests if "num-requests" in o.explicit else spec.num_requests
    if max_requests <= 0 and effective_horizon == MAX_HORIZON:
        raise WorkloadError("Workload requires either num_requests or --horizon to bound "
                            "generation")
    try:
        generated = generate_workload(spec, effective_horizon, max_requests)
    except WorkloadError as exc:
        raise WorkloadError(f"Failed to generate workload: {exc}") from None
    return CliWorkload(spec, effective_horizon, max_requests, generated)
