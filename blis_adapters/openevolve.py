"""An OpenEvolve evaluator for evolving blis policies.

OpenEvolve (``pip install "blis[openevolve]"``) evolves a Python program with an LLM and asks an
evaluation file to score every candidate. This module is that evaluator for blis: a candidate
is a Python file defining a routing policy class (and optionally a scheduler, priority or
admission class); :func:`evaluate` registers its classes in a blis plugin registry, runs one
configured blis workload under them with :func:`blis_core.evaluate`, and returns the fitness
score as OpenEvolve's ``combined_score``, with every fitness component and anomaly counter
beside it.

Candidates are LLM-written code, so each evaluation runs in a fresh process with a wall-time
and a memory limit. A candidate that does not load, raises, hangs, crashes or allocates too
much scores 0, with the error (and a traceback tail) in the artifacts OpenEvolve shows the LLM
next; :func:`evaluate` itself never raises. The isolation protects the run from accidents, not
from malice: a candidate can still read files, use the network or tamper with its own result.

Two stages for OpenEvolve's cascade evaluation: :func:`evaluate_stage1` scores a short run
(``stage1_num_requests`` requests) so that only candidates whose score reaches
``evaluator.cascade_thresholds[0]`` get the full run (:func:`evaluate_stage2`, the same run as
:func:`evaluate`).

Settings come from the ``blis:`` section of the YAML file named by ``BLIS_OE_CONFIG`` (the
OpenEvolve config itself can carry it; OpenEvolve ignores the section)::

    blis:
      run_args: >-
        --model meta-llama/llama-3.1-8b-instruct --latency-model blackbox
        --num-instances 4 --rate 40 --num-requests 500
      fitness_weights: "throughput:0.5,p99_ttft:0.5"
      stage1_num_requests: 50
      time_limit_s: 60
      memory_limit_mb: 1024
      isolation: fork-server   # or "subprocess": a new interpreter per evaluation

Hand OpenEvolve :data:`EVALUATOR_FILE`, not this file: OpenEvolve puts its evaluation file's
folder first on ``sys.path``, and this file's name would then shadow the ``openevolve``
package in every process started afterwards with ``spawn``.
"""

from __future__ import annotations

import atexit
import gc
import json
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import attrs
import click
import yaml

from blis_core import hookimpl

CONFIG_ENV = "BLIS_OE_CONFIG"
DEFAULT_RUN_ARGS = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox "
                    "--num-instances 4 --rate 40 --num-requests 500")
DEFAULT_FITNESS_WEIGHTS = "throughput:0.5,p99_ttft:0.5"
ISOLATION_MODES = ("fork-server", "subprocess")

_EXAMPLES = Path(__file__).resolve().with_name("examples")
INITIAL_PROGRAM = _EXAMPLES / "initial_program.py"
EVALUATOR_FILE = _EXAMPLES / "evaluator.py"
EXAMPLE_CONFIG = _EXAMPLES / "oe.yaml"

# The name every candidate class is registered under, whatever its own ``name`` says: a
# candidate that calls itself "round-robin" must not collide with the built-in one.
CANDIDATE_NAME = "openevolve-candidate"
CANDIDATE_DISTRIBUTION = "openevolve-candidate"

# The method that makes a candidate class a policy of each kind (blis_core.protocols).
POLICY_METHODS = {"admission": "admit", "routing": "route", "priority": "compute",
                  "scheduler": "order"}

ANOMALY_METRICS = ("priority_inversions", "hol_blocking_events", "rejected_requests",
                   "routing_rejections", "dropped_unservable", "length_capped_requests",
                   "timed_out_requests", "preemptions")

_TRACEBACK_LINES = 25
_TAIL_CHARS = 4000
# How long the parent waits beyond the time limit for the fork server to report a child it
# killed; only a wedged fork server ever uses it up.
_SERVER_GRACE_S = 30.0


class SettingsError(ValueError):
    """A bad ``blis:`` settings section or run configuration; the message is one line."""


# -- settings -------------------------------------------------------------------------------------
@attrs.frozen
class Settings:
    """What every evaluation of one OpenEvolve run shares: the run, the score, the limits."""

    run_args: str
    fitness_weights: Mapping[str, float]
    stage1_num_requests: int
    time_limit_s: float
    memory_limit_mb: int | None
    isolation: str
    full_config_json: str = attrs.field(repr=False)
    stage1_config_json: str = attrs.field(repr=False)

    def config_json(self, stage: str) -> str:
        return self.stage1_config_json if stage == "stage1" else self.full_config_json


