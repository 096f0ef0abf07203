"""Entry point of the research-loop commands (``[project.entry-points.blis] adapters``)."""

from blis_adapters.sweep import SweepCommands
from blis_core.hookspecs import hookimpl


@hookimpl
def blis_commands():
    return [SweepCommands]
