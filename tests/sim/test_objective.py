"""The simulator's ebbtide policy with a latency objective: the view carries the latency
buckets of completed requests, so the real `decide` sees the objective as it would locally."""

from __future__ import annotations

import random

from ebbtide.autoscaler import LOCAL, policy_for
from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.sim.engine import Simulation
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import Autoscaler, Fixed
from ebbtide.sim.workload import Workload
from tests.autoscaler.builders import endpoint, pods_metric


def poisson(rate: float, work: float, seconds: float, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    arrivals: list[float] = []
    now = rng.expovariate(rate)
    while now < seconds:
        arrivals.append(now)
        now += rng.expovariate(rate)
    return Workload("poisson", tuple(arrivals), (work,) * len(arrivals), seconds)


def test_the_view_counts_completed_requests_into_the_gateways_buckets() -> None:
    # Three requests of 18 ms, apart: each answered in the (15 ms, 20 ms] bucket.
    workload = Workload("hand", (0.0, 1.0, 2.0), (0.018, 0.018, 0.018), 3.0)
    simulation = Simulation(workload, Fixed(1), Platform(), 1)
    simulation.run()
    assert simulation.latency_counts[LATENCY_BOUNDS.index(0.02)] == 3
    assert sum(simulation.latency_counts) == 3


def test_an_objective_the_target_alone_misses_adds_replicas() -> None:
    # 40 requests/s of 20 ms on one core: 80% busy, so queueing puts the p99 far above 50 ms,
    # while a concurrency target of 100 never asks for a second replica.
    workload = poisson(rate=40, work=0.02, seconds=30)
    platform = Platform(start_time=0.5, concurrency=100)

    def peak(**objective: float) -> tuple[int, float]:
        spec = endpoint(
            max_replicas=8,
            metrics=[pods_metric("concurrency", 100)],
            **({"objective": objective} if objective else {}),
        )
        trace = Simulation(workload, Autoscaler("ebbtide", policy_for(spec, LOCAL)), platform, 1)
        result = trace.run()
        late = sorted(result.latencies)[int(0.99 * len(result.latencies))]
        return max(count for _, count in result.replica_changes), late

    plain_peak, plain_p99 = peak()
    objective_peak, objective_p99 = peak(percentile=99, latencyMilliseconds=50)
    assert plain_peak == 1
    assert plain_p99 > 0.05
    assert objective_peak >= 2
    assert objective_p99 < plain_p99


def test_the_objective_holds_once_met_instead_of_flapping() -> None:
    # The run above, 30 s: before the objective learned a load it went 1 → 5 → 8 → 4 → 1 → 8
    # and its p99 after the first 10 s (68 ms) still missed 50 ms. With the learned floor it
    # never falls back to the one replica that missed, and the rest of the run meets it.
    workload = poisson(rate=40, work=0.02, seconds=30)
    platform = Platform(start_time=0.5, concurrency=100)
    spec = endpoint(
        max_replicas=8,
        metrics=[pods_metric("concurrency", 100)],
        objective={"percentile": 99, "latencyMilliseconds": 50},
    )
    result = Simulation(workload, Autoscaler("ebbtide", policy_for(spec, LOCAL)), platform, 1).run()
    raised = next(t for t, count in result.replica_changes if count > 1)
    assert min(count for t, count in result.replica_changes if t >= raised) >= 2
    later = sorted(
        latency for at, latency in zip(workload.arrivals, result.latencies, strict=True) if at >= 10
    )
    assert later[int(0.99 * len(later))] < 0.05
