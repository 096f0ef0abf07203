import gc
import weakref

import pytest

from blis_core.collector import RELAXED_THRESHOLD, collector_paused, collector_relaxed


class _Node:
    pass


def _cycle():
    node = _Node()
    node.self = node
    return weakref.ref(node)


@pytest.fixture
def restore_gc():
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    gc.enable() if enabled else gc.disable()


def test_relaxed_restores_the_collector_after_nested_uses(restore_gc):
    gc.set_threshold(700, 10, 10)
    with collector_relaxed():
        assert gc.get_threshold() == (RELAXED_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
        with collector_relaxed():
            pass
        assert gc.get_threshold() == (RELAXED_THRESHOLD, 10, 10)  # the outer use still holds
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_relaxed_restores_the_collector_when_the_phase_fails(restore_gc):
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError):
        with collector_relaxed():
            raise RuntimeError("a policy failed")
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_relaxed_keeps_a_switched_off_threshold_off(restore_gc):
    gc.set_threshold(0)
    with collector_relaxed():
        assert gc.get_threshold()[0] == 0


def test_relaxed_still_frees_cycles_made_inside(restore_gc):
    gc.set_threshold(700, 10, 10)
    gc.enable()
    with collector_relaxed():
        dead = _cycle()
        kept = [[] for _ in range(3 * RELAXED_THRESHOLD)]  # enough allocations for a pass
        assert dead() is None
    assert kept


def test_paused_collects_nothing_and_restores(restore_gc):
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
        dead = _cycle()
        kept = [[] for _ in range(3 * RELAXED_THRESHOLD)]
        assert dead() is not None
    assert gc.isenabled() and kept
