"""GEPA evolves a routing policy bundle for blis, in a handful of metric calls.

The reflection model is a real language model when BLIS_REFLECTION_LM names a LiteLLM model
(for example openai/gpt-4.1-mini, with the provider's key in its usual variable); otherwise a
deterministic stand-in proposes fixed bundles, so the example runs offline and in CI.
GEPA's state (run_dir) goes to $OUT, or to a fresh temporary folder.

    python main.py
"""

# requires: gepa

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import gepa

import blis_core
from blis_adapters.gepa import BlisGEPAAdapter, Workload, reflection_prompt

# Two loads the policy should be good at; small, so that every metric call takes a moment.
BASE = "--model meta-llama/llama-3.1-8b-instruct --num-instances 4 --num-requests 150"


def workloads() -> list[Workload]:
    return [Workload("steady", blis_core.RunConfig.from_args(BASE + " --rate 20")),
            Workload("busy", blis_core.RunConfig.from_args(BASE + " --rate 40"))]


# A deliberately bad start (every request to the busiest instance), so that there is
# something to improve.
SEED = {"routing": "policy: always-busiest"}


class StandInReflectionLM:
    """Proposes the next routing section of a fixed list, whatever the prompt says."""

    PROPOSALS = [
        "policy: least-loaded",
        "policy: weighted\nscorers:\n  - {name: queue-depth, weight: 2.0}\n"
        "  - {name: kv-utilization, weight: 1.0}",
    ]

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        proposal = self.PROPOSALS[min(self.calls, len(self.PROPOSALS) - 1)]
        self.calls += 1
        # GEPA takes the new text from the reply's ``` block, as from a real model.
        return f"A better routing section:\n```\n{proposal}\n```"


def main() -> None:
    # The catalog-default warnings repeat for every run description; the API sends them to
    # the "blis" logger (--log is a CLI flag), so quieten that before building any.
    logging.getLogger("blis").setLevel(logging.ERROR)
    model = os.environ.get("BLIS_REFLECTION_LM", "")
    if model:
        reflection_lm = model
        print(f"reflection LM: {model} (through LiteLLM)")
    else:
        reflection_lm = StandInReflectionLM()
        print("reflection LM: a deterministic stand-in that proposes fixed bundles "
              "(set BLIS_REFLECTION_LM to a LiteLLM model name for a real one)")

    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="blis-gepa-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    adapter = BlisGEPAAdapter("throughput:0.5,p99_ttft:0.5", slo_ttft_ms=50)
    tasks = workloads()
    result = gepa.optimize(
        seed_candidate=SEED, trainset=tasks, valset=tasks, adapter=adapter,
        reflection_lm=reflection_lm, reflection_prompt_template=reflection_prompt(),
        reflection_minibatch_size=2, max_metric_calls=12, run_dir=str(out / "gepa-run"),
        seed=0, display_progress_bar=False)

    seed_score = result.val_aggregate_scores[0]
    best_score = result.val_aggregate_scores[result.best_idx]
    print(f"candidates tried: {len(result.candidates)}, workload runs: {adapter.evaluations}")
    print(f"seed score {seed_score:.6f}, routing:\n  " + SEED["routing"].replace("\n", "\n  "))
    print(f"best score {best_score:.6f}, routing:\n  "
          + result.best_candidate["routing"].replace("\n", "\n  "))
    print(f"GEPA state in {out / 'gepa-run'}")
    print(f"example ok: gepa: best score {best_score:.6f} (seed {seed_score:.6f})")


if __name__ == "__main__":
    main()
