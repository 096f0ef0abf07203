"""Named scenarios: ready-made workload specs selected like the presets, ``--workload NAME``.

Each scenario is a workload generator (``name`` + ``to_spec(options)``) registered through the
``blis_workload_generators`` hook, so ``blis plugins list --kind workload`` shows them. The
flags scale it: ``--rate`` is the spec's ``aggregate_rate`` (the rate with every client
active), ``--num-requests`` its ``num_requests`` and ``--seed`` its ``seed``. The scenarios
whose traffic changes over time (diurnal-cycle, load-spike, cache-warmup) lay their on/off
windows over the expected span of the run, the time ``--num-requests`` requests take at the
scenario's mean rate, so they need a positive ``--num-requests``.

The first four are upstream's library scenarios at 4e179804 (``ScenarioBurstyTraffic``,
``ScenarioUnfairTenants``, ``ScenarioPrefixHeavy``, ``ScenarioMixedSLO``) with the same clients,
written with v2 SLO names. ``dump_workload_spec`` writes any spec as YAML that loads back equal,
so ``blis workload export NAME > spec.yaml`` gives a file to edit and run with
``--workload-spec``. docs/workloads.md describes every scenario.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import yaml

from blis_workloads.cli_synthesis import WorkloadOptions, _check_rate
from blis_workloads.spec import (ActiveWindow, ArrivalSpec, ClientSpec, CohortSpec, DistSpec,
                                 LifecycleSpec, MultiTurnSpec, ReasoningSpec, SpikeSpec,
                                 WorkloadError, WorkloadSpec)

__all__ = [
    "SCENARIOS",
    "BurstyTrafficScenario",
    "CacheWarmupScenario",
    "DiurnalCycleScenario",
    "LoadSpikeScenario",
    "MixedSloScenario",
    "MultiTurnChatScenario",
    "PrefixHeavyScenario",
    "Scenario",
    "UnfairTenantsScenario",
    "dump_workload_spec",
    "unstructure_spec",
]


def _gaussian(mean: float, std_dev: float, lo: float, hi: float) -> DistSpec:
    return DistSpec("gaussian", {"mean": float(mean), "std_dev": float(std_dev),
                                 "min": float(lo), "max": float(hi)})


def _exponential(mean: float) -> DistSpec:
    return DistSpec("exponential", {"mean": float(mean)})


def _poisson() -> ArrivalSpec:
    return ArrivalSpec("poisson")


# The chatbot preset's lengths (presets.py), for the scenarios that are about timing.
def _chat_input() -> DistSpec:
    return _gaussian(256, 100, 2, 800)


def _chat_output() -> DistSpec:
    return _gaussian(256, 100, 1, 1024)


class Scenario:
    """Base of the named scenarios: ``clients``/``cohorts`` for the given options."""

    name: ClassVar[str]
    category: ClassVar[str] = "language"

    def to_spec(self, options: WorkloadOptions) -> WorkloadSpec:
        _check_rate(options.rate)
        spec = WorkloadSpec(version="2", seed=options.seed, category=self.category,
                            aggregate_rate=options.rate, num_requests=options.num_requests)
        self.build(spec, options)
        return spec

    def build(self, spec: WorkloadSpec, options: WorkloadOptions) -> None:
        raise NotImplementedError

    def span_us(self, options: WorkloadOptions, mean_share: float) -> int:
        """Expected µs until ``num_requests`` arrive when on average ``mean_share`` of the
        aggregate rate is active."""
        if options.num_requests <= 0:
            raise WorkloadError(f"--num-requests must be > 0 for the {self.name} scenario: it "
                                f"sets the length of the run, got {options.num_requests}")
        return max(int(options.num_requests / (options.rate * mean_share) * 1e6), 1)


# --------------------------------------------------------------------------------------------
# Upstream's library scenarios.

class BurstyTrafficScenario(Scenario):
    """Bursty batch traffic: gamma arrivals with cv 3.5, exponential lengths (upstream)."""

    name = "bursty-traffic"

    def build(self, spec, options):
        spec.clients = [ClientSpec(
            id="bursty-client", tenant_id="tenant-A", slo_class="batch", rate_fraction=1.0,
            arrival=ArrivalSpec("gamma", 3.5), input_distribution=_exponential(512),
            output_distribution=_exponential(256))]


class UnfairTenantsScenario(Scenario):
    """90% bulk batch tenant, 10% streaming critical tenant, both Poisson (upstream)."""

    name = "unfair-tenants"

    def build(self, spec, options):
        spec.clients = [
            ClientSpec(id="low-priority-bulk", tenant_id="tenant-bulk", slo_class="batch",
                       rate_fraction=0.9, arrival=_poisson(),
                       input_distribution=_exponential(1024),
                       output_distribution=_exponential(512)),
            ClientSpec(id="high-priority-realtime", tenant_id="tenant-realtime",
                       slo_class="critical", rate_fraction=0.1, streaming=True,
                       arrival=_poisson(), input_distribution=_gaussian(128, 50, 10, 2048),
                       output_distribution=_exponential(64)),
        ]


class PrefixHeavyScenario(Scenario):
    """80% of requests share the "system-prompt" prefix group (50 tokens), 20% unique (upstream)."""

    name = "prefix-heavy"

    def build(self, spec, options):
        spec.clients = [
            ClientSpec(id="shared-prefix", tenant_id="tenant-A", slo_class="batch",
                       rate_fraction=0.8, prefix_group="system-prompt", arrival=_poisson(),
                       input_distribution=_exponential(256),
                       output_distribution=_exponential(128)),
            ClientSpec(id="unique-prefix", tenant_id="tenant-B", slo_class="standard",
                       rate_fraction=0.2, arrival=_poisson(),
                       input_distribution=_exponential(512),
                       output_distribution=_exponential(256)),
        ]


class MixedSloScenario(Scenario):
    """Critical, standard and batch traffic in 0.33/0.34/0.33 shares, Poisson (upstream)."""

    name = "mixed-slo"

    def build(self, spec, options):
        spec.clients = [
            ClientSpec(id="realtime", tenant_id="tenant-rt", slo_class="critical",
                       rate_fraction=0.33, streaming=True, arrival=_poisson(),
                       input_distribution=_gaussian(64, 20, 10, 256),
                       output_distribution=_exponential(32)),
            ClientSpec(id="interactive", tenant_id="tenant-int", slo_class="standard",
                       rate_fraction=0.34, arrival=_poisson(),
                       input_distribution=_gaussian(256, 100, 32, 2048),
                       output_distribution=_exponential(128)),
            ClientSpec(id="batch", tenant_id="tenant-batch", slo_class="batch",
                       rate_fraction=0.33, arrival=_poisson(),
                       input_distribution=_exponential(1024),
                       output_distribution=_exponential(512)),
        ]


# --------------------------------------------------------------------------------------------
# Scenarios whose load changes over the run.

class DiurnalCycleScenario(Scenario):
    """One day compressed into the run: load follows a cosine from 1/4 of --rate up to --rate."""

    name = "diurnal-cycle"
    slots: ClassVar[int] = 24
    peak_slot: ClassVar[int] = 12
    peak_to_trough: ClassVar[float] = 4.0

    def multiplier(self, slot: int) -> float:
        """Upstream's diurnal formula (cohort ``diurnal``), with run slots for hours."""
        r = self.peak_to_trough
        angle = 2.0 * math.pi * (slot - self.peak_slot) / self.slots
        return (1.0 + math.cos(angle)) / 2.0 * (1.0 - 1.0 / r) + 1.0 / r

    def build(self, spec, options):
        # The cosine averages out over a whole period: the mean share is (1 + 1/r) / 2.
        mean_share = (1.0 + 1.0 / self.peak_to_trough) / 2.0
        slot = max(self.span_us(options, mean_share) // self.slots, 1)
        # Windows gate a constant-rate process on and off: a slot active for a fraction m of
        # its length carries m times the rate.
        windows = [ActiveWindow(h * slot, h * slot + max(int(slot * self.multiplier(h)), 1))
                   for h in range(self.slots)]
        spec.clients = [ClientSpec(
            id="users", tenant_id="tenant-A", slo_class="standard", rate_fraction=1.0,
            arrival=_poisson(), input_distribution=_chat_input(),
            output_distribution=_chat_output(), lifecycle=LifecycleSpec(windows))]


class LoadSpikeScenario(Scenario):
    """Steady load at 1/4 of --rate with a spike to the full --rate from 40% to 60% of the run."""

    name = "load-spike"
    base_share: ClassVar[float] = 0.25
    spike_start: ClassVar[float] = 0.4
    spike_end: ClassVar[float] = 0.6

    def build(self, spec, options):
        spike_share = 1.0 - self.base_share
        span = self.span_us(options, self.base_share
                            + spike_share * (self.spike_end - self.spike_start))
        start = int(span * self.spike_start)
        duration = max(int(span * self.spike_end) - start, 1)
        spec.clients = [ClientSpec(
            id="steady", tenant_id="tenant-A", slo_class="standard",
            rate_fraction=self.base_share, arrival=_poisson(), input_distribution=_chat_input(),
            output_distribution=_chat_output())]
        spec.cohorts = [CohortSpec(
            id="spike", population=1, tenant_id="tenant-A", slo_class="standard",
            rate_fraction=spike_share, arrival=_poisson(), input_distribution=_chat_input(),
            output_distribution=_chat_output(), spike=SpikeSpec(start, duration))]


class CacheWarmupScenario(Scenario):
    """A burst on three shared system prompts opens the run, then mixed traffic at 40% of --rate."""

    name = "cache-warmup"
    warmup: ClassVar[float] = 0.25          # share of the run
    groups: ClassVar[tuple[tuple[str, int], ...]] = (
        ("system-a", 1024), ("system-b", 768), ("system-c", 512))

    def build(self, spec, options):
        # Warm-up clients carry 0.2 of the rate each, the steady ones 0.1 each.
        span = self.span_us(options, 0.6 * self.warmup + 0.4)
        end = max(int(span * self.warmup), 1)
        question = _gaussian(64, 16, 16, 256)
        answer = _exponential(64)
        clients = []
        for i, (group, length) in enumerate(self.groups):
            letter = "abc"[i]
            clients.append(ClientSpec(
                id=f"warmup-{letter}", tenant_id=f"tenant-{letter}", slo_class="standard",
                rate_fraction=0.2, arrival=_poisson(), input_distribution=question,
                output_distribution=answer, prefix_group=group, prefix_length=length,
                lifecycle=LifecycleSpec([ActiveWindow(0, end)])))
        for i, (group, length) in enumerate(self.groups):
            letter = "abc"[i]
            clients.append(ClientSpec(
                id=f"steady-{letter}", tenant_id=f"tenant-{letter}", slo_class="standard",
                rate_fraction=0.1, arrival=_poisson(), input_distribution=question,
                output_distribution=answer, prefix_group=group, prefix_length=length))
        clients.append(ClientSpec(
            id="unique", tenant_id="tenant-unique", slo_class="batch", rate_fraction=0.1,
            arrival=_poisson(), input_distribution=_gaussian(512, 128, 64, 2048),
            output_distribution=_exponential(128)))
        spec.clients = clients


class MultiTurnChatScenario(Scenario):
    """Closed-loop chat sessions of 5 rounds with accumulating context; --rate is session starts."""

    name = "multi-turn-chat"
    category = "reasoning"

    def build(self, spec, options):
        spec.clients = [ClientSpec(
            id="multi-turn-chat", tenant_id="chat-users", slo_class="standard",
            rate_fraction=1.0, streaming=True, arrival=_poisson(),
            input_distribution=_gaussian(128, 30, 32, 512),
            output_distribution=_gaussian(64, 20, 16, 256),
            reasoning=ReasoningSpec(multi_turn=MultiTurnSpec(
                max_rounds=5, think_time_us=500_000, context_growth="accumulate")))]


SCENARIOS: tuple[type[Scenario], ...] = (
    BurstyTrafficScenario, UnfairTenantsScenario, PrefixHeavyScenario, MixedSloScenario,
    DiurnalCycleScenario, LoadSpikeScenario, CacheWarmupScenario, MultiTurnChatScenario)


# --------------------------------------------------------------------------------------------
# Specs back to YAML.

def unstructure_spec(obj: Any) -> Any:
    """A spec model as plain data: fields at their default value are left out, so the result
    holds what the spec declares and nothing the loader would not fill in again."""
    if attrs.has(type(obj)):
        out = {}
        for field in attrs.fields(type(obj)):
            if field.metadata.get("yaml") is False:
                continue
            value = getattr(obj, field.name)
            default = field.default
            if isinstance(default, attrs.Factory):
                default = default.factory()
            if value == default:
                continue
            out[field.name] = unstructure_spec(value)
        return out
    if isinstance(obj, list):
        return [unstructure_spec(item) for item in obj]
    if isinstance(obj, dict):
        return {key: unstructure_spec(value) for key, value in obj.items()}
    return obj


class _SpecDumper(yaml.SafeDumper):
    pass


def dump_workload_spec(spec: WorkloadSpec, header: str = "") -> str:
    """The spec as YAML, in the schema's field order; ``parse_workload_spec`` of the text gives
    an equal spec. ``header`` lines become ``#`` comments at the top."""
    body = yaml.dump(unstructure_spec(spec), Dumper=_SpecDumper, sort_keys=False,
                     default_flow_style=None, width=100, allow_unicode=True)
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + body
