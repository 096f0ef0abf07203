"""blis's own golden runs (``testdata/golden_runs.json``): stdout must not change by a byte.

The file is produced by ``tools/make_testdata.py`` from small deterministic command lines that
need only the shipped catalog (no ``../shared``). A failure here means simulated behavior or
the report format changed. If that was deliberate, regenerate the file with the tool and say
why in the commit; otherwise it is a regression. See ``testdata/README.md``.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path

import pytest

from blis_core.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "testdata" / "golden_runs.json"


def _entries() -> list[dict]:
    return json.loads(GOLDEN.read_text())


ENTRIES = _entries()


@pytest.fixture(autouse=True)
def _quiet_root_logger():
    """Keep ``logging.basicConfig`` in the CLI a no-op (see tests/test_cli.py)."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)


def test_golden_file_is_well_formed():
    assert isinstance(ENTRIES, list) and len(ENTRIES) >= 4
    names = [entry["name"] for entry in ENTRIES]
    assert len(set(names)) == len(names), "duplicate scenario names"
    for entry in ENTRIES:
        assert set(entry) == {"name", "argv", "stdout"}
        assert entry["argv"][0] == "run" and all(isinstance(a, str) for a in entry["argv"])
        assert "=== Simulation Metrics ===" in entry["stdout"]
        # Nothing in the scenarios writes files or reads anything but the shipped catalog.
        for flag in ("--metrics-path", "--trace-output", "--results-path",
                     "--defaults-filepath", "--model-config-folder", "--hardware-config",
                     "--workload-spec"):
            assert flag not in entry["argv"], f"{entry['name']} uses {flag}"


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_golden_run_stdout_is_byte_identical(entry, capsys):
    try:
        main(list(entry["argv"]))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 0, err
    if out != entry["stdout"]:
        diff = "".join(difflib.unified_diff(entry["stdout"].splitlines(keepends=True),
                                            out.splitlines(keepends=True),
                                            "golden", "now", n=1))
        pytest.fail(f"{entry['name']}: stdout changed (blis {' '.join(entry['argv'])}):\n{diff}")
