"""SessionManager: follow-up rounds exactly as upstream's OnComplete (engine.md §5.7)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from blis_core.gorand import GoRand
from blis_core.request import COMPLETED, QUEUED, TIMED_OUT, Request
from blis_workloads import SessionBlueprint, SessionManager
from blis_workloads.distributions import BlockRand, ConstantSampler


def _blueprint(session_id="s1", *, max_rounds=3, seed=9, prefix=None, horizon=10**9,
               **kw) -> SessionBlueprint:
    return SessionBlueprint(session_id=session_id, client_id="c", max_rounds=max_rounds,
                            think_time_us=1000, horizon=horizon,
                            input_sampler=ConstantSampler(4), output_sampler=ConstantSampler(2),
                            rng=BlockRand(seed), prefix=prefix, tenant_id="t", slo_class="batch",
                            model="m", **kw)


def _done(req: Request, state=COMPLETED) -> Request:
    req.state = state
    req.progress = req.num_input + req.num_output if state == COMPLETED else 0
    return req


def _round0(session_id="s1", n_in=5, n_out=3) -> Request:
    return Request("request_0", 0, np.arange(n_in, dtype=np.int32),
                   np.arange(100, 100 + n_out, dtype=np.int32), n_out, session_id=session_id)


def test_follow_up_fields_and_draw_order():
    sm = SessionManager([_blueprint(prefix=np.array([7, 7], dtype=np.int32))])
    follow = sm.on_complete(_done(_round0()), tick=5000)
    rng = GoRand(9)
    draws = [rng.intn(128000) for _ in range(6)]
    assert follow.id == "session_s1_round_1_1"
    assert (follow.arrival_time, follow.deadline) == (6000, 6000 + 300_000_000)
    assert follow.input_tokens.tolist() == [7, 7] + draws[:4]
    assert follow.output_tokens.tolist() == draws[4:6]
    assert (follow.max_output_len, follow.round_index, follow.session_id) == (2, 1, "s1")
    assert (follow.client_id, follow.tenant_id, follow.slo_class, follow.model) == (
        "c", "t", "batch", "m")
    # Follow-ups carry no prefix group or length and are not streaming.
    assert (follow.prefix_group, follow.prefix_length, follow.streaming) == ("", 0, False)
    assert sm.follow_ups == [follow]


def test_rounds_end_at_max_rounds():
    sm = SessionManager([_blueprint(max_rounds=2)])
    follow = sm.on_complete(_done(_round0()), 10)
    assert follow.round_index == 1
    assert sm.on_complete(_done(follow), 20) is None
    assert sm.sessions["s1"].state == "completed"
    assert sm.on_complete(_done(follow), 30) is None


@pytest.mark.parametrize("state", [TIMED_OUT, QUEUED])
def test_timeout_or_drop_cancels(state):
    sm = SessionManager([_blueprint()])
    assert sm.on_complete(_done(_round0(), state), 10) is None
    assert sm.sessions["s1"].state == "cancelled"


def test_horizon_guard_is_inclusive():
    sm = SessionManager([_blueprint(horizon=2000)])
    assert sm.on_complete(_done(_round0()), 1000).arrival_time == 2000
    sm = SessionManager([_blueprint(horizon=2000)])
    assert sm.on_complete(_done(_round0()), 1001) is None
    assert sm.sessions["s1"].state == "horizon_interrupted"


def test_ids_count_globally_and_budget_caps():
    sm = SessionManager([_blueprint("a"), _blueprint("b")], follow_up_budget=2)
    a1 = sm.on_complete(_done(_round0("a")), 1)
    b1 = sm.on_complete(_done(_round0("b")), 2)
    assert (a1.id, b1.id) == ("session_a_round_1_1", "session_b_round_1_2")
    assert sm.on_complete(_done(a1), 3) is None
    assert sm.sessions["a"].state == "budget_exhausted"
    assert SessionManager([_blueprint()], 0).on_complete(_done(_round0()), 1) is None


def test_unlimited_rounds_continue():
    sm = SessionManager([_blueprint(max_rounds=0, unlimited_rounds=True)])
    req = _done(_round0())
    for k in range(1, 6):
        req = _done(sm.on_complete(req, 10 * k))
        assert req.round_index == k


def test_non_session_and_unknown_session(caplog, monkeypatch):
    # A CLI run earlier in the same process stops the "blis" logger from propagating (its own
    # stderr handler prints instead); caplog listens at the root, so let records through.
    monkeypatch.setattr(logging.getLogger("blis"), "propagate", True)
    sm = SessionManager([_blueprint()])
    assert sm.on_complete(_done(_round0(session_id="")), 1) is None
    with caplog.at_level(logging.WARNING, logger="blis.workload"):
        assert sm.on_complete(_done(_round0(session_id="zz")), 1) is None
    assert "not found in sessions" in caplog.text


def test_accumulate_context_uses_actual_output_and_repeats_the_prefix():
    prefix = np.array([9, 9], dtype=np.int32)
    sm = SessionManager([_blueprint(prefix=prefix, context_growth="accumulate")])
    r0 = Request("request_0", 0, np.array([9, 9, 1, 2], dtype=np.int32),
                 np.array([50, 51, 52], dtype=np.int32), 3, session_id="s1")
    r0.state, r0.progress = COMPLETED, 4 + 2       # length-capped: 2 of 3 outputs generated
    r1 = sm.on_complete(r0, 100)
    ctx1 = [9, 9, 1, 2, 50, 51]
    new1 = r1.input_tokens.tolist()[2 + len(ctx1):]
    assert r1.input_tokens.tolist() == [9, 9] + ctx1 + new1 and len(new1) == 4
    r1.state, r1.progress = COMPLETED, r1.num_input + r1.num_output
    r2 = sm.on_complete(r1, 200)
    # The context grows by round 1's input beyond len(context) (misaligned by the prefix).
    ctx2 = ctx1 + r1.input_tokens.tolist()[len(ctx1):] + r1.output_tokens.tolist()
    assert r2.input_tokens.tolist()[:2 + len(ctx2)] == [9, 9] + ctx2


def test_blueprints_need_rounds():
    with pytest.raises(ValueError, match="max_rounds=0"):
        SessionManager([_blueprint(max_rounds=0)])


def test_a_follow_ups_key_chain_continues_the_finished_rounds():
    # Without a blueprint prefix, round k+1's prompt starts with round k's whole prompt, so its
    # prefix-cache key chain is seeded with round k's; it must equal the chain computed afresh.
    from blis_core.kvcache import _prompt_chain, prompt_hash_chain

    bp = _blueprint(max_rounds=6, context_growth="accumulate")
    bp.input_sampler = bp.output_sampler = ConstantSampler(7)
    sm = SessionManager([bp])
    req = _round0(n_in=21, n_out=7)
    seeded = 0
    for _ in range(5):
        prompt_hash_chain(req, 4)                 # computed while it was in flight
        nxt = sm.on_complete(_done(req), 0)
        seeded += nxt.chain_seed is not None
        assert prompt_hash_chain(nxt, 4) == _prompt_chain(nxt, 4)
        assert nxt.chain_seed is None             # used once
        req = nxt
    assert seeded == 5
    # With a prefix the prompt does not start with the last one (see the test above): no seed.
    sm = SessionManager([_blueprint(prefix=np.array([9, 9], dtype=np.int32),
                                    context_growth="accumulate")])
    r0 = _round0()
    prompt_hash_chain(r0, 4)
    assert sm.on_complete(_done(r0), 0).chain_seed is None
