"""Several policies on the same arrivals, the same platform and the same seed, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ebbtide.autoscaler import KUBERNETES, LOCAL, Profile, policy_for
from ebbtide.core.errors import EbbtideError
from ebbtide.sim.engine import Simulation, Trace
from ebbtide.sim.oracle import Oracle, ReactiveOracle, candidates
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import Autoscaler, Fixed, Knative, RayServe
from ebbtide.sim.report import Score, score
from ebbtide.sim.view import ScalingPolicy
from ebbtide.sim.workload import Workload
from ebbtide.spec.models import InferenceEndpoint

POLICIES = (
    "ebbtide",
    "ebbtide-objective",
    "hpa",
    "knative-kpa",
    "ray-serve",
    "fixed",
    "oracle",
    "reactive-oracle",
)
"""Every policy a comparison can run, in table order. `ebbtide-objective` is ebbtide with the
platform's objective in the spec (`objective: {percentile: 99, latencyMilliseconds: ...}`);
`reactive-oracle` the oracle without foresight (`ReactiveOracle`), a reference like the
oracle."""
DEFAULT_POLICIES = POLICIES[:-1]
"""What `ebbtide simulate` runs unless told: the reactive oracle is calibrated as the oracle is
(up to ten runs), so it is asked for, or run by the sweep."""

MEETS_OBJECTIVE_PERCENT = 1.0
"""A run meets a p99 objective when at most 1% of its requests are over it."""


def sample_endpoint(max_replicas: int = 40, cpu_target: int | None = None) -> InferenceEndpoint:
    """The endpoint simulated unless one is given: replicas of one core (requests.cpu: 1) and
    no explicit target, so both ebbtide and the HPA hold CPU at the HPA's default 80%
    (`cpu_target` sets one, in percent)."""
    autoscaling: dict[str, int] = {"minReplicas": 1, "maxReplicas": max_replicas}
    if cpu_target is not None:
        autoscaling["targetCPUUtilizationPercentage"] = cpu_target
    return InferenceEndpoint.model_validate(
        {
            "apiVersion": "mlops.example.com/v1",
            "kind": "InferenceEndpoint",
            "metadata": {"name": "sample"},
            "spec": {
                "model": {"name": "sample", "version": "v1"},
                "autoscaling": autoscaling,
                "resources": {"requests": {"cpu": "1"}},
            },
        }
    )


def with_objective(endpoint: InferenceEndpoint, latency: float) -> InferenceEndpoint:
    """The endpoint with a p99 latency objective of `latency` seconds (unless it sets one)."""
    if endpoint.spec.autoscaling.objective is not None:
        return endpoint
    document = endpoint.manifest()
    objective = {"percentile": 99, "latencyMilliseconds": latency * 1000}
    document["spec"]["autoscaling"]["objective"] = objective
    return InferenceEndpoint.model_validate(document)


@dataclass(frozen=True)
class Comparison:
    """The outcome: per policy, its score and what happened."""

    workload: Workload
    platform: Platform
    results: tuple[tuple[Score, Trace], ...]
    oracle_utilization: float | None

    @property
    def scores(self) -> tuple[Score, ...]:
        return tuple(s for s, _ in self.results)

    def score_of(self, policy: str) -> Score | None:
        return next((s for s in self.scores if s.policy == policy), None)


def compare(
    workload: Workload,
    endpoint: InferenceEndpoint,
    platform: Platform,
    seed: int = 0,
    policies: Sequence[str] = DEFAULT_POLICIES,
    fixed: int | None = None,
    oracle_utilization: float | None = None,
    profile: Profile = LOCAL,
) -> Comparison:
    """Run each policy on the workload. Every policy starts with the replicas the oracle gives
    the first seconds (a warm start), except the fixed fleet, which has its size all along."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise EbbtideError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    autoscaling = endpoint.spec.autoscaling
    low, high = max(1, autoscaling.min_replicas), autoscaling.max_replicas
    oracle, oracle_trace = calibrated_oracle(
        workload, platform, seed, low, high, oracle_utilization
    )
    start = oracle.initial
    results: list[tuple[Score, Trace]] = []
    for name in policies:
        if name == "oracle":
            results.append((score("oracle", oracle_trace, platform), oracle_trace))
            continue
        if name == "reactive-oracle":
            _, reactive_trace = calibrated_oracle(
                workload, platform, seed, low, high, oracle_utilization, ReactiveOracle
            )
            results.append((score(name, reactive_trace, platform), reactive_trace))
            continue
        policy = _policy(name, endpoint, platform, profile, fixed or oracle.peak, low, high)
        initial = fixed or oracle.peak if name == "fixed" else start
        trace = Simulation(workload, policy, platform, initial, seed).run()
        results.append((score(policy.name, trace, platform), trace))
    return Comparison(workload, platform, tuple(results), oracle.utilization)


def _policy(
    name: str,
    endpoint: InferenceEndpoint,
    platform: Platform,
    profile: Profile,
    fixed: int,
    low: int,
    high: int,
) -> ScalingPolicy:
    if name == "ebbtide":
        return Autoscaler("ebbtide", policy_for(endpoint, profile))
    if name == "ebbtide-objective":
        return Autoscaler(name, policy_for(with_objective(endpoint, platform.objective), profile))
    if name == "hpa":
        return Autoscaler("hpa", policy_for(endpoint, KUBERNETES))
    if name == "knative-kpa":
        return Knative(platform.concurrency, low, high)
    if name == "ray-serve":
        return RayServe(low, high)
    return Fixed(fixed)


def calibrated_oracle(
    workload: Workload,
    platform: Platform,
    seed: int,
    low: int,
    high: int,
    utilization: float | None,
    kind: type[Oracle] = Oracle,
) -> tuple[Oracle, Trace]:
    """The highest utilization whose run of the oracle (`kind`: the clairvoyant one, or the
    reactive one) meets the objective; the lowest tried when none does."""
    tried: tuple[Oracle, Trace] | None = None
    for level in candidates(utilization):
        oracle = kind(workload, platform, level, low, high)
        trace = Simulation(workload, oracle, platform, oracle.initial, seed).run()
        tried = (oracle, trace)
        if score("oracle", trace, platform).over_objective_percent <= MEETS_OBJECTIVE_PERCENT:
            break
    assert tried is not None  # candidates() is never empty
    return tried
