"""The typed run description (``blis_core.RunConfig``): what ``blis run`` builds from its flags,
``--dump-config`` prints and ``--config`` runs; its YAML/JSON round trip, its errors, and the
layering of the library under the command line (nothing but the entry point imports the CLI).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import blis_core
from blis_core.bundle import AdmissionSection, PolicyBundle, RoutingSection, ScorerEntry
from blis_core.runconfig import (ClusterSection, ConfigurationError, EngineSection, ModelSection,
                                 RunConfig, TraceFiles, WorkloadSection)

from _shared import run_cli
from test_cli import BLACKBOX, MODEL, error_lines

ROOT = Path(__file__).resolve().parents[1]
SHORT = [*MODEL, *BLACKBOX, "--num-requests", "30", "--rate", "20"]

POLICY = """\
admission:
  policy: token-bucket
  token_bucket_capacity: 5000
routing:
  policy: weighted
  scorers:
    - name: queue-depth
      weight: 2.0
scheduler: sjf
"""

SPEC = """\
version: "2"
seed: 7
aggregate_rate: 30
num_requests: 25
clients:
  - id: chat
    rate_fraction: 1.0
    arrival: {process: poisson}
    input_distribution: {type: gaussian, params: {mean: 200, std_dev: 50, min: 10, max: 400}}
    output_distribution: {type: exponential, params: {mean: 60}}
