"""One simulated run: a policy against a workload on a device, and the comparisons that give it meaning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.calibration import fit_calibration
from simulator.exit_metric import LOGISTIC_METRICS
from simulator.des import DesResult, run_des
from simulator.device import DeviceModel
from simulator.engines import BranchyEngine, DeepCacheEngine, Engine, NoCacheEngine
from simulator.foggycache import FoggyCacheEngine
from simulator.metrics import compute_metrics
from simulator.policy import MetricConfig, Policy, check_policy
from simulator.presets import default_adaptation, default_cache
from simulator.smtm import SmtmEngine
from simulator.workload import Workload


@dataclass
class RunResult:
    policy: Policy  # as run (calibration filled in)
    enabled: tuple[str, ...]
    engine: Engine
    des: DesResult
    metrics: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(policy: Policy, workload: Workload, device: DeviceModel, calibration: Workload | None,
            where: str | None = None) -> tuple[Policy, tuple[str, ...]]:
    """Check the policy against the device and fill in what it leaves to the data (calibration)."""
    enabled = check_policy(policy, device.exits, tuple(device.processors), where)
    if policy.kind == "smtm" and policy.metric.kind in LOGISTIC_METRICS and policy.metric.calibration is None:
        if calibration is None:
            from engram.errors import EngramError

            raise EngramError(f"the {policy.metric.kind} exit metric needs calibration data: give a calibration trace "
                              "(recorded with the same model, not the trace being replayed)")
        table = fit_calibration(calibration, device, policy, enabled)
        policy = policy.model_copy(update={"metric": MetricConfig(
            kind=policy.metric.kind, thresholds=policy.metric.thresholds, calibration=table)})
    return policy, enabled


def make_engine(workload: Workload, device: DeviceModel, policy: Policy, enabled: tuple[str, ...],
                chunk: int | None = None) -> Engine:
    k = policy.kind
    if k == "no-cache":
        return NoCacheEngine(workload, device, policy, enabled)
    if k == "branchy":
        return BranchyEngine(workload, device, policy, enabled)
    if k == "deepcache":
        return DeepCacheEngine(workload, device, policy, enabled)
    if k == "foggycache":
        return FoggyCacheEngine(workload, device, policy, enabled, chunk=chunk)
    if k in ("smtm", "oracle"):
        return SmtmEngine(workload, device, policy, enabled, oracle=(k == "oracle"), chunk=chunk)
    raise ValueError(k)


def run_once(workload: Workload, device: DeviceModel, policy: Policy, enabled: tuple[str, ...],
             chunk: int | None = None) -> RunResult:
    engine = make_engine(workload, device, policy, enabled, chunk)
    des = run_des(workload.arrival_s, engine.serve, policy.queue)
    proc = device.processor(policy.processor)
    metrics = compute_metrics(engine, des, workload, device, proc.idle_mw)
    return RunResult(policy, enabled, engine, des, metrics)


def oracle_for(policy: Policy) -> Policy:
    """The oracle with the policy's own cache (or the default cache for policies without one)."""
    cache = policy.cache or default_cache()
    adaptation = policy.adaptation if policy.cache is not None else default_adaptation()
    return Policy(name=f"oracle[{policy.name}]", kind="oracle", processor=policy.processor, exits=policy.exits,
                  cache=cache, adaptation=adaptation, queue=policy.queue, input_reuse=policy.input_reuse)


def simulate(workload: Workload, device: DeviceModel, policy: Policy, calibration: Workload | None = None,
             baseline: RunResult | None = None, where: str | None = None, chunk: int | None = None,
             with_oracle: bool = True) -> RunResult:
    """Run ``policy`` and relate it to plain inference and to the oracle on the same trace and device."""
    policy, enabled = resolve(policy, workload, device, calibration, where)
    result = run_once(workload, device, policy, enabled, chunk)
    if baseline is None:
        plain = Policy(name="no-cache", kind="no-cache", processor=policy.processor, queue=policy.queue)
        baseline = run_once(workload, device, plain, check_policy(plain, device.exits, tuple(device.processors)))
    m = result.metrics
    m["speedup"] = baseline.metrics["mean_latency_ms"] / m["mean_latency_ms"] if m["mean_latency_ms"] else 0.0
    m["accuracy_loss_pt"] = (baseline.metrics["accuracy"] - m["accuracy"]) * 100.0
    m["baseline_mean_latency_ms"] = baseline.metrics["mean_latency_ms"]
    m["baseline_accuracy"] = baseline.metrics["accuracy"]
    if with_oracle:
        if policy.kind == "oracle":
            oracle_speedup = m["speedup"]
        else:
            o = oracle_for(policy)
            ores = run_once(workload, device, o, check_policy(o, device.exits, tuple(device.processors)), chunk)
            oracle_speedup = baseline.metrics["mean_latency_ms"] / ores.metrics["mean_latency_ms"]
        m["oracle_speedup"] = oracle_speedup
        m["oracle_share"] = m["speedup"] / oracle_speedup if oracle_speedup else 0.0
    m["policy"] = policy.name
    m["kind"] = policy.kind
    return result
