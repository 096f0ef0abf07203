"""blis_adapters.openevolve: scoring candidate programs in isolation, and a real OpenEvolve run.

The OpenEvolve run talks to a stub of an OpenAI-compatible server on 127.0.0.1 that answers
every chat completion with a SEARCH/REPLACE diff raising the initial program's
``in_flight_weight`` by 0.5, so evolution is deterministic and needs no network.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import re
import signal
import textwrap
import threading
import time

import pytest

pytest.importorskip("openevolve")

from click.testing import CliRunner  # noqa: E402
from openevolve.evaluation_result import EvaluationResult  # noqa: E402

from blis_adapters import openevolve as oe  # noqa: E402

FULL_REQUESTS = 100
STAGE1_REQUESTS = 20
RUN_ARGS = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox "
            f"--num-instances 4 --rate 40 --num-requests {FULL_REQUESTS}")


def write_settings(folder, **overrides) -> str:
    section = {"run_args": RUN_ARGS, "stage1_num_requests": STAGE1_REQUESTS,
               "time_limit_s": 30, **overrides}
    path = folder / f"blis-{len(list(folder.iterdir()))}.yaml"
    path.write_text(json.dumps({"blis": section}))  # JSON is YAML
    return str(path)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Point the evaluator at a small run; call it with overrides to change the settings."""
    folder = tmp_path / "settings"
    folder.mkdir()

    def use(**overrides):
        monkeypatch.setenv(oe.CONFIG_ENV, write_settings(folder, **overrides))

    use()
    return use


