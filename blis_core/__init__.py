"""blis_core: the engine of blis and what plugin authors and Python callers need from it."""

from blis_core.config import KVConfig, PolicyConfig, SimulationConfig
from blis_core.evaluation import (AnomalyCounters, Distribution, EvaluationResult, FitnessError,
                                  FitnessResult, RawMetrics, evaluate_result)
from blis_core.hookspecs import hookimpl
from blis_core.instance import BatchConfig
from blis_core.latency import BlackboxLatency, RooflineLatency, TrainedPhysicsLatency, build_latency_model
from blis_core.plugins import PluginError, get_registry
from blis_core.protocols import (AdmissionPolicy, ArrivalProcess, LengthDistribution,
                                 PriorityPolicy, RouterState, RoutingDecision, RoutingPolicy,
                                 RunWorkload, Scheduler, Snapshot, WorkloadGenerator,
                                 WorkloadSource)
from blis_core.request import Request
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_core.runner import PreparedRun, evaluate, prepare_run
from blis_core.simulation import SimulationResult, simulate

__all__ = [
    "AdmissionPolicy", "AnomalyCounters", "ArrivalProcess", "BatchConfig", "BlackboxLatency", "ConfigurationError",
    "Distribution", "EvaluationResult", "FitnessError", "FitnessResult", "KVConfig",
    "LengthDistribution", "PluginError", "PolicyConfig", "PreparedRun", "PriorityPolicy", "RawMetrics", "Request", "RooflineLatency",
    "RouterState", "RoutingDecision", "RoutingPolicy", "RunConfig", "RunWorkload", "Scheduler",
    "SimulationConfig", "SimulationResult", "Snapshot", "TrainedPhysicsLatency", "WorkloadGenerator",
    "WorkloadSource",
    "build_latency_model", "evaluate", "evaluate_result", "get_registry", "hookimpl",
    "prepare_run", "simulate",
]
