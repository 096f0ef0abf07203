"""Workload generation for blis: upstream BLIS's request streams, reproduced exactly.

Entry points:
- ``build_cli_workload(WorkloadOptions(...), workload, spec_path, horizon)``: the whole
  ``blis run`` workload path (flags or ``--workload-spec`` → spec → ``Workload``);
- ``load_workload_spec`` / ``generate_workload``: a spec file to initial requests plus the
  ``SessionManager`` whose ``on_complete(req, tick)`` creates closed-loop follow-ups;
- ``generate_legacy_requests``: the blackbox golden test's request sequence;
- ``export_run_trace`` / ``load_trace`` + ``replay_requests``: TraceV2 files.
"""

from blis_workloads.cli_synthesis import (BUILTIN_GENERATORS, CliWorkload, WorkloadOptions,
                                          build_cli_workload, concurrency_spec,
                                          distribution_spec, preset_spec)
from blis_workloads.generate import (MAX_HORIZON, Workload, generate_requests,
                                     generate_workload)
from blis_workloads.legacy import LegacyWorkload, generate_legacy_requests
from blis_workloads.presets import PRESETS, PresetLengths, presets_from_defaults
from blis_workloads.sessions import SessionBlueprint, SessionManager
from blis_workloads.spec import (WorkloadError, WorkloadSpec, load_workload_spec,
                                 parse_workload_spec)
from blis_workloads.tracev2 import (TraceError, TraceHeader, TraceRecord, TraceV2,
                                    export_run_trace, load_trace, records_from_requests,
                                    replay_requests, trace_requests, write_trace)

__all__ = [
    "BUILTIN_GENERATORS",
    "MAX_HORIZON",
    "PRESETS",
    "CliWorkload",
    "LegacyWorkload",
    "PresetLengths",
    "SessionBlueprint",
    "SessionManager",
    "TraceError",
    "TraceHeader",
    "TraceRecord",
    "TraceV2",
    "Workload",
    "WorkloadError",
    "WorkloadOptions",
    "WorkloadSpec",
    "build_cli_workload",
    "concurrency_spec",
    "distribution_spec",
    "export_run_trace",
    "generate_legacy_requests",
    "generate_requests",
    "generate_workload",
    "load_trace",
    "load_workload_spec",
    "parse_workload_spec",
    "preset_spec",
    "presets_from_defaults",
    "records_from_requests",
    "replay_requests",
    "trace_requests",
    "write_trace",
]
