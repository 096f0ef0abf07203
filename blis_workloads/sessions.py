"""Closed-loop sessions: the follow-up round of a conversation is created when the previous
round finishes (upstream ``SessionManager``, engine.md §5.7, cluster-policies.md §6.3).

The cluster calls ``SessionManager.on_complete(req, tick)`` whenever a request leaves an
instance: at completion (tick = end of its last step), at its timeout, and when it is dropped
at enqueue. A returned request is injected as a new cluster arrival at its ``arrival_time``.
"""

from __future__ import annotations

import logging

import attrs
import numpy as np

from blis_core.request import QUEUED, TIMED_OUT, Request
from blis_workloads.distributions import MAX_TOKEN_ID, LengthSampler

__all__ = ["DEFAULT_TIMEOUT_US", "SessionBlueprint", "SessionManager", "compute_deadline"]

log = logging.getLogger("blis.workload")

DEFAULT_TIMEOUT_US = 300_000_000    # session clients time out after 300 s unless told otherwise

ACTIVE = "active"
COMPLETED = "completed"
CANCELLED = "cancelled"
HORIZON_INTERRUPTED = "horizon_interrupted"
BUDGET_EXHAUSTED = "budget_exhausted"


def compute_deadline(arrival: int, timeout: int | None, session_client: bool) -> int:
    """Absolute deadline tick: no ``timeout`` → 300 s for session clients, none otherwise;
    ``timeout: 0`` → none; else arrival + timeout."""
    if timeout is None:
        return arrival + DEFAULT_TIMEOUT_US if session_client else 0
    if timeout == 0:
        return 0
    return arrival + timeout


@attrs.define(eq=False)
class SessionBlueprint:
    """Everything needed to generate a session's later rounds; ``rng`` is its own stream."""

    session_id: str
    client_id: str
    max_rounds: int
    think_time_us: int
    horizon: int
    input_sampler: LengthSampler
    output_sampler: LengthSampler
    rng: object                     # a Go-compatible generator (BlockRand)
    prefix: np.ndarray | None = None
    context_growth: str = ""
    timeout: int | None = None
    unlimited_rounds: bool = False
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""


@attrs.define(eq=False)
class _Session:
    blueprint: SessionBlueprint
    current_round: int = 0
    context: np.ndarray | None = None     # accumulated input + output of earlier rounds
    state: str = ACTIVE


class SessionManager:
    """Tracks sessions and produces follow-up rounds.

    ``follow_up_budget`` < 0 means unlimited; otherwise at most that many follow-ups are
    created in total (concurrency clients; 0 allows none). ``follow_ups`` lists every request
    created, in creation order, for the trace export.
    """

    def __init__(self, blueprints: list[SessionBlueprint], follow_up_budget: int = -1) -> None:
        self.sessions: dict[str, _Session] = {}
        for bp in blueprints:
            if bp.max_rounds < 1 and not bp.unlimited_rounds:
                raise ValueError(f"session {bp.session_id} has max_rounds={bp.max_rounds}, "
                                 "must be >= 1")
            self.sessions[bp.session_id] = _Session(bp)
        self.follow_up_budget = follow_up_budget
        self.follow_up_count = 0
        self.id_counter = 0            # global across sessions, part of follow-up ids
        self.follow_ups: list[Request] = []

    def on_complete(self, req: Request, tick: int) -> Request | None:
        """The done-callback: the follow-up request to inject, or None."""
        if not req.session_id:
            return None
        sess = self.sessions.get(req.session_id)
        if sess is None:
            log.warning("SessionManager.OnComplete: request %s has SessionID %r not found in "
                        "sessions — possible blueprint mismatch", req.id, req.session_id)
            return None
        if sess.state != ACTIVE:
            return None
        # A timed-out request, or one still queued (dropped at enqueue), ends the session.
        if req.state == TIMED_OUT or req.state == QUEUED:
            sess.state = CANCELLED
            return None
        bp = sess.blueprint
        if not bp.unlimited_rounds and sess.current_round >= bp.max_rounds - 1:
            sess.state = COMPLETED
            return None
        if 0 <= self.follow_up_budget <= self.follow_up_count:
            sess.state = BUDGET_EXHAUSTED
            return None
        arrival = tick + bp.think_time_us
        if arrival > bp.horizon:
            sess.state = HORIZON_INTERRUPTED
            return None

        rng = bp.rng
        in_len = bp.input_sampler.sample(rng)
        out_len = bp.output_sampler.sample(rng)
        tokens = rng.intn_array(MAX_TOKEN_ID, in_len + out_len)
        new_input, output = tokens[:in_len], tokens[in_len:]
        if bp.context_growth == "accumulate":
            # The context grows by the part of the finished round's input beyond the current
            # context, then by the output actually generated (length-capped rounds stop early).
            # With an explicit prefix_length the input also carries the blueprint prefix, so
            # this slice is misaligned and the prefix repeats (upstream bug #1150, kept).
            actual_out = max(req.progress - req.num_input, 0)
            context = sess.context if sess.context is not None else req.input_tokens[:0]
            parts = [context, req.input_tokens[len(context):]]
            if actual_out > 0 and len(req.output_tokens) > 0:
                parts.append(req.output_tokens[:actual_out])
            sess.context = np.concatenate(parts)
            input_tokens = np.concatenate((sess.context, new_input))
        else:
            input_tokens = new_input
        seeded = bp.context_growth == "accumulate" and req.hash_chain is not None
        if bp.prefix is not None and len(bp.prefix) > 0:
            input_tokens = np.concatenate((bp.prefix, input_tokens))
            seeded = False

        sess.current_round += 1
        self.id_counter += 1
        follow_up = Request(
            f"session_{bp.session_id}_round_{sess.current_round}_{self.id_counter}",
            arrival, input_tokens, output, len(output),
            compute_deadline(arrival, bp.timeout, True),
            session_id=bp.session_id, round_index=sess.current_round, client_id=bp.client_id,
            tenant_id=bp.tenant_id, slo_class=bp.slo_class, model=bp.model)
        if seeded:
            # It starts with the finished round's whole prompt, hence with its key chain (for
            # the run's block size, the only one that chain was computed for).
            follow_up.chain_seed = req.hash_chain
        if self.follow_up_budget >= 0:
            self.follow_up_count += 1
        self.follow_ups.append(follow_up)
        return follow_up