_SETTINGS_KEYS = ("run_args", "run_config", "fitness_weights", "stage1_num_requests", "time_limit_s",
                  "memory_limit_mb", "isolation")
_settings_cache: dict = {}
_settings_lock = threading.Lock()


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """The settings in the ``blis:`` section of ``path`` (default: ``$BLIS_OE_CONFIG``; the
    built-in defaults when neither is given). The run is checked with
    :meth:`blis_core.RunConfig.from_args` at once; every problem is a :class:`SettingsError`.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        text, source = None, "defaults"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{source}: cannot read blis settings: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
    key = (source, text)
    with _settings_lock:
        if key not in _settings_cache:
            _settings_cache.clear()  # one run's settings at a time; tests change them often
            _settings_cache[key] = _parse_settings(text, source)
        return _settings_cache[key]


def _parse_settings(text: str | None, source: str) -> Settings:
    section: dict = {}
    if text is not None:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())
            raise SettingsError(f"{source}: not YAML: {problem}") from None
        if not isinstance(data, dict) or "blis" not in data:
            raise SettingsError(f"{source}: no 'blis:' section (the evaluator's settings)")
        section = data["blis"] or {}
        if not isinstance(section, dict):
            raise SettingsError(f"{source}: blis: expected a mapping")
        unknown = sorted(set(map(str, section)) - set(_SETTINGS_KEYS))
        if unknown:
            raise SettingsError(f"{source}: blis.{unknown[0]}: unknown key "
                                f"(known: {', '.join(_SETTINGS_KEYS)})")

    def number(key, default, *, integer=False, minimum=0.0, allow_none=False):
        value = section.get(key, default)
        if value is None and allow_none:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and integer:
            ok = float(value).is_integer()
        if not ok or not math.isfinite(value) or value <= minimum:
            kind = "a whole number" if integer else "a number"
            raise SettingsError(f"{source}: blis.{key}: expected {kind} > {minimum:g}, "
                                f"got {value!r}")
        return int(value) if integer else float(value)

    if "run_args" in section and "run_config" in section:
        raise SettingsError(f"{source}: blis.run_config: give the run as run_config or as "
                            "run_args, not both")
    run_args = section.get("run_args", DEFAULT_RUN_ARGS)
    if isinstance(run_args, list) and all(isinstance(a, str) for a in run_args):
        run_args = shlex.join(run_args)
    if not isinstance(run_args, str):
        raise SettingsError(f"{source}: blis.run_args: expected the blis run arguments as a "
                            "string or a list of strings")
    stage1_num_requests = number("stage1_num_requests", 50, integer=True)
    time_limit_s = number("time_limit_s", 60.0)
    memory_limit_mb = number("memory_limit_mb", 1024, integer=True, allow_none=True)
    isolation = section.get("isolation", "fork-server" if hasattr(os, "fork") else "subprocess")
    if isolation not in ISOLATION_MODES:
        raise SettingsError(f"{source}: blis.isolation: expected one of "
                            f"{', '.join(ISOLATION_MODES)}, got {isolation!r}")
    if isolation == "fork-server" and not hasattr(os, "fork"):
        raise SettingsError(f"{source}: blis.isolation: fork-server needs os.fork; "
                            "use subprocess")

    import blis_core
    from blis_core.evaluation import parse_fitness_weights

    if "run_config" in section:
        config = _run_config_of(section["run_config"], source)
        run_key = "run_config"
        run_args = ""
    else:
        run_key = "run_args"
        try:
            config = blis_core.RunConfig.from_args(run_args)
        except ValueError as exc:  # ConfigurationError, or a flag parser's complaint
            raise SettingsError(f"{source}: blis.run_args: {exc}") from None
        except SystemExit:  # a flag parser that exits instead of raising
            raise SettingsError(f"{source}: blis.run_args: not valid blis run arguments: "
                                f"{run_args!r}") from None
    if config.policies.routing.policy:
        raise SettingsError(f"{source}: blis.{run_key}: its routing policy would override the "
                            "evolved routing policy; leave it out")

    weights = section.get("fitness_weights")
    if isinstance(weights, dict):
        weights = ",".join(f"{k}:{v}" for k, v in weights.items())
    if weights is None:
        weights = dict(config.fitness_weights) or DEFAULT_FITNESS_WEIGHTS
    if isinstance(weights, str):
        try:
            weights = parse_fitness_weights(weights)
        except ValueError as exc:
            raise SettingsError(f"{source}: blis.fitness_weights: {exc}") from None
    if not isinstance(weights, dict) or not weights:
        raise SettingsError(f"{source}: blis.fitness_weights: expected \"key:weight,...\" "
                            "or a mapping of fitness keys to weights")

    stage1 = config.replace(**{"workload.num_requests": stage1_num_requests})
    return Settings(run_args=run_args, fitness_weights=weights,
                    stage1_num_requests=stage1_num_requests, time_limit_s=time_limit_s,
                    memory_limit_mb=memory_limit_mb, isolation=isolation,
                    full_config_json=config.to_json(), stage1_config_json=stage1.to_json())


def _run_config_of(value, source: str):
    """The run description that ``blis.run_config`` names (a file, relative to the settings
    file) or holds inline (a mapping in the run description's own schema)."""
    from blis_core.runconfig import ConfigurationError, RunConfig

    folder = Path(source).resolve().parent if source != "defaults" else Path.cwd()
    try:
        if isinstance(value, str):
            path = Path(value)
            return RunConfig.load(path if path.is_absolute() else folder / path)
        if isinstance(value, dict):
            return RunConfig.from_dict(value, f"{source}: blis.run_config").relative_to(folder)
    except ConfigurationError as exc:
        raise SettingsError(f"{source}: blis.run_config: {exc}") from None
    raise SettingsError(f"{source}: blis.run_config: expected a run description file name or "
                        "mapping")


# -- what OpenEvolve calls ------------------------------------------------------------------------
def evaluate(program_path):
    """Score ``program_path`` on the full run: an OpenEvolve ``EvaluationResult`` (a plain
    metrics dict when OpenEvolve is not installed). Never raises."""
    return _evaluate(program_path, "full")


def evaluate_stage1(program_path):
    """Cascade stage 1: the same score on a short run of ``stage1_num_requests`` requests."""
    return _evaluate(program_path, "stage1")


def evaluate_stage2(program_path):
    """Cascade stage 2: the full run, for candidates whose stage-1 score passed the threshold."""
    return _evaluate(program_path, "full")


def evaluate_outcome(program_path, stage: str = "full") -> dict:
    """``{"metrics": {...}, "artifacts": {...}}`` of one evaluation, as plain data."""
    try:
        settings = load_settings()
        return _run_isolated(str(Path(program_path).resolve()), stage, settings)
    except Exception as exc:  # a broken setup here must cost one candidate, not the whole run
        return _failure(stage, f"evaluator: {type(exc).__name__}: {exc}",
                        traceback_text=_traceback_tail(exc))


def _evaluate(program_path, stage: str):
    outcome = evaluate_outcome(program_path, stage)
    try:
        from openevolve.evaluation_result import EvaluationResult
    except ImportError:
        return outcome["metrics"]
    return EvaluationResult(metrics=outcome["metrics"], artifacts=outcome["artifacts"])


def _failure(stage: str, error: str, *, traceback_text: str = "", output: str = "") -> dict:
    artifacts = {"stage": stage, "error": error}
    if traceback_text:
        artifacts["traceback"] = traceback_text
    if output:
        artifacts["output_tail"] = output
    return {"metrics": {"combined_score": 0.0}, "artifacts": artifacts}


def _traceback_tail(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return "\n".join(lines[-_TRACEBACK_LINES:])[-_TAIL_CHARS:]


def _read_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_CHARS))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


