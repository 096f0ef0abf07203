"""``blis report``: one self-contained HTML page from a results file (and its time series),
checked as a file and, with Chromium installed, in a real headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys

import pytest

from _shared import run_cli

pytest.importorskip("matplotlib", reason='blis report needs matplotlib (pip install ".[report]")')

CHROMIUM = "/usr/bin/chromium"
MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "blackbox",
         "--log", "error"]
SECTIONS = ("summary", "latency", "slo", "tenants", "routing", "timeseries", "anomalies",
            "fitness")


def _run(tmp_path, capsys, name: str, *extra: str) -> tuple[str, str]:
    results = tmp_path / f"{name}.json"
    series = tmp_path / f"{name}.csv"
    code, _, err = run_cli(["run", *MODEL, "--rate", "40", "--num-requests", "200",
                            "--num-instances", "3", "--metrics-path", str(results),
                            "--timeseries", str(series), "--timeseries-interval", "50000",
                            *extra], capsys)
    assert code == 0, err
    return str(results), str(series)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("runs")

    class Capture:           # run_cli wants capsys; a module fixture cannot have it
        def readouterr(self):
            return "", ""

    rr = _run(tmp_path, Capture(), "rr")
    weighted = _run(tmp_path, Capture(), "weighted", "--routing-policy", "weighted")
    return tmp_path, rr, weighted


def _report(capsys, *args: str) -> tuple[int, str]:
    code, out, err = run_cli(["report", *args], capsys)
    assert out == ""
    return code, err


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_one_run_makes_a_self_contained_page(two_runs, capsys):
    folder, (results, series), _ = two_runs
    out = folder / "one.html"
    code, err = _report(capsys, results, "--timeseries", series, "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    images = _images(page)
    # CDFs, histograms, routing, the time series: each a real PNG.
    assert len(images) == 4
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 5_000
               for image in images)
    # Nothing is fetched: no script, no remote URL anywhere.
    assert "<script" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "instance_2" in page and "Queue depth" not in page.split("<section")[0]


def test_two_runs_are_overlaid_side_by_side(two_runs, capsys):
    folder, (rr, rr_series), (weighted, weighted_series) = two_runs
    out = folder / "both.html"
    code, err = _report(capsys, rr, weighted, "--timeseries", rr_series, "--timeseries",
                        weighted_series, "--label", "round-robin", "--label", "weighted",
                        "--fitness-weights", "throughput:0.5,p99_ttft:0.5", "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    assert "<th>round-robin</th><th>weighted</th>" in page
    assert "score (p99_ttft:0.5,throughput:0.5)" in page
    # CDFs, histograms and routing overlay both runs; one time-series figure per run.
    assert len(_images(page)) == 5


def test_fitness_from_the_results_file_matches_the_run(two_runs):
    import json

    import blis_core
    from blis_adapters.report import Run, fitness_of

    _, (results, _), _ = two_runs
    data = json.loads(open(results).read())
    score, components = fitness_of(Run("x", data, data["requests"], None),
                                   {"throughput": 1.0, "mean_e2e": 1.0})
    live = blis_core.evaluate(MODEL + ["--rate", "40", "--num-requests", "200",
                                       "--num-instances", "3"],
                              fitness_weights="throughput:1,mean_e2e:1")
    # The file keeps latencies in ms with float rounding; the score agrees closely.
    assert score == pytest.approx(live.score, rel=1e-9)
    assert components["throughput"] == pytest.approx(live.fitness.components["throughput"])


@pytest.mark.parametrize("content, problem", [
    ("not json", "not a blis results file (not JSON"),
    ('{"a": 1}', "not a blis results file (no instance_id/completed_requests"),
    ('{"instance_id": "cluster", "completed_requests": 1, "injected_requests": 1, '
     '"requests": [{"x": 1}]}', "malformed requests records"),
])
def test_a_file_that_is_not_a_results_file_is_one_line(tmp_path, capsys, content, problem):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, err = _report(capsys, str(bad), "-o", str(tmp_path / "r.html"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("blis: error: ") and problem in err
    assert not (tmp_path / "r.html").exists()


def test_bad_arguments_are_one_line(two_runs, tmp_path, capsys):
    _, (results, series), _ = two_runs
    cases = [
        ([str(tmp_path / "missing.json")], "no such results file"),
        ([results, "--timeseries", results], "--timeseries: "),
        ([results, "--timeseries", series, "--timeseries", series], "--timeseries: 2 files for 1"),
        ([results, "--fitness-weights", "speed:1"], "--fitness-weights: unknown fitness key"),
        ([results, "-o", str(tmp_path / "no" / "r.html")], "--output: cannot write"),
    ]
    for args, problem in cases:
        code, err = _report(capsys, *args)
        assert code == 2, args
        assert err.count("\n") == 1 and problem in err, (args, err)


def test_without_matplotlib_the_report_says_how_to_get_it(two_runs, tmp_path, monkeypatch,
                                                         capsys):
    _, (results, _), _ = two_runs
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    code, err = _report(capsys, results, "-o", str(tmp_path / "r.html"))
    assert code == 2
    assert err == 'blis: error: blis report needs matplotlib: pip install "blis[report]"\n'


def test_the_readme_goes_from_install_to_a_report_in_three_commands(tmp_path):
    """The README's three commands, as written (the install is the one this suite runs in)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("## From install to a report with plots", 1)[1]
    block = block.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert len(commands) == 3 and commands[0] == 'pip install ".[report]"'
    blis = shutil.which("blis")
    if blis is None:
        pytest.skip("the blis console script is not on PATH")
    for command in commands[1:]:
        assert command.startswith("blis ")
        done = subprocess.run(command.replace("blis", blis, 1), shell=True, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    assert len(_images(page)) == 4 and "instance_3" in page


def test_ci_installs_chromium_then_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    lines = (root / ".ci" / "run").read_text().strip().splitlines()
    readme_test = (root / "README.md").read_text().splitlines()[1].strip()
    assert lines[-1] == readme_test
    assert any("apt-get install" in line and "chromium" in line for line in lines[:-1])


# -- in a real browser ------------------------------------------------------------------------
def _chromium(tmp_path, url: str, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         *mode, url],
        capture_output=True, text=True, timeout=180)


def _console(stderr: str) -> list[str]:
    """Console messages (errors, uncaught exceptions, failed loads) Chromium logged."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]


@pytest.mark.browser
def test_the_report_loads_in_a_real_browser(two_runs, tmp_path, capsys):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does)")
    # The console check sees errors: a broken page must show one, or the check proves nothing.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    assert any("Uncaught ReferenceError" in line
               for line in _console(_chromium(tmp_path, broken.as_uri(), "--dump-dom").stderr))

    folder, (rr, rr_series), (weighted, weighted_series) = two_runs
    page = folder / "browser.html"
    code, err = _report(capsys, rr, weighted, "--timeseries", rr_series, "--timeseries",
                        weighted_series, "-o", str(page))
    assert code == 0, err
    dom = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout, section
    assert dom.stdout.count("<img ") == 5

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--hide-scrollbars",
                     "--window-size=1280,5200")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console(done.stderr) == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 100_000           # a page of plots, not a blank one
