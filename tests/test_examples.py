"""Every example under examples/ runs, succeeds, reports, and leaves the repository untouched.

An example is a folder with a ``run.sh`` (run with bash) or a ``main.py``; a new folder is
picked up without editing this file. Each one runs as a user would run it: in a subprocess,
from its own folder, with ``OUT`` pointing at a fresh temporary folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ENTRY_POINTS = ("run.sh", "main.py")
MARKER = "example ok:"
# One example should take a few seconds; a hang must not stall CI.
TIMEOUT_S = 120


def _folders() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _entry(folder: Path) -> Path | None:
    return next((folder / name for name in ENTRY_POINTS if (folder / name).is_file()), None)


def _required_modules(script: Path) -> list[str]:
    """Modules named on ``# requires: a b (a note)`` lines of the script."""
    modules = []
    for line in script.read_text().splitlines():
        match = re.match(r"\s*#\s*requires:\s*([\w. ]+)", line)
        if match:
            modules += match.group(1).split()
    return modules


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def test_there_are_examples_and_each_has_an_entry_point():
    folders = _folders()
    assert len(folders) >= 4
    missing = [f.name for f in folders if _entry(f) is None]
    assert not missing, f"example folders without {' or '.join(ENTRY_POINTS)}: {missing}"


def test_the_examples_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text()
    unlisted = [f.name for f in _folders() if f"`{f.name}/`" not in readme]
    assert not unlisted, f"examples/README.md does not list: {unlisted}"


@pytest.mark.parametrize("folder", _folders(), ids=lambda folder: folder.name)
def test_example_runs(folder: Path, tmp_path: Path):
    script = _entry(folder)
    if script is None:
        pytest.fail(f"examples/{folder.name} has no {' or '.join(ENTRY_POINTS)}")
    absent = [m for m in _required_modules(script) if importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"examples/{folder.name} needs {', '.join(absent)}, which is not installed")

    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out))
    # `blis` and `python` in the scripts must be this interpreter's, not whatever PATH has first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The test is offline and deterministic: the GEPA example uses its stand-in model.
    env.pop("BLIS_REFLECTION_LM", None)
    command = ["bash", script.name] if script.suffix == ".sh" else [sys.executable, script.name]
    before = _snapshot(folder)

    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)

    report = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"examples/{folder.name} exited {proc.returncode}\n{report}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(MARKER), f"no final '{MARKER}' line\n{report}"
    assert lines[-1][len(MARKER):].strip(), f"'{MARKER}' line reports nothing\n{report}"
    assert _snapshot(folder) == before, f"examples/{folder.name} wrote into the repository"
    assert any(out.iterdir()), f"examples/{folder.name} wrote nothing to $OUT"
