"""Event kinds and their fixed priorities.

All events of a run live in one heap of tuples ``(time, lane, priority, seq, kind, payload)``.
``lane`` is -1 for cluster events and the instance index for instance events, so one tuple
comparison reproduces upstream's total order: earliest time first, cluster events before
instance events at the same time, the lowest instance index among instances, then each queue's
own (priority, sequence) order. ``seq`` counters are per lane, as upstream's are per queue.
"""

# The largest tick: the horizon of a run that has none (Go's math.MaxInt64).
MAX_TICK = 2**63 - 1

CLUSTER_LANE = -1

# Cluster events (lane -1): kind == priority.
CLUSTER_ARRIVAL = 0
ADMISSION = 1
ROUTING = 2
# P/D disaggregation (blis_core.disaggregation), in upstream's priority order.
DISAGGREGATION = 3
PREFILL_ROUTING = 4
KV_TRANSFER_START = 5
KV_TRANSFER_DONE = 6
DECODE_ROUTING = 7
# The autoscaler (blis_core.autoscaling); a loaded instance precedes every other event of its
# tick, as upstream's InstanceLoadedEvent (priority -1).
INSTANCE_LOADED = -1
# blis: a provisioned node becomes Ready before its instances load (upstream's priority -2).
NODE_READY = -2
SCALING_TICK = 8
SCALE_ACTUATION = 9

# Instance events. Upstream also queues Scheduled (3) and RequestLeft (4) events that only move
# the instance clock; the instance records their times instead of queueing them.
ARRIVAL = 10
QUEUED = 11
STEP = 12
TIMEOUT = 15

PRIORITY = {
    CLUSTER_ARRIVAL: 0,
    ADMISSION: 1,
    ROUTING: 2,
    DISAGGREGATION: 3,
    PREFILL_ROUTING: 4,
    KV_TRANSFER_START: 5,
    KV_TRANSFER_DONE: 6,
    DECODE_ROUTING: 7,
    INSTANCE_LOADED: -1,
    NODE_READY: -2,
    SCALING_TICK: 8,
    SCALE_ACTUATION: 9,
    ARRIVAL: 0,
    QUEUED: 1,
    STEP: 2,
    TIMEOUT: 5,
}
