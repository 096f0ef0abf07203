"""The evaluation file to give OpenEvolve: blis_adapters.openevolve's evaluator, re-exported.

OpenEvolve puts the folder of its evaluation file first on sys.path. Given
blis_adapters/openevolve.py itself, it would put blis_adapters/ there, where that file would
shadow the ``openevolve`` package in every process started afterwards with ``spawn``
(OpenEvolve's own workers, when ``max_tasks_per_child`` is set). This folder shadows nothing.
"""

from blis_adapters.openevolve import evaluate, evaluate_stage1, evaluate_stage2, load_settings

__all__ = ["evaluate", "evaluate_stage1", "evaluate_stage2"]

# A broken BLIS_OE_CONFIG stops OpenEvolve when it loads this file, instead of scoring every
# candidate 0 with the same complaint.
load_settings()