def program(tmp_path, body: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


ROUTER_TEMPLATE = """\
from blis_core import RoutingDecision

class Router:
    name = "broken"

    def route(self, request, state):
{body}
        return RoutingDecision(state.snapshots[0].id, "first")
"""


def router(tmp_path, body: str) -> str:
    """A routing policy whose route() runs ``body`` first."""
    return program(tmp_path, ROUTER_TEMPLATE.format(body=textwrap.indent(body, " " * 8)))


def assert_failed(result, *needles):
    assert isinstance(result, EvaluationResult)
    assert result.metrics == {"combined_score": 0.0}
    error = result.artifacts["error"]
    for needle in needles:
        assert needle in error or needle in result.artifacts.get("traceback", ""), \
            result.artifacts


# -- scoring one program --------------------------------------------------------------------------
@pytest.mark.parametrize("isolation", oe.ISOLATION_MODES)
def test_initial_program_scores_above_zero(settings, isolation):
    settings(isolation=isolation)
    result = oe.evaluate(str(oe.INITIAL_PROGRAM))
    assert isinstance(result, EvaluationResult)
    metrics = result.metrics
    assert metrics["combined_score"] > 0
    assert metrics["completed_requests"] == FULL_REQUESTS
    assert 0 < metrics["throughput"] < 1 and 0 < metrics["p99_ttft"] < 1
    assert metrics["combined_score"] == pytest.approx(
        0.5 * metrics["throughput"] + 0.5 * metrics["p99_ttft"])
    for counter in oe.ANOMALY_METRICS:
        assert isinstance(metrics[counter], int)
    assert "error" not in result.artifacts
    assert f"{FULL_REQUESTS} of {FULL_REQUESTS} requests completed" in \
        result.artifacts["blis_summary"]


def test_score_matches_an_in_process_evaluation(settings):
    import blis_core

    classes = oe.load_candidate(str(oe.INITIAL_PROGRAM))
    registry = oe.candidate_registry(classes)
    direct = blis_core.evaluate(RUN_ARGS, oe.candidate_bundle(classes, registry),
                                fitness_weights=oe.DEFAULT_FITNESS_WEIGHTS, registry=registry)
    assert oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics["combined_score"] == direct.score


def test_stage1_runs_fewer_requests(settings):
    stage1 = oe.evaluate_stage1(str(oe.INITIAL_PROGRAM))
    stage2 = oe.evaluate_stage2(str(oe.INITIAL_PROGRAM))
    assert stage1.metrics["completed_requests"] == STAGE1_REQUESTS
    assert stage1.metrics["stage1_score"] == stage1.metrics["combined_score"] > 0
    assert stage2.metrics["completed_requests"] == FULL_REQUESTS
    assert "stage1_score" not in stage2.metrics
    assert (stage1.artifacts["stage"], stage2.artifacts["stage"]) == ("stage1", "full")


def test_syntax_error_scores_zero(settings, tmp_path):
    path = program(tmp_path, "class Router:\n    def route(self, request, state\n")
    assert_failed(oe.evaluate(path), "SyntaxError", "candidate.py")


def test_router_that_raises_scores_zero(settings, tmp_path):
    result = oe.evaluate(router(tmp_path, 'raise RuntimeError("no instance today")'))
    assert_failed(result, "RuntimeError: no instance today", "in route")


def test_program_without_a_policy_scores_zero(settings, tmp_path):
    assert_failed(oe.evaluate(program(tmp_path, "X = 1\n")), "no policy class")


def test_missing_program_scores_zero(settings, tmp_path):
    assert_failed(oe.evaluate(str(tmp_path / "nowhere.py")), "nowhere.py")


@pytest.mark.parametrize("isolation", oe.ISOLATION_MODES)
def test_hung_program_is_killed_and_the_evaluator_goes_on(settings, tmp_path, isolation):
    settings(isolation=isolation, time_limit_s=1.5)
    start = time.monotonic()
    assert_failed(oe.evaluate(router(tmp_path, "while True:\n    pass")), "timed out after 1.5 s")
    assert time.monotonic() - start < 10
    # The next candidate gets the default limit: on a loaded machine a fresh interpreter and
    # a full run can take longer than the 1.5 s that only had to catch the hung one.
    settings(isolation=isolation)
    assert oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics["combined_score"] > 0


def test_hung_import_is_killed(settings, tmp_path):
    settings(time_limit_s=1.5)
    assert_failed(oe.evaluate(program(tmp_path, "import time\ntime.sleep(3600)\n")),
                  "timed out")


def test_memory_hog_scores_zero(settings, tmp_path):
    settings(memory_limit_mb=512)
    hog = router(tmp_path, "hoard = []\nwhile True:\n    hoard.append(bytearray(16 * 2**20))")
    assert_failed(oe.evaluate(hog), "MemoryError", "512 MB")
    assert oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics["combined_score"] > 0


def test_crashing_process_scores_zero(settings, tmp_path):
    crash = router(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert_failed(oe.evaluate(crash), "killed by SIGSEGV")


def test_policy_that_serves_nothing_scores_zero(settings, tmp_path):
    # An empty latency distribution would otherwise score as the best latency there is.
    starving = program(tmp_path, """
        from collections import deque

        class Starve:
            name = "starve"

            def order(self, queue):
                return deque()
    """)
    result = oe.evaluate(starving)
    assert result.metrics["combined_score"] == 0.0


def test_bad_settings_score_zero_instead_of_raising(settings, tmp_path):
    settings(time_limit_s=-1)
    assert_failed(oe.evaluate(str(oe.INITIAL_PROGRAM)), "blis.time_limit_s")


@pytest.mark.parametrize("overrides, message", [
    ({"bogus": 1}, "blis.bogus: unknown key"),
    ({"run_args": "--model meta-llama/llama-3.1-8b-instruct --num-instances 0"},
     "--num-instances must be >= 1"),
    ({"run_args": RUN_ARGS + " --routing-policy round-robin"},
     "blis.run_args: its routing policy would override the evolved"),
    ({"run_config": "missing.yaml"}, "blis.run_config: "),
    ({"run_config": {"cluster": {"num_instances": "four"}}}, "blis.run_config: "),
    ({"run_config": {}, "run_args": RUN_ARGS}, "not both"),
    ({"fitness_weights": "speed:1"}, "unknown fitness key 'speed'"),
    ({"isolation": "none"}, "blis.isolation"),
])
def test_settings_are_checked(tmp_path, overrides, message):
    with pytest.raises(oe.SettingsError) as caught:
        oe.load_settings(write_settings(tmp_path, **overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_run_can_be_a_run_description(settings, tmp_path, monkeypatch):
    import blis_core

    by_args = oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics
    (tmp_path / "run.yaml").write_text(blis_core.RunConfig.from_args(RUN_ARGS).to_yaml())
    folder = tmp_path / "oe"
    folder.mkdir()
    path = folder / "settings.yaml"
    path.write_text(json.dumps({"blis": {"run_config": "../run.yaml",  # beside the settings
                                         "stage1_num_requests": STAGE1_REQUESTS,
                                         "time_limit_s": 30}}))
    monkeypatch.setenv(oe.CONFIG_ENV, str(path))
    assert oe.load_settings().full_config_json == oe.load_settings(
        write_settings(folder)).full_config_json
    assert oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics == by_args


# -- the CLI command ------------------------------------------------------------------------------
def test_cli_prints_metrics_as_json(settings):
    result = CliRunner().invoke(oe.openevolve_evaluate_command, [str(oe.INITIAL_PROGRAM)])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["metrics"]["combined_score"] > 0
    assert outcome["metrics"]["completed_requests"] == FULL_REQUESTS
    assert outcome["artifacts"]["stage"] == "full"


def test_cli_stage1(settings):
    result = CliRunner().invoke(oe.openevolve_evaluate_command,
                                ["--stage1", str(oe.INITIAL_PROGRAM)])
    assert json.loads(result.stdout)["metrics"]["completed_requests"] == STAGE1_REQUESTS


def test_cli_failing_candidate_is_reported_not_raised(settings, tmp_path):
    result = CliRunner().invoke(oe.openevolve_evaluate_command,
                                [router(tmp_path, "raise ValueError('nope')")])
    assert result.exit_code == 0
    assert "ValueError: nope" in json.loads(result.stdout)["artifacts"]["error"]


@pytest.mark.parametrize("args, message", [
    ([], "give a PROGRAM"),
    (["no-such-program.py"], "no-such-program.py: no such program file"),
    (["--config", "no-such.yaml"], "no-such.yaml: no such OpenEvolve config file"),
    (["--iterations", "2", "x.py"], "need --config"),
])
def test_cli_bad_input_is_one_line(settings, args, message):
    result = CliRunner().invoke(oe.openevolve_evaluate_command, args)
    assert result.exit_code == 2
    assert message in result.output
    direct = CliRunner().invoke(oe.openevolve_evaluate_command, args, standalone_mode=False)
    text = direct.exception.format_message()
    assert message in text and "\n" not in text


def test_cli_bad_settings_are_a_usage_error(settings):
    settings(bogus=1)
    result = CliRunner().invoke(oe.openevolve_evaluate_command, [str(oe.INITIAL_PROGRAM)])
    assert result.exit_code == 2 and "blis.bogus: unknown key" in result.output


def test_command_class_for_the_blis_commands_hook():
    assert oe.OpenEvolveCommand.name == "openevolve-evaluate"
    assert oe.OpenEvolveCommand.command() is oe.openevolve_evaluate_command


# -- a real OpenEvolve run ------------------------------------------------------------------------
CURRENT_PROGRAM = re.compile(r"# Current Program\n```[a-z]*\n(.*?)\n```", re.DOTALL)
WEIGHT_LINE = re.compile(r"^( *in_flight_weight = )([0-9.]+)$", re.MULTILINE)


class StubLLM(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible chat-completions endpoint that always proposes the same edit."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.prompts: list[str] = []

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class StubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output for failures
        pass

    def reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self.reply(404, {"error": {"message": f"no {self.path}"}})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/chat/completions"):
            self.reply(404, {"error": {"message": f"no {self.path}"}})
            return
        prompt = request["messages"][-1]["content"]
        self.server.prompts.append(prompt)
        self.reply(200, {
            "id": f"stub-{len(self.server.prompts)}", "object": "chat.completion",
            "created": int(time.time()), "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": propose_edit(prompt)}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


def propose_edit(prompt: str) -> str:
    current = CURRENT_PROGRAM.search(prompt)
    line = WEIGHT_LINE.search(current.group(1)) if current else None
    if line is None:
        return "I see nothing to change."
    weight = float(line.group(2)) + 0.5
    return ("Weigh in-flight requests too, so that an idle-looking instance with work on its "
            f"way stops attracting everything.\n<<<<<<< SEARCH\n{line.group(0)}\n=======\n"
            f"{line.group(1)}{weight}\n>>>>>>> REPLACE\n")


@pytest.fixture
def stub_llm():
    server = StubLLM()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def restore_process_state():
    """OpenEvolve adds root log handlers and installs SIGINT/SIGTERM handlers for good."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for sig, handler in signals.items():
        signal.signal(sig, handler)


def test_openevolve_evolves_a_blis_router(settings, stub_llm, tmp_path, monkeypatch,
                                          restore_process_state):
    from openevolve import OpenEvolve
    from openevolve.config import Config

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy setting must not catch the stub
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    iterations = 3
    config = Config.from_dict({
        "max_iterations": iterations, "log_level": "WARNING", "random_seed": 42,
        "llm": {"api_base": stub_llm.api_base, "api_key": "stub", "models": [{"name": "stub"}],
                "timeout": 10, "retries": 0, "retry_delay": 0},
        "database": {"num_islands": 1, "population_size": 20, "archive_size": 10},
        "evaluator": {"timeout": 30, "max_retries": 0, "parallel_evaluations": 1,
                      "cascade_evaluation": True, "cascade_thresholds": [0.01]},
    })
    controller = OpenEvolve(initial_program_path=str(oe.INITIAL_PROGRAM),
                            evaluation_file=str(oe.EVALUATOR_FILE), config=config,
                            output_dir=str(tmp_path / "openevolve_output"))

    best = asyncio.run(asyncio.wait_for(controller.run(iterations=iterations), timeout=90))

    assert len(stub_llm.prompts) == iterations
    programs = list(controller.database.programs.values())
    initial_code = oe.INITIAL_PROGRAM.read_text()
    evolved = [p for p in programs if p.code != initial_code]
    assert evolved, "no evolved program reached the database"
    for p in programs:  # every program went through both cascade stages of blis
        assert p.metrics["completed_requests"] == FULL_REQUESTS, p.metrics
        assert p.metrics["stage1_score"] > 0.01
    assert any("in_flight_weight = 0.5" in p.code for p in evolved)
    # The better children may have pushed the initial program out of the database.
    initial_score = oe.evaluate(str(oe.INITIAL_PROGRAM)).metrics["combined_score"]
    assert best.code != initial_code and best.generation >= 1
    assert best.metrics["combined_score"] > initial_score > 0
    assert (tmp_path / "openevolve_output" / "best" / "best_program.py").read_text() == best.code


def test_cli_runs_openevolve_with_a_config(stub_llm, tmp_path, monkeypatch, restore_process_state):
    # The command sets BLIS_OE_CONFIG for OpenEvolve's workers; monkeypatch must undo that.
    monkeypatch.setenv(oe.CONFIG_ENV, "")
    monkeypatch.delenv(oe.CONFIG_ENV)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    oe_yaml = tmp_path / "oe.yaml"
    oe_yaml.write_text(json.dumps({
        "max_iterations": 1, "log_level": "WARNING",
        "llm": {"api_base": stub_llm.api_base, "api_key": "stub", "models": [{"name": "stub"}],
                "timeout": 10, "retries": 0, "retry_delay": 0},
        "database": {"num_islands": 1},
        "evaluator": {"timeout": 30, "max_retries": 0, "cascade_thresholds": [0.5]},
        "blis": {"run_args": RUN_ARGS, "stage1_num_requests": STAGE1_REQUESTS},
    }))
    result = CliRunner().invoke(oe.openevolve_evaluate_command, ["--config", str(oe_yaml)])
    assert result.exit_code == 0, result.output
    # OpenEvolve's default-sized threshold is far above a blis score: the command says so.
    assert "below evaluator.cascade_thresholds[0] = 0.5" in result.stderr
    report = json.loads(result.stdout)
    assert report["output_dir"] == str(tmp_path / "openevolve_output")
    assert report["metrics"]["completed_requests"] == STAGE1_REQUESTS  # stage 1 only
    assert open(report["best_program"]).read().count("EVOLVE-BLOCK-START") == 1
    assert len(stub_llm.prompts) == 1
