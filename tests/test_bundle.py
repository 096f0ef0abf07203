"""Policy bundles (``--policy-config``) and ``blis policies validate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from _shared import shared_dir
from blis_core import cli
from blis_core.bundle import BundleError, PolicyBundle, load_bundle, parse_bundle, unstructure

from test_cli import BLACKBOX, MODEL, error_lines, run_cli

CUSTOM = """\
admission:
  policy: token-bucket
  token_bucket_capacity: 20000
  token_bucket_refill_rate: 15000
routing:
  policy: weighted
  scorers:
    - name: queue-depth
      weight: 2.0
    - name: kv-utilization
      weight: 1.0
priority:
  policy: slo-based
scheduler: priority-fcfs
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def bundle_error(text: str) -> str:
    with pytest.raises(BundleError) as info:
        parse_bundle(text, "policy.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


# -- parsing ------------------------------------------------------------------------------------
def test_valid_bundle_round_trip():
    bundle = parse_bundle(CUSTOM, "policy.yaml")
    assert bundle.admission.policy == "token-bucket"
    assert bundle.admission.token_bucket_capacity == 20000.0
    assert bundle.admission.tier_shed_threshold is None
    assert [(s.name, s.weight) for s in bundle.routing.scorers] == [("queue-depth", 2.0),
                                                                   ("kv-utilization", 1.0)]
    assert bundle.priority.policy == "slo-based"
    assert bundle.scheduler == "priority-fcfs"
    data = unstructure(bundle)
    assert data["routing"]["scorers"][1] == {"name": "kv-utilization", "weight": 1.0}
    again = parse_bundle(__import__("yaml").safe_dump(data), "again.yaml")
    assert again == bundle


def test_every_key_is_optional():
    assert parse_bundle("scheduler: sjf\n") == PolicyBundle(scheduler="sjf")
    assert parse_bundle("routing: ~\nscheduler: fcfs\n").routing.policy == ""


POOL = ("node_pools:\n  - {name: p, gpu_type: H100, gpus_per_node: 8, gpu_memory_gib: 80,"
        " initial_nodes: 1, max_nodes: 2}\n")


@pytest.mark.parametrize("text, expected", [
    ("routing:\n  policy: weighted\n  bogus: 1\n", "policy.yaml: routing.bogus: unknown field"),
    ("warm_up_requests: 3\n", "policy.yaml: warm_up_requests: unknown field"),
    ("routing:\n  scorers:\n    - name: queue-depth\n      weight: 1\n"
     "    - name: load-balance\n      weight: x\n",
     "policy.yaml: routing.scorers[1].weight: expected a number, got 'x'"),
    ("routing:\n  scorers:\n    - {name: queue-depth, weight: 0}\n",
     "policy.yaml: routing.scorers[0].weight: must be a finite value > 0, got 0"),
    ("routing:\n  scorers:\n    - {name: queue-depth, wieght: 1}\n",
     "policy.yaml: routing.scorers[0].wieght: unknown field"),
    ("admission:\n  slo_priorities: {critical: high}\n",
     "policy.yaml: admission.slo_priorities.critical: expected an integer, got 'high'"),
    ("admission:\n  gaie_kv_threshold: 1.5\n",
     "policy.yaml: admission.gaie_kv_threshold: must be in (0, 1], got 1.5"),
    ("tenant_budgets: {a: 1.5}\n", "policy.yaml: tenant_budgets.a"),
    ("autoscaler: {interval_us: 1000, policy: nope}\n",
     "policy.yaml: autoscaler.policy: unknown autoscaler 'nope' (known: oscillator, "),
    ("autoscaler: {interval_us: 1000, policy: threshold}\n",
     "policy.yaml: autoscaler.policy: the threshold autoscaler needs node_pools"),
    ("autoscaler: {interval_us: -5}\n",
     "policy.yaml: autoscaler.interval_us: must be a finite value >= 0, got -5"),
    ("autoscaler: {interval_us: 1, scale_down_stabilization_window_us: -1}\n",
     "policy.yaml: autoscaler.scale_down_stabilization_window_us: must be a finite value >= 0"),
    ("autoscaler: {interval_us: 1, hpa_scrape_delay: {mean: -1}}\n",
     "policy.yaml: autoscaler.hpa_scrape_delay.mean: must be >= 0, got -1"),
    (POOL + "autoscaler: {interval_us: 1, policy: threshold, params: {min_replicas: 3,"
     " max_replicas: 2}}\n",
     "policy.yaml: autoscaler.params: min_replicas 3 must be <= max_replicas 2"),
    (POOL + "autoscaler: {interval_us: 1, policy: threshold, params: {bogus: 1}}\n",
     "policy.yaml: autoscaler.params: "),
    ("node_pools:\n  - {name: p, gpu_type: H100, gpus_per_node: 0, gpu_memory_gib: 80,"
     " max_nodes: 2}\n", "policy.yaml: node_pools[0].gpus_per_node: must be >= 1, got 0"),
    ("node_pools:\n  - {name: p, gpu_type: H100, gpus_per_node: 8, gpu_memory_gib: 80,"
     " initial_nodes: 3, max_nodes: 2}\n",
     "policy.yaml: node_pools[0].max_nodes: must be >= initial_nodes and >= min_nodes, got 2"),
    ("", "policy.yaml: parsing policy config: EOF"),
    ("# only a comment\n", "policy.yaml: parsing policy config: EOF"),
    ("scheduler: fcfs\nscheduler: sjf\n", "already defined"),
    ("- 1\n", "policy.yaml: expected a mapping at the top level"),
])
def test_bad_bundles_give_one_line_naming_the_path(text, expected):
    assert expected in bundle_error(text)


def test_unknown_policy_lists_the_known_names():
    message = bundle_error("admission:\n  policy: nope\n")
    assert message.startswith("policy.yaml: admission.policy: unknown admission policy 'nope'")
    assert "always-admit" in message and "token-bucket" in message


def test_empty_optional_features_are_accepted():
    bundle = parse_bundle("tenant_budgets: {}\nnode_pools: []\nautoscaler: {interval_us: 0}\n")
    assert bundle.node_pools == ()


def _examples() -> list:
    base = shared_dir()
    if base is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="reference material not found: "
                                                           "../shared is absent"))]
    folder = base / "reference" / "upstream" / "examples"
    keys = {"admission", "routing", "priority", "scheduler"}
    out = []
    for path in sorted(folder.glob("*.yaml")):
        import yaml

        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and set(data) and set(data) <= keys | {
                "tenant_budgets", "node_pools", "autoscaler"}:
            out.append(pytest.param(path, id=path.name))
    return out or [pytest.param(None, marks=pytest.mark.skip(reason="no example bundles"))]


