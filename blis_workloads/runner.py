"""The two built-in workload sources: ``generate`` (a named generator or a workload spec) and
``trace`` (a TraceV2 replay).

blis_core finds them through the ``blis_workload_sources`` hook and calls them with the whole
run description; generators themselves are looked up in the plugin registry, so a third-party
generator is selected with ``--workload NAME`` exactly like a built-in one.
"""

from __future__ import annotations

from typing import ClassVar

from blis_core.protocols import RunWorkload
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_workloads.cli_synthesis import WorkloadOptions, build_cli_workload
from blis_workloads.spec import WorkloadError
from blis_workloads.tracev2 import TraceError, export_run_trace, load_trace, replay_requests


def workload_options(config: RunConfig) -> WorkloadOptions:
    """The generator options of a description. ``explicit`` names what upstream treats
    differently when its flag is given: ``rate``, ``num-requests`` and ``seed``."""
    w = config.workload
    explicit = {flag for flag, value in (("rate", w.rate), ("num-requests", w.num_requests),
                                         ("seed", config.seed)) if value is not None}
    return WorkloadOptions(
        rate=1.0 if w.rate is None else w.rate,
        num_requests=100 if w.num_requests is None else w.num_requests,
        seed=config.engine_seed,
        prefix_tokens=w.prefix_tokens, prompt_tokens=w.prompt_tokens,
        prompt_tokens_stdev=w.prompt_tokens_stdev, prompt_tokens_min=w.prompt_tokens_min,
        prompt_tokens_max=w.prompt_tokens_max, output_tokens=w.output_tokens,
        output_tokens_stdev=w.output_tokens_stdev, output_tokens_min=w.output_tokens_min,
        output_tokens_max=w.output_tokens_max, concurrency=w.concurrency,
        think_time_ms=w.think_time_ms, explicit=frozenset(explicit))


def _write_trace(prefix: str, workload: RunWorkload, simulation) -> None:
    export_run_trace(prefix, workload.requests, workload.follow_ups, mode=workload.mode,
                     workload_seed=workload.seed if workload.mode == "generated" else None,
                     post_decode_overhead=simulation.latency.post_decode_fixed_overhead())


class GeneratedWorkload:
    """Requests from a named workload generator or a workload-spec file."""

    name: ClassVar[str] = "generate"

    def build(self, config: RunConfig, registry) -> RunWorkload:
        generators = {entry.name: entry.cls() for entry in registry.entries("workload")}
        w = config.workload
        try:
            cli = build_cli_workload(workload_options(config), w.generator, w.spec,
                                     config.horizon, generators)
        except WorkloadError as exc:
            raise ConfigurationError(str(exc)) from None
        wl = cli.workload
        return RunWorkload(wl.requests, wl.sessions, wl.follow_ups, wl.seed, "generated",
                           cli.horizon)

    write_trace = staticmethod(_write_trace)


class TraceWorkload:
    """Requests replayed from a TraceV2 header and CSV (token ids drawn from the seed)."""

    name: ClassVar[str] = "trace"

    def build(self, config: RunConfig, registry) -> RunWorkload:
        trace = config.workload.trace
        try:
            loaded = load_trace(trace.header, trace.data)
            requests = replay_requests(loaded, config.engine_seed)
        except TraceError as exc:
            raise ConfigurationError(str(exc)) from None
        return RunWorkload(requests, None, [], None, "replayed", None)

    write_trace = staticmethod(_write_trace)


BUILTIN_SOURCES: tuple[type, ...] = (GeneratedWorkload, TraceWorkload)