# -- one isolated evaluation (parent side) --------------------------------------------------------
def _run_isolated(program_path: str, stage: str, settings: Settings) -> dict:
    with tempfile.TemporaryDirectory(prefix="blis-oe-") as scratch:
        job = {"program_path": program_path, "stage": stage,
               "config_json": settings.config_json(stage),
               "fitness_weights": dict(settings.fitness_weights),
               "memory_limit_mb": settings.memory_limit_mb,
               "cpu_limit_s": settings.time_limit_s + 5,
               "result_path": os.path.join(scratch, "result.json"),
               "log_path": os.path.join(scratch, "output.log")}
        if settings.isolation == "fork-server":
            status = _fork_server().run(job, settings.time_limit_s)
        else:
            status = _run_in_subprocess(job, settings.time_limit_s, scratch)
        output = _read_tail(job["log_path"])
        if status.get("status") == "timeout":
            return _failure(stage, f"timed out after {settings.time_limit_s:g} s (the "
                            "evaluation was killed; blis.time_limit_s)", output=output)
        try:
            with open(job["result_path"], encoding="utf-8") as f:
                outcome = json.load(f)
            metrics = outcome["metrics"]
            if not isinstance(metrics.get("combined_score"), (int, float)):
                raise ValueError("no combined_score")
            return outcome
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        if status.get("status") == "server-failed":
            return _failure(stage, f"evaluator: {status.get('error')}", output=output)
        code = status.get("returncode")
        if isinstance(code, int) and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        hint = ""
        if settings.memory_limit_mb and ("MemoryError" in output or code == -signal.SIGKILL):
            hint = f" (memory limit {settings.memory_limit_mb} MB; blis.memory_limit_mb)"
        return _failure(stage, f"the evaluation process {how} before reporting a "
                        f"result{hint}", output=output)


