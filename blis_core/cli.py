"""The ``blis`` command line: ``run``, ``replay``, ``plugins list``, ``policies validate``, and
the commands plugins contribute (``workload ...`` from blis_workloads).

A thin layer: flags become a :class:`~blis_core.runconfig.RunConfig` (``blis_core.flags``),
``RunConfig.prepare`` checks and builds the run, and this module prints and writes files. Bad
input ends with one line on stderr naming the flag or field, and exit code 2.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading

import click

from blis_core.evaluation import evaluate_result
from blis_core.files import write_atomically
from blis_core.flags import replay_options, run_config_from_context, run_options
from blis_core.metrics import go_json
from blis_core.plugins import KINDS, PluginError, get_registry
from blis_core.runner import PreparedRun
from blis_core.runconfig import ConfigurationError

log = logging.getLogger("blis")

LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
              "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def fail(message: str) -> None:
    raise ConfigurationError(message)


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


# -- commands -----------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main_group() -> None:
    """blis: a discrete-event simulator of LLM inference serving."""


@main_group.command("run")
@run_options
@click.pass_context
def run_command(ctx: click.Context, **p) -> None:
    """Simulate a generated workload (or the run a --config file describes)."""
    run = _prepare(ctx, p)
    if run is None:
        return
    result = _execute(run, p["output_format"], metrics_path=p["metrics_path"])
    _write_trace(run, p["trace_output"])
    _write_decisions(result, p["decision_trace"])
    _write_timeseries(run, result)


@main_group.command("replay")
@replay_options
@click.pass_context
def replay_command(ctx: click.Context, **p) -> None:
    """Replay a recorded TraceV2 workload."""
    run = _prepare(ctx, p, replay=True)
    if run is None:
        return
    result = _execute(run, p["output_format"], metrics_path="")
    if p["results_path"]:
        with _output_errors("--results-path", p["results_path"]):
            write_atomically(p["results_path"], go_json(_replay_results(result)))
    _write_trace(run, p["trace_output"])
    _write_decisions(result, p["decision_trace"])
    _write_timeseries(run, result)


def _prepare(ctx: click.Context, p: dict, replay: bool = False) -> PreparedRun | None:
    """The checked run of a command line; None when it only asked for ``--dump-config``."""
    _setup_logging(p["log_level"])
    config = run_config_from_context(ctx)
    if replay:
        trace = config.workload.trace
        for flag, value in (("--trace-header", trace.header if trace else ""),
                            ("--trace-data", trace.data if trace else "")):
            if not value:
                fail(f"Missing option '{flag}'.")
    if p["dump_config"]:
        click.echo(config.to_yaml(), nl=False)
        return None
    if config.output.timeseries:
        _check_writable("--timeseries", config.output.timeseries)
    if p["decision_trace"]:
        _check_writable("--decision-trace", p["decision_trace"])
        if (config.decision_trace.level or "none") == "none":
            # Writing the trace asks for it to be recorded; the stdout report is unchanged.
            config = config.replace(**{"decision_trace.level": "decisions"})
    return config.prepare()


def _check_writable(flag: str, path: str) -> None:
    """Refuse an output path that cannot be written before the run, not after it."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        fail(f"{flag}: cannot write {path}: is a directory")
    if not os.path.isdir(folder):
        fail(f"{flag}: cannot write {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK):
        fail(f"{flag}: cannot write {path}: permission denied")


def _write_decisions(result, path: str) -> None:
    if path:
        from blis_core.decisions import to_jsonl

        with _output_errors("--decision-trace", path):
            write_atomically(path, to_jsonl(result.decisions))


def _write_timeseries(run: PreparedRun, result) -> None:
    path = run.config.output.timeseries
    if path and result.timeseries is not None:
        with _output_errors("--timeseries", path):
            write_atomically(path, result.timeseries.render(path))
        if result.timeseries.truncated:
            log.warning("--timeseries: stopped after %d samples; give a larger "
                        "--timeseries-interval", len(result.timeseries.rows))


def _write_trace(run: PreparedRun, prefix: str) -> None:
    if prefix:
        with _output_errors("--trace-output", prefix):
            run.source.write_trace(prefix, run.workload, run.simulation)


def _replay_results(result) -> list:
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
    return rows


@contextlib.contextmanager
def _output_errors(flag: str, path: str):
    """An output file that cannot be written is bad input of ``flag``: name the flag and the
    path the user gave (not the temporary file the atomic write failed on)."""
    try:
        yield
    except OSError as exc:
        fail(f"{flag}: cannot write {path}: {exc.strerror or exc}")


def _execute(run: PreparedRun, output_format: str, metrics_path: str):
    from blis_core.progress import wanted
    from blis_core.report import render
    from blis_core.runner import run_progress
    from blis_core.simulation import simulate

    progress = None
    setting = run.config.output.progress if run.config is not None else None
    if wanted(setting):
        progress = run_progress(run.simulation, run.workload.requests, always=setting is True)
    result = simulate(run.simulation, run.workload.requests, run.workload.sessions,
                      progress=progress)
    evaluation = evaluate_result(result, run.fitness_weights)
    sys.stdout.write(render(evaluation, output_format, sys.stdout.isatty()))
    if metrics_path:
        with _output_errors("--metrics-path", metrics_path):
            write_atomically(metrics_path, go_json(result.summary.output(with_requests=True)))
        log.info("Metrics written to: %s", metrics_path)
    return result


@main_group.group("plugins")
def plugins_group() -> None:
    """Inspect installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--kind", default="", help="Only this kind (admission, routing, priority, scheduler, disaggregation, saturation, dispatch, workload, arrival, length, source, command).")
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


_BUILTIN_COMMANDS = frozenset(main_group.commands)


def _add_plugin_commands() -> None:
    """Commands contributed through the ``blis_commands`` hook (``blis workload``, ...)."""
    for entry in get_registry().entries("command"):
        if entry.name in _BUILTIN_COMMANDS:
            raise PluginError(f"command plugin {entry.name!r} from {entry.distribution} "
                              "would replace the built-in blis command of that name")
        if entry.name not in main_group.commands:
            main_group.add_command(entry.cls.command(), entry.name)


def main(argv=None) -> None:
    """Console entry point: every failure becomes one line on stderr and exit code 2."""
    try:
        _add_plugin_commands()
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
    except PluginError as exc:
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


def console_main() -> None:
    """The ``blis`` executable and ``python -m blis_core.cli``: :func:`main`, then a quick exit.

    By the time ``main`` returns every result file is written and closed (atomically), so all
    that is left of a long run is the interpreter freeing its heap object by object: about
    0.1 s per 10k requests, which the user only waits for. After the exit handlers have run and
    both streams are flushed the process ends without that teardown, unless other threads are
    still running or a profiler or tracer wants to write its results at exit. In-process
    callers (tests, embedding programs) call ``main`` and keep the ordinary exit.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise   # sys.exit("message"): the ordinary exit prints it
        code = exc.code or 0
    if threading.active_count() > 1 or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)   # a closed pipe: let the ordinary exit report it as Python does
    os._exit(code)


def _die(message: str) -> None:
    # Exactly one line, whatever the exception text looked like.
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    sys.stderr.write(f"blis: error: {message}\n")
    sys.exit(2)


if __name__ == "__main__":
    console_main()
