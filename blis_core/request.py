"""The request: the one entity that flows from workload generation through the cluster to metrics.

A plain ``__slots__`` class rather than attrs: the engine touches these fields millions of times
per run, and slot access is the cheapest attribute access CPython offers.
"""

from __future__ import annotations

import numpy as np

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
TIMED_OUT = "timed_out"


class Request:
    """One inference request.

    Token ids are kept as numpy int32 arrays (``input_tokens``, ``output_tokens``); ``num_input``
    and ``num_output`` cache their lengths because the engine reads them every step. The oracle
    output length is known in advance, as in upstream BLIS.

    A workload whose requests share a prefix passes it as ``shared_prefix`` and only the rest
    of the prompt as ``input_tokens``: the prompt is joined the first time it is read, so a run
    does not hold one copy of the prefix per request that has not arrived yet. Once a request
    has completed, the instance drops its token ids (:meth:`drop_tokens`).
    """

    __slots__ = (
        # identity and workload metadata
        "id", "arrival_time", "_input", "_prefix", "output_tokens", "num_input", "num_output",
        "max_output_len", "deadline", "session_id", "round_index", "client_id", "tenant_id",
        "slo_class", "prefix_group", "prefix_length", "model", "streaming", "reason_ratio",
        "text_tokens", "image_tokens", "audio_tokens", "video_tokens",
        # engine state
        "state", "progress", "num_new_tokens", "computed", "ttft_set", "first_token_time",
        "itl", "itl_steps", "length_capped", "priority", "assigned_instance", "scheduled_step",
        "finished_step", "blocks", "hash_chain", "tail_chain", "chain_seed", "completion_time", "scheduling_delay", "e2e",
        "itl_mean", "preemptions", "batch_seq", "mirrored", "mirrored_keys",
        "cruising", "cruise_epoch", "cruise_step", "cruise_progress", "tail_step", "tail_fill",
        "first_block_step",
        # P/D: a decode sub-request arrives with its prompt's KV; its first ITL entry is kept
        # for the parent's projected TTFT
        "pd_decode", "first_itl",
        # flow control: when the request joined and left the gateway queue (0 = never)
        "gateway_enqueue_time", "gateway_dispatch_time",
    )

    def __init__(
        self,
        id: str,
        arrival_time: int,
        input_tokens,
        output_tokens,
        max_output_len: int = 0,
        deadline: int = 0,
        *,
        session_id: str = "",
        round_index: int = 0,
        client_id: str = "",
        tenant_id: str = "",
        slo_class: str = "",
        prefix_group: str = "",
        prefix_length: int = 0,
        model: str = "",
        streaming: bool = False,
        reason_ratio: float = 0.0,
        shared_prefix=None,
    ) -> None:
        self.id = id
        self.arrival_time = arrival_time
        self._input = input_tokens
        self._prefix = shared_prefix
        self.output_tokens = output_tokens
        self.num_input = len(input_tokens)
        if shared_prefix is not None:
            self.num_input += len(shared_prefix)
        self.num_output = len(output_tokens)
        self.max_output_len = max_output_len
        self.deadline = deadline
        self.session_id = session_id
        self.round_index = round_index
        self.client_id = client_id
        self.tenant_id = tenant_id
        self.slo_class = slo_class
        self.prefix_group = prefix_group
        self.prefix_length = prefix_length
        self.model = model
        self.streaming = streaming
        self.reason_ratio = reason_ratio
        self.text_tokens = 0
        self.image_tokens = 0
        self.audio_tokens = 0
        self.video_tokens = 0

        self.state = QUEUED
        self.progress = 0               # upstream ProgressIndex: prompt tokens computed + decoded
        self.num_new_tokens = 0         # tokens scheduled for this request in the current step
        self.computed = 0               # upstream's per-request "computed tokens" map entry
        self.ttft_set = False
        self.first_token_time = 0       # the TTFT *duration* in ticks, as upstream names it
        # Per-decode-step latencies, cleared on preemption. Empty ones are the shared (): a run
        # holds every request from the start, and 100k empty lists are 5 MB.
        self.itl = ()
        self.itl_steps = None           # the steps of those entries: [start, end) pairs, flat
        self.length_capped = False
        self.priority = 0.0
        self.assigned_instance = ""
        self.scheduled_step = 0
        self.finished_step = 0
        self.blocks = None              # KV block ids in order; None = no entry in the block map
        self.hash_chain = None          # cached prefix-cache keys of the full prompt blocks
        self.tail_chain = None          # and of the full blocks holding output (_decode_key)
        # The keys of the prompt's first full blocks where another request's chain gives them
        # (a session's next round starts with the finished round's prompt); used once.
        self.chain_seed = None
        self.completion_time = 0        # tick at which the request left (completion or timeout)
        self.scheduling_delay = -1      # last admission tick minus arrival; -1 = never admitted
        self.e2e = 0                    # TTFT + sum of ITL entries (+ fixed overhead), at completion
        self.itl_mean = 0.0             # per-request mean ITL in ticks, at completion
        self.preemptions = 0
        self.batch_seq = 0              # admission order on its instance (= batch order)
        self.mirrored = 0               # blocks the CPU tier's last mirror covered
        self.mirrored_keys = ()         # their prefix-cache keys, in block order (a list once any)
        # Implicit decoding (see Instance.step): from cruise_step on, one token per step.
        self.cruising = False
        self.cruise_epoch = 0           # invalidates scheduled events when cruising stops
        self.cruise_step = 0
        self.cruise_progress = 0
        self.tail_step = 0              # the last block held tail_fill tokens after this step
        self.tail_fill = 0
        self.first_block_step = 0       # (pooled decode blocks) the first step it takes a block
        self.pd_decode = False
        self.first_itl = None
        self.gateway_enqueue_time = 0
        self.gateway_dispatch_time = 0

    @property
    def input_tokens(self):
        prefix = self._prefix
        if prefix is not None:
            self._input = np.concatenate((prefix, self._input))
            self._prefix = None
        return self._input

    @input_tokens.setter
    def input_tokens(self, tokens) -> None:
        self._input = tokens
        self._prefix = None

    def prompt_parts(self) -> tuple:
        """(shared prefix or None, the rest of the prompt), without joining them as
        ``input_tokens`` does: a prefix many requests share can then be hashed once."""
        return self._prefix, self._input

    def drop_tokens(self) -> None:
        """Forget the token ids and prefix-cache keys of a request that has left for good;
        only their lengths (``num_input``, ``num_output``) are reported afterwards."""
        self._input = self._prefix = self.output_tokens = None
        self.hash_chain = self.tail_chain = None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Request({self.id!r}, t={self.arrival_time}, L={self.num_input}, "
                f"O={self.num_output}, state={self.state}, pi={self.progress})")
