"""A gateway dispatch order for flow control: the shortest prompt leaves the queue first."""

from __future__ import annotations


class ShortestPromptFirst:
    """Dispatch the queued request with the shortest prompt first (ties: first come)."""

    name = "shortest-prompt"

    def key(self, request, priority: int) -> int:
        # Short prompts prefill quickly, so holding them back costs the most TTFT per token.
        return request.num_input
