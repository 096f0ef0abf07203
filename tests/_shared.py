"""Locate the read-only reference material (``shared/``) that parity tests compare against.

It lives beside the project checkout (``../shared``); ``BLIS_SHARED_DIR`` overrides that. Tests
that need it skip with a clear reason when it is absent, so the suite still runs elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ENV_VAR = "BLIS_SHARED_DIR"


def shared_dir() -> Path | None:
    """The reference directory, or None when it is not available."""
    configured = os.environ.get(ENV_VAR)
    candidate = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared"
    return candidate if candidate.is_dir() else None


SKIP_REASON = (
    f"reference material not found: set {ENV_VAR} or place the 'shared' directory "
    "beside the project checkout"
)

requires_shared = pytest.mark.skipif(shared_dir() is None, reason=SKIP_REASON)


def read_shared_json(*parts: str) -> Any | None:
    """Parse a JSON file under the reference directory; None when it is not available."""
    base = shared_dir()
    if base is None:
        return None
    path = base.joinpath(*parts)
    return json.loads(path.read_text()) if path.is_file() else None


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``blis ARGV`` in-process: (exit code, stdout, stderr)."""
    from blis_core.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
