"""A run described the way ``blis run`` describes it, for Python callers.

``RunConfig`` holds ``blis run`` arguments, so a script, a notebook and the command line share one
set of flags, defaults and validation rules; :func:`blis_core.evaluate` runs one under a policy
bundle. Arguments are validated when the config is built, and the workload is generated afresh
for every run (the engine consumes the requests it is given).
"""

from __future__ import annotations

import shlex
from typing import Sequence

import attrs
import click

from blis_core.plugins import PluginError


class ConfigurationError(ValueError):
    """A configuration ``blis run`` would refuse; the message is the CLI's one-line error."""


@attrs.frozen
class RunConfig:
    """``blis run`` arguments, e.g. ``RunConfig.from_args("--model meta-llama/llama-3.1-8b-instruct
    --rate 40 --num-requests 500")``."""

    args: tuple[str, ...]

    @classmethod
    def from_args(cls, args: str | Sequence[str]) -> "RunConfig":
        if isinstance(args, str):
            args = shlex.split(args)
        config = cls(tuple(str(a) for a in args))
        config.prepare()            # refuse bad flags now, not at the first evaluation
        return config

    def prepare(self, bundle=None):
        """The validated run (a :class:`blis_core.cli.PreparedRun`) with a freshly generated
        workload; ``bundle`` (a path or a loaded PolicyBundle) stands in for
        ``--policy-config``."""
        from blis_core import cli
        from blis_core.bundle import BundleError, load_bundle

        args = list(self.args)
        try:
            if isinstance(bundle, (str, bytes)) or hasattr(bundle, "__fspath__"):
                bundle = load_bundle(str(bundle))
            ctx = cli.run_command.make_context("run", args)
            return cli.prepare_run(ctx, dict(ctx.params), bundle)
        except BundleError as exc:
            raise ConfigurationError(f"bundle: {exc}") from None
        except click.ClickException as exc:
            raise ConfigurationError(exc.format_message().splitlines()[0]) from None
        except (cli.UsageError, PluginError) as exc:
            raise ConfigurationError(str(exc)) from None
