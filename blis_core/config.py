"""Configuration models of a simulation run (everything except the workload).

The CLI turns flags into these objects; Python callers build them directly. All are frozen:
a run never mutates its configuration.
"""

from __future__ import annotations

import attrs

from blis_core.autoscaling import AutoscalerConfig, InstanceLifecycle
from blis_core.decisions import TraceConfig
from blis_core.disaggregation import PDConfig
from blis_core.events import MAX_TICK
from blis_core.flowcontrol import FlowControlConfig
from blis_core.instance import BatchConfig

__all__ = ["MAX_TICK", "KVConfig", "PolicyConfig", "SimulationConfig"]


def _positive(instance, attribute, value) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _non_negative(instance, attribute, value) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class KVConfig:
    """KV-cache geometry of one instance; ``cpu_blocks > 0`` adds the CPU tier."""

    total_blocks: int = attrs.field(default=1_000_000, validator=_positive)
    block_size: int = attrs.field(default=16, validator=_positive)
    cpu_blocks: int = attrs.field(default=0, validator=_non_negative)
    transfer_bandwidth: float = 100.0
    transfer_base_latency: int = attrs.field(default=0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.cpu_blocks > 0 and not self.transfer_bandwidth > 0:
            raise ValueError("transfer_bandwidth must be > 0 when cpu_blocks > 0")


@attrs.frozen
class PolicyConfig:
    """Which plugin serves each policy kind, by name, with its parameters."""

    admission: str = "always-admit"
    routing: str = "round-robin"
    priority: str = "constant"
    scheduler: str = "fcfs"
    admission_params: dict = attrs.field(factory=dict)
    routing_params: dict = attrs.field(factory=dict)


@attrs.frozen
class SimulationConfig:
    """Everything that defines a run besides its requests."""

    latency: object                      # a latency model (blis_core.latency)
    batch: BatchConfig = BatchConfig()
    kv: KVConfig = KVConfig()
    policies: PolicyConfig = PolicyConfig()
    num_instances: int = attrs.field(default=1, validator=_positive)
    horizon: int = attrs.field(default=MAX_TICK, validator=_positive)
    seed: int = 42
    admission_latency: int = attrs.field(default=0, validator=_non_negative)
    routing_latency: int = attrs.field(default=0, validator=_non_negative)
    model: str = ""
    # Router observability (upstream --snapshot-refresh-interval, --cache-signal-delay): 0 means
    # routers see live values; > 0 means snapshot fields, resp. the prefix-cache maps that
    # cache-aware scorers query, are refreshed at most that often (ticks).
    snapshot_refresh_interval: int = attrs.field(default=0, validator=_non_negative)
    cache_signal_delay: int = attrs.field(default=50_000, validator=_non_negative)
    # Tenant budgets: tenant -> share of the cluster's running slots (None: no tracking).
    tenant_budgets: dict | None = None
    slo_priorities: dict | None = None    # overrides of the SLO priority map
    trace: TraceConfig = TraceConfig()    # the decision trace (off by default)
    pd: PDConfig | None = None            # prefill/decode pools (None: every instance serves all)
    flow_control: FlowControlConfig | None = None   # the gateway queue (None: off)
    # Time-series sampling (blis_core.timeseries): simulated ticks between samples; 0 = off.
    sample_interval: int = attrs.field(default=0, validator=_non_negative)
    hardware: str = ""                    # the GPU an instance without node pools reports
    tp: int = 1                           # GPUs one instance takes on a node pool
    node_pools: tuple = ()                # infrastructure.NodePoolSpec values (empty: no pools)
    autoscaler: AutoscalerConfig | None = None
    # How added instances come up and drained ones go (autoscaling.InstanceLifecycle).
    lifecycle: InstanceLifecycle = InstanceLifecycle()