@pytest.mark.parametrize("path", _examples())
def test_upstream_example_bundles_load_unchanged(path):
    bundle = load_bundle(path)
    assert bundle.routing.policy or bundle.admission.policy


# -- the CLI ------------------------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    """Replace the run with a recorder of the configuration it would have run."""
    configs = []

    def fake_execute(run, p, metrics_path):
        configs.append(run.simulation)

    monkeypatch.setattr(cli, "_execute", fake_execute)
    return configs


def test_bundle_fills_the_policy_flags(tmp_path, capsys, captured):
    path = write(tmp_path, CUSTOM)
    code, _out, err = run_cli(["run", *MODEL, *BLACKBOX, "--num-requests", "5",
                               "--policy-config", str(path)], capsys)
    assert code == 0, err
    policies = captured[0].policies
    assert (policies.admission, policies.routing, policies.priority, policies.scheduler) == (
        "token-bucket", "weighted", "slo-based", "priority-fcfs")
    assert policies.admission_params == {"capacity": 20000.0, "refill_rate": 15000.0}
    assert policies.routing_params == {"scorers": [("queue-depth", 2.0), ("kv-utilization", 1.0)]}


def test_cli_flags_given_explicitly_override_the_bundle(tmp_path, capsys, captured):
    path = write(tmp_path, CUSTOM)
    code, _out, err = run_cli(["run", *MODEL, *BLACKBOX, "--num-requests", "5",
                               "--policy-config", str(path), "--scheduler", "sjf",
                               "--token-bucket-capacity", "500",
                               "--routing-scorers", "load-balance:1"], capsys)
    assert code == 0, err
    policies = captured[0].policies
    assert policies.scheduler == "sjf"
    assert policies.priority == "slo-based"
    assert policies.admission_params == {"capacity": 500.0, "refill_rate": 15000.0}
    assert policies.routing_params == {"scorers": [("load-balance", 1.0)]}
    code, _out, err = run_cli(["run", *MODEL, *BLACKBOX, "--num-requests", "5",
                               "--policy-config", str(path), "--admission-policy",
                               "always-admit", "--routing-policy", "round-robin"], capsys)
    assert code == 0, err
    policies = captured[1].policies
    assert (policies.admission, policies.routing) == ("always-admit", "round-robin")
    assert policies.admission_params == {} and policies.routing_params == {}


def test_tier_shed_bundle_defaults_min_priority_to_3(tmp_path, capsys, captured):
    path = write(tmp_path, "admission:\n  policy: tier-shed\n  tier_shed_threshold: 6\n")
    code, _out, err = run_cli(["run", *MODEL, *BLACKBOX, "--num-requests", "5",
                               "--policy-config", str(path)], capsys)
    assert code == 0, err
    assert captured[0].policies.admission_params == {"threshold": 6, "min_priority": 3}


def test_run_with_a_bad_bundle_fails_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "routing:\n  scorers:\n    - {name: queue-depth, weight: x}\n")
    code, _out, err = run_cli(["run", *MODEL, *BLACKBOX, "--policy-config", str(path)], capsys)
    assert code == 2
    lines = error_lines(err)
    assert lines == [f"blis: error: --policy-config: {path}: routing.scorers[0].weight: "
                     "expected a number, got 'x'"]


def test_policies_validate_success(tmp_path, capsys):
    path = write(tmp_path, CUSTOM)
    code, out, err = run_cli(["policies", "validate", str(path)], capsys)
    assert code == 0, err
    assert out.strip().startswith(f"{path}: valid policy bundle")
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", "routing:\n  bogus: 1\n", "scheduler: nope\n",
                                  "routing:\n  scorers:\n    - {name: queue-depth, weight: x}\n"])
def test_policies_validate_failure(tmp_path, capsys, text):
    path = write(tmp_path, text)
    code, out, err = run_cli(["policies", "validate", str(path)], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"blis: error: {path}: ")


def test_policies_validate_missing_file(tmp_path, capsys):
    code, _out, err = run_cli(["policies", "validate", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
