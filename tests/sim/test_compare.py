"""Policies side by side: deterministic, and the comparison means what it says."""

from __future__ import annotations

from ebbtide.sim import DEFAULT_POLICIES, POLICIES, Platform, ServiceModel, compare, synthetic
from ebbtide.sim.compare import sample_endpoint
from ebbtide.sim.oracle import RESOLUTION, Oracle, ReactiveOracle
from ebbtide.sim.view import View

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
    assert len(names) == len(DEFAULT_POLICIES)
    assert POLICIES[:-1] == DEFAULT_POLICIES
    assert POLICIES[-1] == "reactive-oracle"


def test_the_reactive_oracle_sees_a_step_only_once_it_has_happened() -> None:
    # 20/s of 50 ms (1 core at 100%) for 20 s, then 80/s: the clairvoyant oracle asks for the
    # step's replicas one start ahead, the reactive one a quarter second after it began, and
    # keeps them four starts after the last quarter that needed them.
    workload = synthetic(
        "steps", 20, 60, ServiceModel(0.05, 0.0), seed=0, steps="20:20,80:20,20:20"
    )
    platform = Platform(start_time=1.0)
    oracle = Oracle(workload, platform, 0.8, 1, 40)
    reactive = ReactiveOracle(workload, platform, 0.8, 1, 40)
    view = View(1, (), 0, 0, 0.0)
    need = oracle.need
    first_of_step = int(20 / RESOLUTION)
    before, after = max(need[first_of_step - 16 : first_of_step]), max(need[160:176])
    assert need[first_of_step] > max(before, after)  # the step's first quarter needs more
    assert oracle.decide(view, 19.5) >= need[first_of_step]  # one start ahead
    assert reactive.decide(view, 19.5) <= before
    assert reactive.decide(view, 20.0) <= before  # the step's first quarter is not over
    assert reactive.decide(view, 20.25) >= need[first_of_step]
    # The step's quarters stay in its hold for 4 starts after the step ended at 40 s.
    assert reactive.decide(view, 40.0 + reactive.hold - 0.5) >= max(need[152:160])
    assert reactive.decide(view, 40.0 + reactive.hold + 0.75) <= after
    assert reactive.hold == 4.0
    assert reactive.initial == oracle.need[0]


def test_without_foresight_a_slow_start_misses_a_step_the_oracle_meets() -> None:
    workload = synthetic("steps", 40, 120, ServiceModel(), seed=0)  # 0.3 cores, then 3
    for start, reactive_meets in ((0.06, True), (10.0, False)):
        result = compare(
            workload, sample_endpoint(), Platform(start_time=start), 0,
            ("oracle", "reactive-oracle"),
        )  # fmt: skip
        oracle, reactive = (result.score_of(p) for p in ("oracle", "reactive-oracle"))
        assert oracle is not None
        assert reactive is not None
        assert oracle.over_objective_percent <= 1.0
        assert (reactive.over_objective_percent <= 1.0) is reactive_meets, (start, reactive)


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
