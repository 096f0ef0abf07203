"""Token-length presets of ``--workload chatbot|summarization|contentgen|multidoc``.

Upstream reads them from ``defaults.yaml`` (``workloads:``); the built-in table equals upstream's
file at 4e179804 (engine.md §5.3), and ``presets_from_defaults`` reads another defaults file.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

__all__ = ["PRESETS", "PresetLengths", "presets_from_defaults"]


@attrs.frozen
class PresetLengths:
    prefix_tokens: int
    prompt_tokens: int
    prompt_tokens_stdev: int
    prompt_tokens_min: int
    prompt_tokens_max: int
    output_tokens: int
    output_tokens_stdev: int
    output_tokens_min: int
    output_tokens_max: int


PRESETS: Mapping[str, PresetLengths] = {
    "chatbot": PresetLengths(0, 256, 100, 2, 800, 256, 100, 1, 1024),
    "summarization": PresetLengths(0, 4096, 500, 100, 8192, 512, 150, 10, 2048),
    "contentgen": PresetLengths(0, 1024, 150, 10, 2048, 1024, 200, 10, 2048),
    "multidoc": PresetLengths(0, 10240, 1200, 500, 20480, 1536, 300, 50, 4096),
}


def presets_from_defaults(defaults: Mapping[str, Any]) -> dict[str, PresetLengths]:
    """The presets of a parsed ``defaults.yaml``; missing keys are 0 as in upstream's struct."""
    table = defaults.get("workloads") or {}
    return {name: PresetLengths(**{f.name: int(entry.get(f.name, 0) or 0)
                                   for f in attrs.fields(PresetLengths)})
            for name, entry in table.items()}
