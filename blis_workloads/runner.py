"""The workload side of ``blis run`` and ``blis replay``: flags in, requests out, files written.

The CLI in ``blis_core`` calls these functions; workload generators themselves are looked up
in the plugin registry, so a third-party generator is selected with ``--workload NAME`` exactly
like a built-in one.
"""

from __future__ import annotations

import attrs

from blis_core.cli import fail, write_atomically
from blis_core.metrics import go_json
from blis_core.plugins import get_registry
from blis_workloads.cli_synthesis import WorkloadOptions, build_cli_workload
from blis_workloads.spec import WorkloadError
from blis_workloads.tracev2 import TraceError, export_run_trace, load_trace, replay_requests

_WORKLOAD_FLAGS = ("rate", "num_requests", "seed", "prefix_tokens", "prompt_tokens",
                   "prompt_tokens_stdev", "prompt_tokens_min", "prompt_tokens_max",
                   "output_tokens", "output_tokens_stdev", "output_tokens_min",
                   "output_tokens_max", "concurrency", "think_time_ms")


@attrs.define
class RunWorkload:
    """The requests of a run plus what writing its trace needs afterwards."""

    requests: list
    sessions: object = None
    follow_ups: list = attrs.field(factory=list)
    seed: int | None = None
    mode: str = "generated"
    horizon: int | None = None


def build_run_workload(p: dict, given: dict) -> RunWorkload:
    """``blis run``: the ``--workload``/``--workload-spec`` flags to generated requests."""
    options = WorkloadOptions(
        **{name: p[name] for name in _WORKLOAD_FLAGS},
        explicit=frozenset(name.replace("_", "-") for name, was_given in given.items()
                           if was_given))
    generators = {entry.name: entry.cls() for entry in get_registry().entries("workload")}
    try:
        cli = build_cli_workload(options, p["workload"], p["workload_spec"] or None,
                                 p["horizon"] if given.get("horizon") else None, generators)
    except WorkloadError as exc:
        fail(str(exc))
    wl = cli.workload
    return RunWorkload(wl.requests, wl.sessions, wl.follow_ups, wl.seed, "generated", cli.horizon)


def build_replay_workload(p: dict) -> RunWorkload:
    """``blis replay``: a TraceV2 header + CSV to requests (token ids drawn from ``--seed``)."""
    try:
        trace = load_trace(p["trace_header"], p["trace_data"])
        requests = replay_requests(trace, p["seed"])
    except TraceError as exc:
        fail(str(exc))
    return RunWorkload(requests, None, [], None, "replayed", None)


def write_run_trace(prefix: str, workload: RunWorkload, config) -> None:
    """``--trace-output PREFIX``: the run's requests, with their simulated timings."""
    export_run_trace(prefix, workload.requests, workload.follow_ups, mode=workload.mode,
                     workload_seed=workload.seed if workload.mode == "generated" else None,
                     post_decode_overhead=config.latency.post_decode_fixed_overhead())


def write_replay_results(path: str, result) -> None:
    """``--results-path``: one record per completed request, by numeric request id."""
    rows = []
    for req in result.requests:
        if req.state != "completed":
            continue
        rows.append({
            "request_id": int(req.id.rsplit("_", 1)[-1]),
            "ttft_us": req.first_token_time,
            "e2e_us": req.e2e,
            "input_tokens": req.num_input,
            "output_tokens": req.num_output,
        })
    rows.sort(key=lambda row: row["request_id"])
    write_atomically(path, go_json(rows))
