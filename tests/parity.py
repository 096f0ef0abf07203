"""Run an upstream reference case through blis and compare every number with upstream's.

A case folder (``../shared/reference/corpus/<case>``) holds the upstream command line, its
stdout and, where used, its metrics or results file. The command runs in-process with the
current directory set to upstream's data root, exactly as upstream's binary was run.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shlex
import sys
from contextlib import redirect_stdout
from pathlib import Path

from _shared import shared_dir

REL_TOL = 1e-9


def corpus_dir() -> Path | None:
    base = shared_dir()
    return None if base is None else base / "reference" / "corpus"


def upstream_dir() -> Path | None:
    base = shared_dir()
    return None if base is None else base / "reference" / "upstream"


def case_argv(case: str, out_dir: Path) -> list[str]:
    """The case's command line as argv for ``blis`` (without the program name)."""
    case_dir = corpus_dir() / case
    text = (case_dir / "cmd.txt").read_text().strip()
    text = text.replace('"$CASE_DIR', f'"{case_dir}').replace('"$OUT_DIR', f'"{out_dir}')
    argv = shlex.split(text)
    assert argv[0] == "blis", f"{case}: unexpected program {argv[0]!r}"
    return argv[1:]


def run_blis(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``blis`` in-process; returns (exit code, stdout)."""
    from blis_core.cli import main

    buffer = io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(buffer):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(previous)
    return code, buffer.getvalue()


def split_sections(stdout: str) -> list[tuple[str, str]]:
    """[(title, body)] in order; titles are the ``=== ... ===`` lines."""
    sections = []
    title = None
    body: list[str] = []
    for line in stdout.splitlines():
        match = re.fullmatch(r"=== (.+) ===", line)
        if match:
            if title is not None:
                sections.append((title, "\n".join(body)))
            title, body = match.group(1), []
        elif title is not None:
            body.append(line)
    if title is not None:
        sections.append((title, "\n".join(body)))
    return sections


def numbers_equal(want, got) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, int) and isinstance(got, int):
        return want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if want == got:
            return True
        scale = max(abs(want), abs(got))
        return not math.isnan(scale) and abs(want - got) <= REL_TOL * scale
    return want == got


def compare_json(want, got, path: str, problems: list[str]) -> None:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            problems.append(f"{path}: expected an object, got {got!r}")
            return
        for key in want:
            if key not in got:
                problems.append(f"{path}.{key}: missing")
            else:
                compare_json(want[key], got[key], f"{path}.{key}", problems)
        for key in got:
            if key not in want:
                problems.append(f"{path}.{key}: unexpected key")
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            problems.append(f"{path}: expected {len(want)} items, got "
                            f"{len(got) if isinstance(got, list) else got!r}")
            return
        for i, (w, g) in enumerate(zip(want, got)):
            compare_json(w, g, f"{path}[{i}]", problems)
    elif not numbers_equal(want, got):
        problems.append(f"{path}: expected {want!r}, got {got!r}")


def compare_stdout(want: str, got: str) -> list[str]:
    problems: list[str] = []
    want_sections = split_sections(want)
    got_sections = split_sections(got)
    want_titles = [t for t, _ in want_sections]
    got_titles = [t for t, _ in got_sections]
    if want_titles != got_titles:
        return [f"sections differ: expected {want_titles}, got {got_titles}"]
    for i, ((title, wbody), (_, gbody)) in enumerate(zip(want_sections, got_sections)):
        if wbody.lstrip().startswith("{"):
            compare_json(json.loads(wbody), json.loads(gbody), f"[{i}] {title}", problems)
        elif wbody.strip() != gbody.strip():
            problems.append(f"[{i}] {title}:\n--- expected\n{wbody}\n--- got\n{gbody}")
    return problems


def compare_records(want: list, got: list, key: str, what: str) -> list[str]:
    problems: list[str] = []
    want_by = {r[key]: r for r in want}
    got_by = {r[key]: r for r in got}
    missing = sorted(set(want_by) - set(got_by), key=str)
    extra = sorted(set(got_by) - set(want_by), key=str)
    if missing:
        problems.append(f"{what}: {len(missing)} records missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{what}: {len(extra)} unexpected records, e.g. {extra[:3]}")
    for k in sorted(set(want_by) & set(got_by), key=str):
        compare_json(want_by[k], got_by[k], f"{what}[{k}]", problems)
        if len(problems) > 20:
            problems.append("... (stopping after 20 differences)")
            break
    return problems


def check_case(case: str, out_dir: Path) -> list[str]:
    """Every difference between blis and upstream on one case (empty when they agree)."""
    case_dir = corpus_dir() / case
    code, stdout = run_blis(case_argv(case, out_dir), upstream_dir())
    if code != 0:
        return [f"blis exited with {code}"]
    problems = compare_stdout((case_dir / "stdout.txt").read_text(), stdout)
    reference = case_dir / "results.json"
    produced = out_dir / "results.json"
    if reference.is_file():
        if not produced.is_file():
            return problems + ["results.json was not written"]
        want = json.loads(reference.read_text())
        got = json.loads(produced.read_text())
        if isinstance(want, list):  # blis replay --results-path
            problems += compare_records(want, got, "request_id", "results")
        else:
            want_requests = want.pop("requests", [])
            got_requests = got.pop("requests", [])
            compare_json(want, got, "metrics", problems)
            problems += compare_records(want_requests, got_requests, "requestID", "requests")
    return problems


def main() -> None:  # pragma: no cover - a debugging aid: python tests/parity.py CASE
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for case in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            problems = check_case(case, Path(tmp))
        print(f"{case}: {'OK' if not problems else 'FAIL'}")
        for p in problems[:30]:
            print("   ", p)


if __name__ == "__main__":  # pragma: no cover
    main()