def _child_env() -> dict:
    env = dict(os.environ)
    # One BLAS thread: blis does not need more, and idle BLAS threads would count against
    # the memory limit (address space) of every evaluation.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    # The child must import this very copy of blis_adapters, whatever sys.path the parent
    # was given (pytest's rootdir insertion, an evaluation folder OpenEvolve prepended).
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != here])
    return env


def _run_in_subprocess(job: dict, time_limit_s: float, scratch: str) -> dict:
    job_path = os.path.join(scratch, "job.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(job, f)
    with open(job["log_path"], "wb") as log:
        # A session of its own, so that a timeout kills whatever the candidate started too.
        proc = subprocess.Popen([sys.executable, "-m", "blis_adapters.openevolve", "--worker",
                                 job_path], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=_child_env(),
                                start_new_session=True)
    if not _exits_within(proc, time_limit_s):
        _kill_group(proc.pid)
        proc.wait()
        return {"status": "timeout"}
    code = proc.wait()
    _kill_group(proc.pid)  # strays the candidate left behind, if any
    return {"status": "exited", "returncode": code}


def _exits_within(proc: subprocess.Popen, seconds: float) -> bool:
    # Popen.wait(timeout) polls with sleeps of up to 50 ms, a fifth of a 500-request run;
    # a pidfd wakes the parent the moment the child exits.
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        select.select([pidfd], [], [], seconds)
    finally:
        os.close(pidfd)
    return proc.poll() is not None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _ForkServer:
    """A blis process with everything imported that forks one fresh child per evaluation.

    A new interpreter per evaluation spends longer importing blis than a 500-request run takes
    to simulate; a fork of a process that has imported it all costs milliseconds, and each
    candidate still gets a process of its own that no other candidate has run in. The server
    itself never runs candidate code. Evaluations from several threads are served one at a
    time (OpenEvolve runs candidates in parallel in separate processes, each with its own
    server).
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._errors = None  # the server's stderr: why it died, if it does
        self._lock = threading.Lock()

    def run(self, job: dict, time_limit_s: float) -> dict:
        request = (json.dumps({"job": job, "time_limit_s": time_limit_s}) + "\n").encode()
        with self._lock:
            for _attempt in range(2):  # a server found dead is restarted once
                problem = self._ensure_started()
                if problem:
                    return {"status": "server-failed", "error": problem}
                try:
                    _write_all(self._proc.stdin.fileno(), request)
                except OSError:  # BrokenPipeError: it died since the last evaluation
                    self._stop()
                    continue
                reply = self._read_reply(self._proc, time_limit_s + _SERVER_GRACE_S)
                if reply is None:
                    self._stop()
                    return {"status": "server-failed",
                            "error": "the blis fork server stopped answering; restarted"}
                return reply
            return {"status": "server-failed", "error": "the blis fork server keeps dying"}

    def start(self) -> str | None:
        """Start the server unless it runs; the reason it cannot start, or None."""
        with self._lock:
            return self._ensure_started()

    def _ensure_started(self) -> str | None:
        if self._proc is not None and self._proc.poll() is None:
            return None
        self._stop()
        self._errors = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "blis_adapters.openevolve", "--fork-server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env=_child_env(), bufsize=0)
        if self._read_reply(self._proc, _SERVER_GRACE_S) == {"ready": True}:
            return None
        self._errors.seek(0)
        tail = self._errors.read().decode("utf-8", "replace").strip()[-_TAIL_CHARS:]
        self._stop()
        return f"the blis fork server did not start: {tail or 'no output'}"

    @staticmethod
    def _read_reply(proc: subprocess.Popen, timeout_s: float) -> dict | None:
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            data += chunk
        try:
            return json.loads(data)
        except ValueError:
            return None

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        errors, self._errors = self._errors, None
        if errors is not None:
            errors.close()
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def abandon(self) -> None:
        """In a forked copy of the owning process: let go of the parent's server untouched."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stdin.close()   # unbuffered pipes: closing our copies writes nothing
            proc.stdout.close()
            # Kept, never collected: collecting it would warn that "its" server still runs.
            _abandoned.append((proc, self._errors))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_server: _ForkServer | None = None
_server_lock = threading.Lock()
_abandoned: list = []


def _fork_server() -> _ForkServer:
    global _server
    with _server_lock:
        if _server is None:
            _server = _ForkServer()
        return _server


def _forget_server_after_fork() -> None:
    # OpenEvolve forks its worker processes from the controller; a worker must start its own
    # server instead of talking to the controller's through inherited pipes.
    global _server, _server_lock
    _server_lock = threading.Lock()
    if _server is not None:
        _server._lock = threading.Lock()
        _server.abandon()
        _server = None


def _stop_server_at_exit() -> None:
    if _server is not None:
        _server._stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_server_after_fork)