"""


def dump(args, capsys) -> str:
    code, out, err = run_cli(["run", *args, "--dump-config"], capsys)
    assert code == 0, err
    return out


# -- the CLI: flags, --dump-config, --config ------------------------------------------------------
COMMAND_LINES = {
    "distribution": SHORT,
    "instances and weighted routing": [*SHORT, "--num-instances", "3", "--routing-policy",
                                       "weighted", "--routing-scorers", "queue-depth:1,kv-utilization:2"],
    "preset and seed": [*MODEL, *BLACKBOX, "--workload", "chatbot", "--rate", "10",
                        "--num-requests", "20", "--seed", "9"],
    "roofline defaults": [*MODEL, "--num-requests", "10", "--max-num-running-reqs", "8"],
    "fitness and horizon": [*SHORT, "--fitness-weights", "throughput:0.5,p99_ttft:0.5",
                            "--horizon", "2000000"],
}


@pytest.mark.parametrize("name", sorted(COMMAND_LINES))
def test_dumped_config_runs_exactly_like_the_flags(name, tmp_path, capsys):
    args = COMMAND_LINES[name]
    code, by_flags, err = run_cli(["run", *args, "--format", "json"], capsys)
    assert code == 0, err
    path = tmp_path / "run.yaml"
    path.write_text(dump(args, capsys))
    code, by_config, err = run_cli(["run", "--config", str(path), "--format", "json"], capsys)
    assert code == 0, err
    assert by_config == by_flags
    # The description round-trips: dumping the config file gives the same file back.
    assert dump(["--config", str(path)], capsys) == path.read_text()


def test_policy_config_and_workload_spec_travel_in_the_description(tmp_path, capsys):
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "spec.yaml").write_text(SPEC)
    args = [*MODEL, *BLACKBOX, "--policy-config", str(tmp_path / "policy.yaml"),
            "--workload-spec", str(tmp_path / "spec.yaml"), "--num-instances", "2"]
    code, by_flags, err = run_cli(["run", *args, "--format", "json"], capsys)
    assert code == 0, err
    text = dump(args, capsys)
    config = RunConfig.from_yaml(text)
    assert config.policies.scheduler == "sjf"
    assert config.policies.routing.scorers == (ScorerEntry("queue-depth", 2.0),)
    assert config.workload.spec == str(tmp_path / "spec.yaml")
    # The spec file next to the description is found by a relative name.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "spec.yaml").write_text(SPEC)
    (moved / "run.yaml").write_text(text.replace(str(tmp_path / "spec.yaml"), "spec.yaml"))
    code, by_config, err = run_cli(["run", "--config", str(moved / "run.yaml"),
                                    "--format", "json"], capsys)
    assert code == 0, err
    assert by_config == by_flags


def test_flags_given_explicitly_override_the_config_file(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(dump(SHORT, capsys))
    code, overridden, _ = run_cli(["run", "--config", str(path), "--seed", "5", "--num-instances",
                                   "2", "--format", "json"], capsys)
    assert code == 0
    code, direct, _ = run_cli(["run", *SHORT, "--seed", "5", "--num-instances", "2",
                               "--format", "json"], capsys)
    assert code == 0
    assert overridden == direct


def test_policy_config_overrides_the_config_file_and_flags_override_both(tmp_path, capsys):
    (tmp_path / "policy.yaml").write_text(POLICY)
    path = tmp_path / "run.yaml"
    path.write_text(dump([*SHORT, "--scheduler", "priority-fcfs", "--routing-policy",
                          "least-loaded", "--priority-policy", "slo-based"], capsys))
    config = RunConfig.from_yaml(dump(["--config", str(path), "--policy-config",
                                       str(tmp_path / "policy.yaml"), "--scheduler", "fcfs"],
                                      capsys))
    p = config.policies
    assert (p.scheduler, p.routing.policy, p.priority.policy, p.admission.policy) == (
        "fcfs", "weighted", "slo-based", "token-bucket")


def test_replay_runs_from_a_description(tmp_path, capsys):
    prefix = str(tmp_path / "rec")
    code, _, err = run_cli(["run", *SHORT, "--trace-output", prefix], capsys)
    assert code == 0, err
    replay = ["replay", *MODEL, *BLACKBOX, "--trace-header", prefix + ".yaml",
              "--trace-data", prefix + ".csv"]
    code, by_flags, err = run_cli([*replay, "--format", "json"], capsys)
    assert code == 0, err
    code, text, err = run_cli([*replay, "--dump-config"], capsys)
    assert code == 0, err
    config = RunConfig.from_yaml(text)
    assert config.workload.trace == TraceFiles(prefix + ".yaml", prefix + ".csv")
    assert config.workload.source == "trace"
    (tmp_path / "replay.yaml").write_text(text)
    code, by_config, err = run_cli(["run", "--config", str(tmp_path / "replay.yaml"),
                                    "--format", "json"], capsys)
    assert code == 0, err
    assert by_config == by_flags


def test_replay_without_a_trace_is_one_line(capsys):
    code, _, err = run_cli(["replay", *MODEL, *BLACKBOX, "--trace-data", "x.csv"], capsys)
    assert code == 2
    assert error_lines(err) == ["blis: error: Missing option '--trace-header'."]


@pytest.mark.parametrize("text, message", [
    ("engine:\n  max_num_running_reqs: 0\n", "--max-num-running-reqs must be > 0"),
    ("engine:\n  max_num_runing_reqs: 4\n", "run.yaml: engine.max_num_runing_reqs: unknown field"),
    ("cluster:\n  num_instances: many\n", "run.yaml: cluster.num_instances: expected an integer, got 'many'"),
    ("policies:\n  routing:\n    policy: nope\n", "--routing-policy: unknown routing policy 'nope'"),
    ("policies:\n  routing:\n    scorers:\n      - name: queue-depth\n        weight: -1\n",
     "policies.routing.scorers[0].weight: must be a finite value > 0, got -1"),
    ("policies:\n  admision: {}\n", "run.yaml: policies.admision: unknown field"),
    ("fitness_weights:\n  latency: 1\n", "--fitness-weights: unknown fitness key 'latency'"),
    ("workload:\n  spec: a.yaml\n  trace: {header: h.yaml, data: d.csv}\n",
     "workload: spec and trace are mutually exclusive"),
    ("workload: [1, 2]\n", "run.yaml: workload: expected a mapping"),
    ("model:\n  name: ''\n", "--model: LLM name not provided"),
    ("horizon: 0\n", "--horizon must be > 0"),
    ("- just a list\n", "run.yaml: expected a mapping at the top level"),
    ("", "run.yaml: the file is empty"),
    ("model: {name: a\n", "run.yaml: "),
])
def test_bad_description_is_one_line_naming_the_field(text, message, tmp_path, capsys):
    base = "model:\n  name: meta-llama/llama-3.1-8b-instruct\n  latency_model: blackbox\n"
    if not text.startswith(("model:", "- ")) and text:
        text = base + text
    path = tmp_path / "run.yaml"
    path.write_text(text)
    code, out, err = run_cli(["run", "--config", str(path)], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("blis: error: ")
    assert message in lines[0].replace(str(tmp_path) + "/", "")
    assert out == ""


def test_missing_config_file_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["run", "--config", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2
    assert error_lines(err) == [f"blis: error: {tmp_path / 'absent.yaml'}: cannot read run "
                                "config: No such file or directory"]


# -- the Python surface ---------------------------------------------------------------------------
def test_from_args_builds_the_typed_description():
    config = RunConfig.from_args([*SHORT, "--num-instances", "2", "--scheduler", "sjf",
                                  "--fitness-weights", "throughput:1"])
    assert config.model.name == "meta-llama/llama-3.1-8b-instruct"
    assert config.model.latency_model == "blackbox"
    assert config.model.alpha_coeffs == (232.46191091038054, 1.752360364195244, 3357.4400353290152)
    assert config.cluster.num_instances == 2
    assert config.policies.scheduler == "sjf"
    assert config.workload.rate == 20.0 and config.workload.num_requests == 30
    assert config.seed is None and config.horizon is None
    assert config.fitness_weights == {"throughput": 1.0}


def test_a_hand_built_description_evaluates_like_the_flags():
    flags = RunConfig.from_args([*SHORT, "--num-instances", "2", "--routing-policy",
                                 "least-loaded", "--fitness-weights", "throughput:1"])
    by_hand = RunConfig(
        model=ModelSection(name="meta-llama/llama-3.1-8b-instruct", latency_model="blackbox",
                           hardware="H100", tp=1, alpha_coeffs=flags.model.alpha_coeffs,
                           beta_coeffs=flags.model.beta_coeffs),
        cluster=ClusterSection(num_instances=2),
        policies=PolicyBundle(routing=RoutingSection(policy="least-loaded")),
        workload=WorkloadSection(rate=20.0, num_requests=30),
        fitness_weights={"throughput": 1.0})
    assert by_hand == flags
    a, b = blis_core.evaluate(by_hand), blis_core.evaluate(flags)
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def test_replace_by_dotted_path_and_its_errors():
    config = RunConfig().replace(**{"workload.rate": 40.0, "cluster.num_instances": 4, "seed": 3})
    assert (config.workload.rate, config.cluster.num_instances, config.seed) == (40.0, 4, 3)
    with pytest.raises(ConfigurationError, match=r"workload\.rat: unknown field 'rat'"):
        RunConfig().replace(**{"workload.rat": 1})


def test_with_bundle_fills_only_what_the_description_leaves_unset(tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    config = RunConfig(policies=PolicyBundle(scheduler="fcfs"))
    merged = config.with_bundle(tmp_path / "policy.yaml")
    assert merged.policies.scheduler == "fcfs"
    assert merged.policies.admission == AdmissionSection(policy="token-bucket",
                                                          token_bucket_capacity=5000.0)
    with pytest.raises(ConfigurationError, match="bundle: .*absent.yaml: cannot read"):
        config.with_bundle(tmp_path / "absent.yaml")


def test_from_args_refuses_bad_flags_with_the_cli_message():
    with pytest.raises(ConfigurationError, match="^--max-num-scheduled-tokens must be > 0$"):
        RunConfig.from_args([*SHORT, "--max-num-scheduled-tokens", "0"])
    with pytest.raises(ConfigurationError, match="No such option '--no-such-flag'"):
        RunConfig.from_args([*SHORT, "--no-such-flag"])


# -- round trip over random descriptions ----------------------------------------------------------
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
counts = st.integers(0, 2**40)
maybe = st.none
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)

descriptions = st.builds(
    RunConfig,
    model=st.builds(ModelSection, name=names, latency_model=maybe() | names,
                    alpha_coeffs=maybe() | st.lists(finite, max_size=4).map(tuple),
                    beta_coeffs=maybe() | st.lists(finite, max_size=4).map(tuple),
                    hardware=names, tp=counts, gpu_memory_utilization=finite,
                    defaults_filepath=maybe() | names),
    engine=st.builds(EngineSection, total_kv_blocks=maybe() | counts,
                     max_num_running_reqs=counts, max_model_len=maybe() | counts,
                     kv_transfer_bandwidth=finite),
    cluster=st.builds(ClusterSection, num_instances=counts, cache_signal_delay=counts),
    policies=st.builds(PolicyBundle,
                       admission=st.builds(AdmissionSection, policy=names,
                                           token_bucket_capacity=maybe() | finite,
                                           slo_priorities=maybe() | st.dictionaries(
                                               names, st.integers(-9, 9), max_size=3)),
                       routing=st.builds(RoutingSection, policy=names, scorers=st.lists(
                           st.builds(ScorerEntry, name=names, weight=finite),
                           max_size=3).map(tuple)),
                       scheduler=names,
                       tenant_budgets=maybe() | st.dictionaries(names, finite, max_size=3)),
    workload=st.builds(WorkloadSection, generator=names, spec=maybe() | names,
                       trace=maybe() | st.builds(TraceFiles, names, names),
                       rate=maybe() | finite, num_requests=maybe() | counts),
    horizon=maybe() | counts, seed=maybe() | st.integers(-2**63, 2**63 - 1),
    fitness_weights=st.dictionaries(names, finite, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(descriptions)
def test_any_description_round_trips_through_yaml_and_json(config):
    assert RunConfig.from_yaml(config.to_yaml()) == config
    assert RunConfig.from_json(config.to_json()) == config
    assert RunConfig.from_yaml(config.to_yaml()).to_yaml() == config.to_yaml()


# -- layering: the library does not sit on its command line -----------------------------------------
PACKAGES = ("blis_core", "blis_policies", "blis_workloads", "blis_adapters")


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Modules of the project that a source file imports (anywhere, or at module level)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists()
                found.add(candidate if is_module else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def test_nothing_but_the_entry_point_imports_the_cli():
    offenders = [name for name, path in _modules().items()
                 if name != "blis_core.cli" and "blis_core.cli" in _imports(path, False)]
    assert offenders == []


def test_blis_core_imports_no_plugin_package():
    offenders = {name: sorted(i for i in _imports(path, False) if not i.startswith("blis_core"))
                 for name, path in _modules().items() if name.startswith("blis_core")}
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_import_cycle_at_module_level():
    modules = _modules()
    graph = {name: {dep for dep in _imports(path, True) if dep in modules}
             for name, path in modules.items()}
    # A package importing its own submodules (``__init__`` re-exports) is not a cycle.
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not dep.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [node, dep]))
            if dep not in state:
                visit(dep, trail + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_evaluating_from_python_never_loads_the_cli():
    code = ("import sys, blis_core\n"
            f"r = blis_core.evaluate({' '.join(SHORT)!r}, fitness_weights='throughput:1')\n"
            "assert r.score > 0\n"
            "assert 'blis_core.cli' not in sys.modules, 'the CLI was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_docs_name_every_field_and_every_flag_field():
    import attrs
    from blis_core.flags import ALL_FLAGS

    text = (ROOT / "docs" / "runconfig.md").read_text()
    for section in (ModelSection, EngineSection, ClusterSection):
        for field in attrs.fields(section):
            assert f"  {field.name}:" in text, field.name
    for field in attrs.fields(RunConfig):
        assert f"{field.name}:" in text, field.name
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    for flag in ALL_FLAGS:
        assert f"`{flag.name}`" in cli_doc, flag.name
