"""Entry point of the research-loop commands (``[project.entry-points.blis] adapters``).

The command classes import their optimizer (gepa, openevolve, distributed) or matplotlib
(``blis report``) only when a command runs, so ``blis --help`` works without the extras
installed.
"""

from blis_adapters.gepa import GEPACommand
from blis_adapters.openevolve import OpenEvolveCommand
from blis_adapters.report import ReportCommand
from blis_adapters.sweep import SweepCommands
from blis_core.hookspecs import hookimpl


@hookimpl
def blis_commands():
    return [SweepCommands, GEPACommand, OpenEvolveCommand, ReportCommand]