atexit.register(_stop_server_at_exit)


# -- the fork server and the worker (child side) --------------------------------------------------
def _serve_forever() -> None:
    """Fork one child per request line on stdin; reply with its fate, one line each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _preload()
    gc.collect()
    gc.disable()
    _write_all(replies, b'{"ready": true}\n')
    server_pid = os.getpid()
    warmed: set = set()
    with os.fdopen(requests, "rb") as lines:
        for line in lines:
            request = json.loads(line)
            job = request["job"]
            if job["config_json"] not in warmed:
                warmed.add(job["config_json"])
                _warm_up(job["config_json"], job["fitness_weights"])
                gc.collect()
            reply = _fork_one(job, request["time_limit_s"], (requests, replies), server_pid)
            _write_all(replies, (json.dumps(reply) + "\n").encode())


# The fork server's manager of the installed plugins, which each child extends with its
# candidate; None in a process that is not a fork server's child.
_installed_plugins = None


def _preload() -> None:
    """Import and warm up what every evaluation uses, once, before any fork."""
    import ctypes  # noqa: F401  (the child's parent-death signal needs it)

    import blis_core
    import blis_core.bundle
    import blis_core.plugins
    import blis_core.runner

    global _installed_plugins
    blis_core.get_registry()  # imports every plugin module
    _installed_plugins = blis_core.plugins.build_manager()
    blis_core.RunConfig.from_json(blis_core.RunConfig().to_json())  # builds cattrs hooks


def _warm_up(config_json: str, weights) -> None:
    """Run a few requests of this configuration under the built-in policies, so that every
    child inherits the catalog, the latency model and the engine's first-call work done."""
    import logging

    import blis_core

    blis_log = logging.getLogger("blis")
    level = blis_log.level
    blis_log.setLevel(logging.ERROR)  # the children log these warnings where they are seen
    try:
        config = blis_core.RunConfig.from_json(config_json)
        config = config.replace(**{"workload.num_requests": 20})
        blis_core.evaluate(config, None, fitness_weights=weights)
    except Exception:  # the children will report whatever is wrong with the configuration
        pass
    finally:
        blis_log.setLevel(level)


