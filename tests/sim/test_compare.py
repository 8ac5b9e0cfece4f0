"""Policies side by side: deterministic, and the comparison means what it says."""

from __future__ import annotations

from ebbtide.sim import POLICIES, Platform, ServiceModel, compare, synthetic
from ebbtide.sim.compare import sample_endpoint

PLATFORM = Platform(start_time=0.5)


def test_a_comparison_is_deterministic_under_a_seed() -> None:
    workload = synthetic("spike", 40, 120, ServiceModel(), seed=0)
    first = compare(workload, sample_endpoint(), PLATFORM, seed=0)
    again = compare(workload, sample_endpoint(), PLATFORM, seed=0)
    assert first.scores == again.scores
    names = [s.policy for s in first.scores]
    assert names[:5] == ["ebbtide", "ebbtide-objective", "hpa", "knative-kpa", "ray-serve"]
    assert names[5].startswith("fixed-")
    assert names[6] == "oracle"
    assert len(POLICIES) == 7


def test_a_different_seed_gives_a_different_run() -> None:
    workload = synthetic("spike", 40, 120, ServiceModel(), seed=0)
    first = compare(workload, sample_endpoint(), PLATFORM, seed=0, policies=("ebbtide",))
    other = compare(workload, sample_endpoint(), PLATFORM, seed=1, policies=("ebbtide",))
    assert first.scores != other.scores


def test_every_request_is_accounted_for() -> None:
    workload = synthetic("spike", 40, 120, ServiceModel(), seed=0)
    result = compare(workload, sample_endpoint(), PLATFORM, seed=0)
    for score, trace in result.results:
        assert score.requests == len(workload.arrivals)
        assert len(trace.latencies) == len(workload.arrivals)
        assert score.replica_seconds > 0


def test_on_a_spike_ebbtide_beats_the_hpa_and_stays_near_the_oracles_cost() -> None:
    workload = synthetic("spike", 50, 180, ServiceModel(), seed=0)
    result = compare(workload, sample_endpoint(), PLATFORM, seed=0)
    ebbtide, hpa, oracle = (result.score_of(p) for p in ("ebbtide", "hpa", "oracle"))
    assert ebbtide is not None
    assert hpa is not None
    assert oracle is not None
    assert ebbtide.over_objective < hpa.over_objective
    assert ebbtide.replica_seconds < 2 * oracle.replica_seconds
    assert oracle.over_objective_percent <= 1.0
