"""The documentation site builds with no broken link, and its generated CLI reference covers
every command and every ``blis run`` option; the metrics glossary names every reported field.

The expected names come from the click objects and from a real run, never from a list typed
here, so a new command, option or metric field without documentation fails a test.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import click
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The commands the README documents; a plugin that stopped registering one of them would
# otherwise just shrink the set of commands the reference is checked against.
DOCUMENTED_COMMANDS = {"run", "replay", "plugins", "policies", "workload", "sweep",
                       "gepa-evaluate", "openevolve-evaluate", "report"}


def _blis_group() -> click.Group:
    from blis_core import cli

    cli._add_plugin_commands()   # what main() does before dispatching
    return cli.main_group


def _command_paths(command: click.Command, path: str) -> dict[str, click.Command]:
    paths = {path: command}
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            paths.update(_command_paths(sub, f"{path} {name}"))
    return paths


def _section(page: str, heading_id: str) -> str:
    """The HTML from the heading with this id to the next heading of any level."""
    start = page.index(f'id="{heading_id}"')
    following = re.search(r"<h[1-6][ >]", page[start:])
    return page[start:start + following.start()] if following else page[start:]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install \".[docs]\")")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_every_docs_page_is_in_the_site(site):
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert "index" in pages and "tutorial" in pages and "glossary" in pages
    for stem in pages:
        built = site / "index.html" if stem == "index" else site / stem / "index.html"
        assert built.is_file(), f"docs/{stem}.md was not built"


def test_cli_reference_is_generated_not_committed(site):
    assert not (ROOT / "docs" / "cli-reference.md").exists()
    assert (site / "cli-reference" / "index.html").is_file()


def test_cli_reference_names_every_command(site):
    page = (site / "cli-reference" / "index.html").read_text()
    group = _blis_group()
    assert DOCUMENTED_COMMANDS <= set(group.commands)
    paths = _command_paths(group, "blis")
    assert len(paths) > len(DOCUMENTED_COMMANDS)
    for path, command in paths.items():
        heading_id = path.replace(" ", "-")
        assert f'id="{heading_id}"' in page, f"no section for {path!r}"
        section = _section(page, heading_id)
        # The usage line, as click builds it, heads every section.
        pieces = " ".join(command.collect_usage_pieces(click.Context(command)))
        assert html.escape(f"{path} {pieces}", quote=False) in section, path


def test_cli_reference_lists_every_run_option_with_its_default(site):
    page = (site / "cli-reference" / "index.html").read_text()
    run = _blis_group().commands["run"]
    section = _section(page, "blis-run")
    options = [p for p in run.params if isinstance(p, click.Option) and not p.hidden]
    assert len(options) > 20
    for option in options:
        for name in option.opts + option.secondary_opts:
            assert f"<code>{name}</code>" in section, f"blis run {name} is missing"
        if isinstance(option.default, (int, float, str)) and not option.is_flag and option.default != "":
            row = section[section.index(f"<code>{option.opts[0]}</code>"):]
            row = row[:row.index("</tr>")]
            assert f"<code>{html.escape(str(option.default))}</code>" in row, \
                f"blis run {option.opts[0]}: default {option.default!r} not shown"


def test_glossary_names_every_reported_field():
    import blis_core

    config = blis_core.RunConfig.from_args(
        "--model meta-llama/llama-3.1-8b-instruct --num-instances 2 --rate 20 "
        "--num-requests 20 --fitness-weights throughput:1")
    result = blis_core.evaluate(config)
    summary = result.simulation.summary.output(with_requests=True)
    names = set(summary) | set(summary["requests"][0])
    names |= {field.name for field in attrs.fields(type(result.metrics))}
    names |= {field.name for field in attrs.fields(type(result.anomalies))}
    names |= set(blis_core.evaluation.FITNESS_KEYS)
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in glossary)
    assert not missing, f"docs/glossary.md does not name: {missing}"
