"""``blis sweep``: grids of run descriptions on a process pool and on a real Dask cluster.

The Dask test starts a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 and
checks that the rows they produce equal the process pool's, byte for byte.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import blis_core
from blis_adapters.sweep import load_grid, run_point, run_sweep
from blis_core.runconfig import ConfigurationError, RunConfig

from _shared import run_cli
from test_cli import BLACKBOX, MODEL, error_lines

BASE_ARGS = [*MODEL, *BLACKBOX, "--num-requests", "40", "--rate", "30",
             "--fitness-weights", "throughput:0.5,p99_ttft:0.5"]


@pytest.fixture
def grid_dir(tmp_path, capsys):
    code, text, err = run_cli(["run", *BASE_ARGS, "--dump-config"], capsys)
    assert code == 0, err
    (tmp_path / "base.yaml").write_text(text)
    (tmp_path / "ll.yaml").write_text("routing:\n  policy: least-loaded\n")
    (tmp_path / "grid.yaml").write_text(
        "base: base.yaml\n"
        "axes:\n"
        "  policies: [ll.yaml, {routing: {policy: round-robin}}]\n"
        "  cluster.num_instances: [1, 2]\n"
        "  seed: [1, 2]\n")
    return tmp_path


def sweep(args, capsys):
    return run_cli(["sweep", *args, "--quiet"], capsys)


def test_grid_points_are_the_product_in_order(grid_dir):
    grid = load_grid(grid_dir / "grid.yaml")
    assert len(grid.points) == 8
    last = grid.points[-1]
    assert last.values == (("policies", {"routing": {"policy": "round-robin"}}),
                           ("cluster.num_instances", 2), ("seed", 2))
    assert last.config.cluster.num_instances == 2 and last.config.seed == 2
    assert grid.points[0].config.policies.routing.policy == "least-loaded"
    assert grid.points[1].config.seed == 2 and grid.points[1].config.cluster.num_instances == 1


def test_rows_match_evaluating_each_point_in_process(grid_dir, capsys):
    code, out, err = run_cli(["sweep", str(grid_dir / "grid.yaml"), "--jobs", "2"], capsys)
    assert code == 0, err
    assert json.loads(out)["points"] == 8
    # One progress line per point on stderr, with the pace and (but for the last) an ETA.
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert len(progress) == 8 and all("points/min" in line for line in progress)
    assert all("ETA" in line for line in progress[:-1]) and "ETA" not in progress[-1]
    rows = [json.loads(line) for line in (grid_dir / "grid.results.jsonl").read_text().splitlines()]
    assert [row["point"] for row in rows] == list(range(8))
    grid = load_grid(grid_dir / "grid.yaml")
    for point, row in zip(grid.points, rows):
        expected = blis_core.evaluate(point.config)
        assert row["status"] == "ok"
        assert row["score"] == expected.score
        assert row["completed"] == expected.metrics.completed
        assert row["ttft_p99_us"] == expected.metrics.ttft_us.p99
    csv_lines = (grid_dir / "grid.results.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("point,config_hash,policies,")


def test_a_failing_point_is_a_row_and_the_rest_go_on(grid_dir, capsys):
    (grid_dir / "grid.yaml").write_text("base: base.yaml\naxes:\n  cluster.num_instances: [0, 2]\n")
    code, out, err = run_cli(["sweep", str(grid_dir / "grid.yaml"), "-j", "1"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (grid_dir / "grid.results.jsonl").read_text().splitlines()]
    assert rows[0]["status"] == "failed"
    assert rows[0]["error"] == "--num-instances must be >= 1"
    assert rows[1]["status"] == "ok" and rows[1]["score"] > 0
    assert json.loads(out)["failed"] == 1
    assert "1 of 2 points failed" in err


def test_resume_keeps_finished_rows_and_runs_only_the_rest(grid_dir, capsys):
    grid_file = str(grid_dir / "grid.yaml")
    code, _, err = sweep([grid_file, "-j", "2"], capsys)
    assert code == 0, err
    results = grid_dir / "grid.results.jsonl"
    complete = results.read_text()
    # An interrupted sweep: three rows written. Mark them, to see that resume keeps them.
    kept = [json.loads(line) for line in complete.splitlines()[:3]]
    for row in kept:
        row["marker"] = "kept"
    results.write_text("".join(json.dumps(row) + "\n" for row in kept))
    code, _, err = sweep([grid_file, "-j", "2", "--resume"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row.get("marker") for row in rows] == ["kept"] * 3 + [None] * 5
    for row in rows:
        row.pop("marker", None)
    assert "".join(json.dumps(row) + "\n" for row in rows) == complete


def test_resume_reruns_a_point_whose_description_changed(grid_dir, capsys):
    grid_file = grid_dir / "grid.yaml"
    code, _, err = sweep([str(grid_file), "-j", "2"], capsys)
    assert code == 0, err
    grid_file.write_text(grid_file.read_text().replace("seed: [1, 2]", "seed: [1, 3]"))
    rows = run_sweep(load_grid(grid_file), str(grid_dir / "grid.results"), jobs=1, resume=True)
    fresh = {point.index: point.config_hash for point in load_grid(grid_file).points}
    assert all(row["config_hash"] == fresh[row["point"]] for row in rows)


@pytest.mark.parametrize("grid, message", [
    ("base: base.yaml\naxes:\n  workload.rat: [1, 2]\n",
     "axes.workload.rat: unknown field 'workload.rat' of the run description"),
    ("base: base.yaml\naxes:\n  seed: []\n", "axes.seed: expected a non-empty list of values"),
    ("base: base.yaml\naxes: {}\n", "axes: expected a mapping of at least one axis"),
    ("base: base.yaml\naxes:\n  policies: [{routing: {policy: 3}, bogus: 1}]\n",
     "axes.policies: "),
    ("base: base.yaml\naxes:\n  policies: [absent.yaml]\n", "absent.yaml: cannot read policy config"),
    ("base: base.yaml\naxes:\n  cluster.num_instances: [two]\n",
     "point 0: cluster.num_instances: expected an integer, got 'two'"),
    ("base: base.yaml\naxis:\n  seed: [1]\n", "axis: unknown field (a grid has base and axes)"),
    ("base: 3\naxes:\n  seed: [1]\n", "base: expected a run description file name or mapping"),
])
def test_bad_grid_is_one_line_and_exit_2(grid, message, grid_dir, capsys):
    (grid_dir / "bad.yaml").write_text(grid)
    code, out, err = run_cli(["sweep", str(grid_dir / "bad.yaml")], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("blis: error: "), err
    assert message in lines[0]
    assert not (grid_dir / "bad.results.jsonl").exists()


def test_unreachable_dask_scheduler_is_one_line(grid_dir, capsys):
    port = _free_port()
    code, _, err = run_cli(["sweep", str(grid_dir / "grid.yaml"), "--executor",
                            f"dask://127.0.0.1:{port}"], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1
    assert lines[0].startswith(f"blis: error: --executor: cannot reach the Dask scheduler at "
                               f"tcp://127.0.0.1:{port}")


def test_run_point_never_raises():
    assert run_point("not json")["status"] == "failed"
    row = run_point(RunConfig().to_json())          # no model
    assert row == {"status": "failed", "error": "--model: LLM name not provided"}


# -- a real Dask cluster on 127.0.0.1 ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    # `python -m dask` is the `dask` command, found even where the script is not beside the
    # interpreter (a virtual environment over system site-packages).
    dask = [sys.executable, "-m", "dask"]
    logs = [open(tmp_path / f"dask-{i}.log", "w") for i in range(3)]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs[0], stderr=subprocess.STDOUT,
                              env=env, cwd=tmp_path)]
    try:
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [*dask, "worker", f"tcp://{address}", "--nthreads", "1", "--nworkers", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "2GiB",
                 "--local-directory", str(tmp_path / f"w{i}")],
                stdout=logs[i], stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        from distributed import Client

        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(f"tcp://{address}", timeout="5s") as client:
                    client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                break
            except (OSError, TimeoutError):
                exited = [p.args[3] for p in procs if p.poll() is not None]
                if exited or time.monotonic() > deadline:
                    for log in logs:
                        log.flush()
                    scheduler_log = (tmp_path / "dask-0.log").read_text()[-2000:]
                    raise RuntimeError(f"dask {exited or 'cluster'} did not come up: "
                                       f"{scheduler_log}") from None
                time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def test_dask_rows_equal_process_pool_rows(grid_dir, dask_cluster, capsys):
    grid_file = str(grid_dir / "grid.yaml")
    code, _, err = sweep([grid_file, "-j", "2", "-o", str(grid_dir / "pool")], capsys)
    assert code == 0, err
    code, out, err = sweep([grid_file, "--executor", f"dask://{dask_cluster}", "-o",
                            str(grid_dir / "dask")], capsys)
    assert code == 0, err
    assert json.loads(out)["failed"] == 0
    pool = (grid_dir / "pool.jsonl").read_text()
    assert len(pool.splitlines()) == 8
    assert (grid_dir / "dask.jsonl").read_text() == pool
    assert (grid_dir / "dask.csv").read_text() == (grid_dir / "pool.csv").read_text()


def test_configuration_error_type_is_the_cli_one():
    with pytest.raises(ConfigurationError):
        load_grid("/nonexistent/grid.yaml")