def _fork_one(job: dict, time_limit_s: float, server_fds, server_pid: int) -> dict:
    # Frozen objects are never traversed by the child's collector: without this, its full
    # collections walk (and so copy, page by page) the whole inherited heap. The server runs
    # with the collector off, so there is no garbage worth a collection before the freeze.
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            _die_with_parent(server_pid)
            for fd in server_fds:
                os.close(fd)
            log = os.open(job["log_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            gc.enable()
            _run_job(job)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    code = _wait_with_deadline(pid, time_limit_s)
    return {"status": "timeout"} if code is None else {"status": "exited", "returncode": code}


def _die_with_parent(server_pid: int) -> None:
    # If the fork server dies, nobody enforces this child's time limit any more.
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != server_pid:  # it died before the line above took effect
        os._exit(1)


def _wait_with_deadline(pid: int, seconds: float) -> int | None:
    """The child's exit code (negative: the signal), or None after ``seconds`` (killed then)."""
    deadline = time.monotonic() + seconds
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass
    try:
        while True:
            # WNOWAIT leaves the child a zombie, so its id cannot be reused before the group
            # kill below.
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                _kill_group(pid)
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(pid)
                try:
                    os.kill(pid, signal.SIGKILL)  # before its setsid, it has no group yet
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], remaining)
            else:
                time.sleep(min(0.002, remaining))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _worker_main(job_path: str) -> None:
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    _run_job(job)


