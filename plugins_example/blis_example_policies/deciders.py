"""A P/D disaggregation decider: split only the requests whose prompt is long."""

from __future__ import annotations


class LongPrompt:
    """Disaggregate requests whose prompt has at least `threshold` tokens."""

    name = "long-prompt"

    # blis passes --pd-prefix-threshold as `threshold` to a decider whose constructor takes it.
    def __init__(self, threshold: int = 1024) -> None:
        self.threshold = threshold

    def decide(self, request) -> bool:
        # Prefill of a short prompt is cheap next to the KV transfer it would cost.
        return request.num_input >= self.threshold
