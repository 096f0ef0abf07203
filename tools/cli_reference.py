"""mkdocs hook: the CLI reference page, rendered from the ``blis`` click group at build time.

The page is a virtual file (``cli-reference.md``) added in ``on_files``, never a file in
``docs/``: every build reads the commands, options, types and defaults from click's own
objects, so the reference cannot drift from ``blis --help``. Plugin commands (``sweep``,
``workload``, ...) are included the way ``blis_core.cli.main`` adds them, so the page shows the
commands of the packages installed where the site is built.

``render_reference()`` is importable on its own (``python tools/cli_reference.py`` prints it).
"""

from __future__ import annotations

import html
import inspect
import re

import click

PAGE = "cli-reference.md"

# Every integer flag of `blis run` is an int64 range (upstream's flag type); printing those
# bounds on each row would hide the ranges that actually constrain something.
_INT64 = (-(2**63), 2**63 - 1)


def blis_group() -> click.Group:
    """The ``blis`` group with its plugin commands, exactly as the console entry point sees it."""
    from blis_core import cli

    cli._add_plugin_commands()
    return cli.main_group


def _unset(value) -> bool:
    # click >= 8.3 marks "no default" with a sentinel rather than None.
    return value is None or value is getattr(click.core, "UNSET", object())


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no HTML, no pipes, no line breaks."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    return "<code>" + _cell(text) + "</code>"


def _prose(text: str) -> str:
    """Help text as Markdown: HTML escaped, emphasis markers kept literal (``--prompt-*``)."""
    return re.sub(r"([*_\[\]])", r"\\\1", html.escape(text, quote=False))


def _help_paragraphs(command: click.Command) -> list[str]:
    text = inspect.cleandoc(command.help or "")
    # click's own conventions: text after \f is for the code only; a \b paragraph keeps its
    # line breaks, so it stays a block here too.
    text = text.split("\f", 1)[0]
    out = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        if not paragraph:
            continue
        if paragraph.startswith("\b"):
            out.append("```text\n" + paragraph.lstrip("\b").strip("\n") + "\n```")
        else:
            out.append(_prose(" ".join(paragraph.split())))
    return out


def _type_name(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        name = "flag"
    elif isinstance(kind, click.Choice):
        name = "choice: " + ", ".join(str(choice) for choice in kind.choices)
    elif isinstance(kind, (click.IntRange, click.FloatRange)):
        base = "integer" if isinstance(kind, click.IntRange) else "float"
        if (kind.min, kind.max) == _INT64:
            name = base
        else:
            low = "" if kind.min is None else f"{kind.min} {'<' if kind.min_open else '≤'} "
            high = "" if kind.max is None else f" {'<' if kind.max_open else '≤'} {kind.max}"
            name = f"{base}, {low}x{high}"
    else:
        name = kind.name
    if param.multiple:
        name += " (repeatable)"
    return name


def _default(param: click.Parameter) -> str:
    default = param.default
    if callable(default):
        return "(computed)"
    if not param.expose_value:
        return ""  # --help and the like: an action, not a setting
    if _unset(default) or (param.multiple and not default):
        return ""
    if isinstance(param, click.Option) and param.is_flag:
        return "on" if default else "off"
    if isinstance(default, str):
        return _code(default) if default else _code('""')
    return _code(default)


def _names(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return _code(param.human_readable_name)
    # Short names first, as --help prints them ("-j, --jobs").
    names = sorted([*param.opts, *param.secondary_opts], key=lambda n: len(n) - len(n.lstrip("-")))
    return ", ".join(_code(name) for name in names)


def _options_table(command: click.Command, ctx: click.Context) -> list[str]:
    # get_params includes the help option click adds, so the table matches --help.
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [p for p in params if isinstance(p, click.Argument)]
    options = [p for p in params if isinstance(p, click.Option)]
    lines = []
    if arguments:
        lines += ["**Arguments**", "", "| argument | type | required |", "|---|---|---|"]
        lines += [f"| {_names(p)} | {_cell(_type_name(p))} | {'yes' if p.required else 'no'} |"
                  for p in arguments]
        lines.append("")
    if options:
        lines += ["**Options**", "", "| option | type | default | help |", "|---|---|---|---|"]
        for p in options:
            help_text = _cell(p.help or "")
            if p.required:
                help_text = "**required.** " + help_text
            lines.append(f"| {_names(p)} | {_cell(_type_name(p))} | {_default(p)} | {help_text} |")
        lines.append("")
    return lines


def _command_section(command: click.Command, ctx: click.Context, depth: int) -> list[str]:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = ["#" * depth + " " + ctx.command_path, "", "```text", usage, "```", ""]
    for paragraph in _help_paragraphs(command):
        lines += [paragraph, ""]
    if isinstance(command, click.Group):
        lines += ["| command | what |", "|---|---|"]
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            anchor = _anchor(f"{ctx.command_path} {name}")
            lines.append(f"| [{_cell(name)}](#{anchor}) | {_cell(sub.get_short_help_str(1000))} |")
        lines.append("")
    lines += _options_table(command, ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            sub_ctx = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
            lines += _command_section(sub, sub_ctx, min(depth + 1, 4))
    return lines


def _anchor(title: str) -> str:
    # GitHub's heading ids, which mkdocs.yml makes the toc extension use too.
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def render_reference(group: click.Group | None = None) -> str:
    group = group or blis_group()
    # context_settings carry help_option_names (-h as well as --help), as make_context applies.
    ctx = click.Context(group, info_name="blis", **group.context_settings)
    lines = ["# CLI reference", "",
             "Generated from the click commands when the site is built (`tools/cli_reference.py`), "
             "so it lists exactly what `blis --help` shows, plugin commands of the installed "
             "packages included. [cli.md](cli.md) explains the flags, outputs and errors.", ""]
    lines += _command_section(group, ctx, depth=2)
    return "\n".join(lines).rstrip("\n") + "\n"


# -- mkdocs hooks ---------------------------------------------------------------------------
def on_files(files, config):
    from mkdocs.structure.files import File

    if files.get_file_from_path(PAGE) is not None:
        raise RuntimeError(f"docs/{PAGE} exists, but that page is generated: delete the file")
    files.append(File.generated(config, PAGE, content=render_reference()))
    return files


if __name__ == "__main__":
    print(render_reference(), end="")