def _limit_resources(job: dict) -> None:
    import resource

    memory = job.get("memory_limit_mb")
    if memory:
        limit = int(memory) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = math.ceil(job["cpu_limit_s"])
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or hard > cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, hard))  # a backstop for the wall limit
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_job(job: dict) -> None:
    """Score the candidate and write ``{"metrics", "artifacts"}`` to the job's result file."""
    stage = job["stage"]
    try:
        _limit_resources(job)
        outcome = _score_candidate(job["program_path"], job["config_json"],
                                   job["fitness_weights"], stage)
    except MemoryError:
        outcome = _failure(stage, "MemoryError: the candidate exceeded the memory limit of "
                           f"{job.get('memory_limit_mb')} MB (blis.memory_limit_mb)")
    except CandidateError as exc:
        outcome = _failure(stage, str(exc))
    except BaseException as exc:
        outcome = _failure(stage, f"{type(exc).__name__}: {exc}",
                           traceback_text=_traceback_tail(exc))
    text = json.dumps(outcome, allow_nan=False)
    with open(job["result_path"] + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(job["result_path"] + ".tmp", job["result_path"])


class CandidateError(Exception):
    """The candidate program cannot be evaluated as a blis policy; the message says why."""


def load_candidate(program_path: str) -> dict[str, type]:
    """The candidate's policy classes by kind, found by the method each protocol requires;
    only classes defined in the program count (not ones it imports)."""
    import importlib.util

    module_name = "blis_openevolve_candidate"
    spec = importlib.util.spec_from_file_location(module_name, program_path)
    if spec is None or spec.loader is None:
        raise CandidateError(f"cannot load {program_path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up there
    spec.loader.exec_module(module)
    found: dict[str, list[type]] = {kind: [] for kind in POLICY_METHODS}
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module_name:
            for kind, method in POLICY_METHODS.items():
                if callable(getattr(value, method, None)):
                    found[kind].append(value)
    classes = {}
    for kind, candidates in found.items():
        if len(candidates) > 1:
            names = ", ".join(sorted(c.__name__ for c in candidates))
            raise CandidateError(f"the program defines {len(candidates)} {kind} classes "
                                 f"({names}); keep one")
        if candidates:
            classes[kind] = candidates[0]
    if not classes:
        raise CandidateError("the program defines no policy class (a class with a route "
                             "method, or order, compute or admit)")
    return classes


class CandidatePlugin:
    """The candidate's classes, offered to blis through the hooks a policy package implements."""

    def __init__(self, classes: Mapping[str, type]) -> None:
        self.classes = dict(classes)

    def _of(self, kind: str) -> list[type]:
        return [self.classes[kind]] if kind in self.classes else []

    @hookimpl
    def blis_admission_policies(self):
        return self._of("admission")

    @hookimpl
    def blis_routing_policies(self):
        return self._of("routing")

    @hookimpl
    def blis_priority_policies(self):
        return self._of("priority")

    @hookimpl
    def blis_schedulers(self):
        return self._of("scheduler")


def candidate_registry(classes: Mapping[str, type], base=None):
    """A registry of everything installed plus the candidate's classes, each renamed to
    :data:`CANDIDATE_NAME` so that no candidate collides with an installed policy.

    ``base``, a ``build_manager()`` result, saves reading every distribution's entry points
    again; it is extended in place, so it must be a copy no one else uses (the fork server
    hands each child its own by forking).
    """
    from blis_core.plugins import build_manager, collect

    for cls in classes.values():
        cls.name = CANDIDATE_NAME
    plugin = CandidatePlugin(classes)
    if base is None:
        manager, provenance = build_manager(
            extra_plugins=[(plugin, CANDIDATE_DISTRIBUTION, "0")])
    else:
        manager, provenance = base
        manager.register(plugin)
        provenance[plugin] = (CANDIDATE_DISTRIBUTION, "0")
    return collect(manager, provenance)


def candidate_bundle(classes: Mapping[str, type], registry):
    """The PolicyBundle that selects the candidate's classes (and nothing else)."""
    from blis_core.bundle import parse_bundle

    lines = [f"{kind}: {CANDIDATE_NAME}" if kind == "scheduler"
             else f"{kind}:\n  policy: {CANDIDATE_NAME}" for kind in classes]
    return parse_bundle("\n".join(lines) + "\n", "candidate bundle", registry)


def _score_candidate(program_path: str, config_json: str, weights: Mapping[str, float],
                     stage: str) -> dict:
    import blis_core

    classes = load_candidate(program_path)
    registry = candidate_registry(classes, _installed_plugins)
    bundle = candidate_bundle(classes, registry)
    config = blis_core.RunConfig.from_json(config_json)
    result = blis_core.evaluate(config, bundle, fitness_weights=weights, registry=registry)
    used = result.simulation.config.policies
    for kind in classes:
        if getattr(used, kind) != CANDIDATE_NAME:
            raise CandidateError(f"the run used {kind} policy {getattr(used, kind)!r}, not the "
                                 f"candidate's: blis.run_args select one explicitly")
    return outcome_of(result, stage)


def outcome_of(result, stage: str) -> dict:
    """OpenEvolve metrics and artifacts of a :class:`blis_core.EvaluationResult`."""
    m = result.metrics
    if m.completed == 0:
        # blis scores an empty latency distribution as the best latency there is; a policy
        # that serves nothing must not win on it.
        return _failure(stage, f"no request completed ({m.injected} reached an instance, "
                        f"{m.still_queued} still queued); scored 0")
    metrics: dict[str, Any] = {"combined_score": float(result.score)}
    metrics.update({key: float(value) for key, value in result.fitness.components.items()})
    anomalies = result.anomalies
    metrics.update({key: getattr(anomalies, key) for key in ANOMALY_METRICS})
    metrics["completed_requests"] = m.completed
    if stage == "stage1":
        metrics["stage1_score"] = float(result.score)
    summary = (f"{m.completed} of {m.arrived} requests completed; "
               f"{m.requests_per_sec:.2f} req/s, {m.tokens_per_sec:.0f} output tokens/s; "
               f"TTFT p50 {m.ttft_us.p50 / 1000:.1f} ms, p99 {m.ttft_us.p99 / 1000:.1f} ms; "
               f"E2E p99 {m.e2e_us.p99 / 1000:.1f} ms; preemptions {anomalies.preemptions}")
    return {"metrics": metrics, "artifacts": {"stage": stage, "blis_summary": summary}}


# -- the CLI command ------------------------------------------------------------------------------
@click.command("openevolve-evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("program", required=False)
@click.option("--config", "oe_config", metavar="OE_YAML",
              help="Run the OpenEvolve controller with this OpenEvolve config (PROGRAM, if "
                   "given, is the initial program; default: the shipped one).")
@click.option("--stage1", is_flag=True, help="Score the short stage-1 run, not the full run.")
@click.option("--iterations", type=int, default=None,
              help="With --config: OpenEvolve iterations (default: its max_iterations).")
@click.option("--output", "output_dir", default=None,
              help="With --config: the output folder (default: openevolve_output beside "
                   "OE_YAML).")
def openevolve_evaluate_command(program, oe_config, stage1, iterations, output_dir):
    """Score PROGRAM as OpenEvolve would (JSON on stdout), or run OpenEvolve with --config.

    blis settings (the run, fitness weights, limits) come from the blis: section of the
    --config file, else of the file $BLIS_OE_CONFIG names, else the defaults.
    """
    if oe_config is not None:
        if stage1:
            raise click.UsageError("--stage1 scores one PROGRAM; it does not apply to --config")
        _run_controller(program, oe_config, iterations, output_dir)
        return
    if program is None:
        raise click.UsageError("give a PROGRAM to evaluate, or --config OE_YAML to run "
                               "OpenEvolve")
    if iterations is not None or output_dir is not None:
        raise click.UsageError("--iterations and --output need --config")
    if not os.path.isfile(program):
        raise click.UsageError(f"{program}: no such program file")
    try:
        load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    outcome = evaluate_outcome(program, "stage1" if stage1 else "full")
    click.echo(json.dumps(outcome, indent=2, sort_keys=True))


def _run_controller(program, oe_config, iterations, output_dir) -> None:
    try:
        from openevolve import EvolutionFailedError, OpenEvolve
        from openevolve.config import Config
    except ImportError:
        raise click.UsageError("--config needs OpenEvolve: pip install \"blis[openevolve]\"") \
            from None
    if not os.path.isfile(oe_config):
        raise click.UsageError(f"{oe_config}: no such OpenEvolve config file")
    initial = program or str(INITIAL_PROGRAM)
    if not os.path.isfile(initial):
        raise click.UsageError(f"{initial}: no such program file")
    if iterations is not None and iterations < 1:
        raise click.UsageError(f"--iterations must be >= 1, got {iterations}")
    try:
        config = Config.from_yaml(oe_config)
    except Exception as exc:  # YAML, dacite and OpenEvolve's own checks all raise differently
        raise click.UsageError(f"{oe_config}: {' '.join(str(exc).split())}") from None
    if not config.llm.models:
        raise click.UsageError(f"{oe_config}: llm.models is empty: name the model(s) to use")
    try:
        with open(oe_config, encoding="utf-8") as f:
            has_section = "blis" in (yaml.safe_load(f) or {})
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise click.UsageError(f"{oe_config}: {exc}") from None
    if has_section:
        # OpenEvolve's worker processes inherit the environment, so they read it too.
        os.environ[CONFIG_ENV] = str(Path(oe_config).resolve())
    try:
        load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    _warn_if_cascade_blocks(config, initial)
    output_dir = output_dir or str(Path(oe_config).resolve().parent / "openevolve_output")
    import asyncio

    controller = OpenEvolve(initial_program_path=initial, evaluation_file=str(EVALUATOR_FILE),
                            config=config, output_dir=output_dir)
    try:
        best = asyncio.run(controller.run(iterations=iterations))
    except EvolutionFailedError as exc:
        raise click.UsageError(f"OpenEvolve: {' '.join(str(exc).split())}") from None
    best_path = Path(output_dir) / "best" / f"best_program{Path(initial).suffix}"
    report = {"output_dir": output_dir, "best_program": str(best_path),
              "metrics": best.metrics if best is not None else None}
    click.echo(json.dumps(report, indent=2, sort_keys=True))


def _warn_if_cascade_blocks(config, initial: str) -> None:
    """OpenEvolve's default thresholds (0.5, ...) are far above typical blis scores; say so
    before a run in which no candidate would ever reach the full run."""
    evaluator = config.evaluator
    if not evaluator.cascade_evaluation or not evaluator.cascade_thresholds:
        return
    threshold = evaluator.cascade_thresholds[0]
    score = evaluate_outcome(initial, "stage1")["metrics"]["combined_score"]
    if score < threshold:
        click.echo(f"warning: the initial program scores {score:.4g} at stage 1, below "
                   f"evaluator.cascade_thresholds[0] = {threshold:g}: candidates like it never "
                   "reach the full run", err=True)


class OpenEvolveCommand:
    """Score a program as OpenEvolve would, or run OpenEvolve on a blis policy."""

    name = "openevolve-evaluate"

    @staticmethod
    def command():
        return openevolve_evaluate_command


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--fork-server"]:
        _serve_forever()
    elif argv[:1] == ["--worker"] and len(argv) == 2:
        _worker_main(argv[1])
    else:
        sys.exit("usage: python -m blis_adapters.openevolve (--fork-server | --worker JOB)")


if __name__ == "__main__":
    _main(sys.argv[1:])
