"""Burst mode, scale to zero and prediction under the local profile, at exact virtual times."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ebbtide.autoscaler import (
    KUBERNETES,
    LOCAL,
    Decision,
    Observation,
    Policy,
    ReplicaSample,
    State,
    Traffic,
    decide,
    explain,
)
from ebbtide.autoscaler.burst import short_window_replicas
from ebbtide.autoscaler.demand import estimate
from tests.autoscaler.builders import pods_metric, policy

T0 = 100.0


@dataclass
class Feed:
    """Counters as the gateway and the replicas would report them, advanced second by second."""

    policy: Policy
    replicas: int
    start: float | None = None
    """Seconds each replica took to become ready; None: all were there from the first reading."""
    now: float = T0
    requests_total: int = 0
    in_flight_seconds: float = 0.0
    cpu_seconds: float = 0.0
    state: State = field(default_factory=State)
    decisions: list[Decision] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    """What each decision saw, in order."""

    def second(
        self, arrivals: int, in_flight: float, cores_each: float = 0.0, seconds: float = 1.0
    ) -> Decision:
        """One second of load (or `seconds`), then a decision that follows it (the count is
        applied at once)."""
        self.now += seconds
        self.requests_total += arrivals
        self.in_flight_seconds += in_flight * seconds
        self.cpu_seconds += cores_each * seconds
        fleet = tuple(
            ReplicaSample(f"r{i}", *self._started(i), cpu_seconds=self.cpu_seconds)
            for i in range(self.replicas)
        )
        traffic = Traffic(in_flight, self.requests_total, self.in_flight_seconds)
        observation = Observation(self.replicas, fleet, traffic)
        self.observations.append(observation)
        decision = decide(observation, self.policy, self.state, self.now)
        self.state = decision.state
        self.replicas = decision.desired
        self.decisions.append(decision)
        return decision

    def _started(self, index: int) -> tuple[float, bool, float]:
        """(started_at, ready, ready_since): the first replica was there from the start; the
        others started a second later, beside it, and took `start` seconds."""
        if self.start is None or index == 0:
            return 0.0, True, 0.0
        return 1.0, True, 1.0 + self.start


def steady_then_surge(feed: Feed) -> Decision:
    """Five calm seconds (40 requests/s, 4 in flight), then one second ten times as busy."""
    for _ in range(5):
        feed.second(arrivals=40, in_flight=4.0)
    return feed.second(arrivals=400, in_flight=30.0)


def assert_held_then_released(
    calm: list[Decision], count: int, elapsed: float, seconds: float
) -> None:
    """`count` held through every calm decision but the last, which comes `seconds` after the
    surge and lets go."""
    assert all(d.desired == count for d in calm[:-1])
    assert elapsed == seconds
    assert calm[-1].desired < count


def concurrency_policy(**spec: object) -> Policy:
    return policy(LOCAL, metrics=[pods_metric("concurrency", 2)], **spec)  # type: ignore[arg-type]


def test_a_surge_enters_burst_mode_and_scales_up_at_once() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=2)
    for _ in range(5):
        assert feed.second(arrivals=40, in_flight=4.0).desired == 2
    surge = feed.second(arrivals=400, in_flight=30.0)
    assert surge.desired == 15  # 30 in flight / 2 per replica, not the rate limit's 6
    assert surge.step("burst") is not None
    assert surge.event == "New size: 15; reason: burst: the last 0.25 s asks for 15"
    assert explain(surge, feed.policy).startswith("scaling up at once 2 → 15 (burst mode)")


def test_burst_mode_ends_a_stable_window_after_the_surge_and_the_count_holds() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=2)
    steady_then_surge(feed)
    surge_time = feed.now
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(16)]
    # Burst mode lasts until the surge has passed through the 2 s stable window...
    assert [d.step("burst") is not None for d in calm[:3]] == [True, False, False]
    assert explain(calm[0], feed.policy) == (
        "holding 15 (burst mode): a surge 1 s ago asked for at least 200% of the ready "
        "replicas: no scale-down until it has passed through the 2 s stable window"
    )
    # ...and the scale-down window keeps the surge's recommendation for the burst hold: 32
    # starts of the 0.5 s assumed while no start has been measured.
    assert_held_then_released(calm, 15, feed.now - surge_time, 16)


def test_a_count_set_outside_burst_mode_is_held_for_the_scale_down_window_only() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=4)
    for _ in range(5):
        feed.second(arrivals=40, in_flight=8.0)
    # 14 in flight asks for 7 of 4 ready: below the 200% threshold, so no burst; the stable
    # window reaches 7 after two seconds of it.
    for _ in range(3):
        assert feed.second(arrivals=60, in_flight=14.0).step("burst") is None
    assert feed.replicas == 7
    high_until = feed.now
    calm = [feed.second(arrivals=40, in_flight=8.0) for _ in range(10)]
    assert all(d.step("burst") is None for d in calm)
    assert [d.step("metrics").replicas for d in calm[:3]] == [6, 4, 4]  # type: ignore[union-attr]
    # Each recommendation leaves the 8 s window (16 starts of 0.5 s) 8 s after it was made:
    # the 7 made at high_until holds through high_until + 7, then the 6 of the next second.
    assert [d.desired for d in calm[:7]] == [7] * 7
    assert [d.desired for d in calm[7:]] == [6, 4, 4]
    assert feed.now == high_until + 10


def test_a_burst_is_held_twice_as_long_as_the_scale_down_window() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=2)
    steady_then_surge(feed)
    surge_time = feed.now
    assert feed.state.recommendations[-1].burst
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(16)]
    # The stable window's own recommendations after the surge are not burst ones...
    assert not feed.state.recommendations[-1].burst
    # ...yet the burst's 15 outlasts the 8 s window: it holds until surge_time + 16.
    assert [d.desired for d in calm[7:10]] == [15, 15, 15]
    assert explain(calm[12], feed.policy) == (
        "holding 15 replicas: the metrics ask for 2, but what burst mode asked for within the "
        "last 16 s still holds (a burst is remembered 16 s, the scale-down stabilization "
        "window 8 s, 16 starts of 0.5 s, assumed until one is measured)"
    )
    assert explain(calm[3], feed.policy) == (
        "holding 15 replicas: the metrics ask for 2, but a higher recommendation within the "
        "last 8 s (the scale-down stabilization window, 16 starts of 0.5 s, assumed until one "
        "is measured) still holds"
    )
    assert_held_then_released(calm, 15, feed.now - surge_time, 16)


def test_replicas_that_start_fast_are_let_go_sooner() -> None:
    # Replicas measured ready 0.06 s after they started: 16 starts is under the 2 s floor.
    feed = Feed(concurrency_policy(max_replicas=50), replicas=2, start=0.06)
    steady_then_surge(feed)
    surge = feed.decisions[-1]
    assert surge.timing is not None
    assert surge.timing.start == pytest.approx(0.06)
    assert surge.timing.measured
    assert (surge.timing.scale_down_window, surge.timing.burst_hold) == (2.0, 2.0)
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(2)]
    # Released once the 2 s have passed (the rate limit counts from the 2 replicas of 5 s ago).
    assert [d.desired for d in calm] == [15, 2]
    assert feed.policy.release is not None
    assert surge.timing.describe(feed.policy.release) == (
        "its 2 s floor, as replicas start in 0.06 s"
    )


def test_replicas_that_start_slowly_are_kept_longer() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=2, start=1.0)
    steady_then_surge(feed)
    surge_time = feed.now
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(32)]
    assert calm[0].timing is not None
    assert (calm[0].timing.scale_down_window, calm[0].timing.burst_hold) == (16.0, 32.0)
    assert_held_then_released(calm, 15, feed.now - surge_time, 32)


def test_the_burst_hold_never_shortens_a_longer_scale_down_window() -> None:
    patient = concurrency_policy(
        max_replicas=50, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}
    )
    assert patient.scale_down.stabilization_window == 60
    feed = Feed(patient, replicas=2)
    steady_then_surge(feed)
    surge_time = feed.now
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(60)]
    assert_held_then_released(calm, 15, feed.now - surge_time, 60)


def test_a_shorter_scale_down_window_in_the_spec_governs_bursts_too() -> None:
    eager = concurrency_policy(
        max_replicas=50, behavior={"scaleDown": {"stabilizationWindowSeconds": 5}}
    )
    assert eager.burst is not None
    assert eager.burst.hold == 0.0
    feed = Feed(eager, replicas=2)
    steady_then_surge(feed)
    calm = [feed.second(arrivals=40, in_flight=4.0) for _ in range(12)]
    # Burst mode ends a 3 s metric window after the surge; the 5 s window then lets go.
    assert calm[0].desired == 15
    assert calm[-1].desired < 15


def test_nothing_scales_below_what_the_short_window_asks_for() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=4, start=0.06)
    for _ in range(5):
        feed.second(arrivals=40, in_flight=8.0)
    for _ in range(3):
        feed.second(arrivals=60, in_flight=14.0)
    assert feed.replicas == 7
    assert feed.second(arrivals=40, in_flight=4.0).desired == 7  # the 2 s window holds
    # The 2 s stable window averages 4 and 12 in flight and asks for 4; the window remembers
    # 5; the last 0.25 s, with 12 in flight, asks for 6 (and is no surge: 6 of 7 ready).
    back = feed.second(arrivals=40, in_flight=12.0)
    assert back.step("burst") is None
    assert back.desired == 6
    assert explain(back, feed.policy) == (
        "scaling down 7 → 6: all metrics below target (concurrency 1.14 per replica is below "
        "the target 2), but no lower: the last 0.25 s asks for 6 replicas"
    )


def test_a_rise_below_the_threshold_is_left_to_the_stable_window() -> None:
    feed = Feed(concurrency_policy(max_replicas=50), replicas=4)
    for _ in range(5):
        feed.second(arrivals=40, in_flight=8.0)
    rise = feed.second(arrivals=60, in_flight=14.0)  # 7 asked of 4 ready: below 200%
    assert rise.step("burst") is None


def test_a_cpu_target_sees_a_surge_through_the_arrival_rate() -> None:
    # 7 ms of CPU per request: one replica at 60% of a core serves about 86 requests/s.
    feed = Feed(policy(LOCAL, cpu_target=60, max_replicas=50), replicas=1)
    for _ in range(5):
        feed.second(arrivals=50, in_flight=1.0, cores_each=0.35)
    # 500 requests in the last second; measured CPU saturates at one core, which finishes
    # 143 of them: 358 are left in flight.
    surge = feed.second(arrivals=500, in_flight=358.0, cores_each=1.0)
    assert surge.step("burst") is not None
    # 500 requests/s plus the 357 waiting (one is in service) cleared within half a second,
    # at 7 ms each and 60% of a core per replica: 1214 * 0.007 / 0.6 = 14.2.
    assert surge.desired == 15
    # What the stabilization window remembers is the surge without its queue: 500/s needs 6.
    assert surge.state.recommendations[-1].replicas == 6


def test_a_chance_clump_of_a_few_requests_is_no_surge() -> None:
    # The seed's endpoint: 60% of 500m per replica; about 9 ms of CPU per request.
    seed_like = policy(LOCAL, cpu_target=60, cpu_request="500m", max_replicas=5)

    def clump(arrivals: int) -> Decision:
        feed = Feed(seed_like, replicas=1, start=0.06)
        for _ in range(17):
            feed.second(arrivals=2, in_flight=0.1, cores_each=0.12, seconds=0.25)
        # A quarter second with `arrivals` and three requests in flight, two of them waiting:
        # from 8 arrivals on, the short window asks for 2 replicas of 0.3 cores, twice the one
        # ready.
        return feed.second(arrivals=arrivals, in_flight=3.0, cores_each=0.12, seconds=0.25)

    for arrivals in (8, 9):
        chance = clump(arrivals)
        assert chance.step("burst") is None
        assert chance.desired == 1
    surge = clump(10)
    assert surge.step("burst") is not None
    assert surge.desired == 2


def test_burst_mode_can_be_turned_off() -> None:
    quiet = concurrency_policy(max_replicas=50, burst={"enabled": False})
    assert quiet.burst is None
    feed = Feed(quiet, replicas=2)
    assert steady_then_surge(feed).desired == 6  # max(2 + 4, 2 * 2)


def test_burst_settings_from_the_spec() -> None:
    tuned = concurrency_policy(burst={"windowSeconds": 2, "thresholdPercent": 300})
    assert tuned.burst is not None
    assert (tuned.burst.window, tuned.burst.threshold) == (2, 3.0)
    on_kubernetes = policy(KUBERNETES, cpu_target=60, burst={"enabled": True})
    assert on_kubernetes.burst is not None
    assert on_kubernetes.burst.window == 15
    # No hold beyond the HPA's own 300 s scale-down window.
    assert on_kubernetes.burst.hold == 0
    assert concurrency_policy().burst is not None
    assert concurrency_policy().burst.hold == 16  # type: ignore[union-attr]


def test_an_idle_endpoint_scales_to_zero_after_the_idle_period() -> None:
    feed = Feed(concurrency_policy(min_replicas=0), replicas=1)
    feed.second(arrivals=5, in_flight=1.0)
    last_request = feed.now
    while feed.now < last_request + 29:
        assert feed.second(arrivals=0, in_flight=0.0).desired == 1
    idle = feed.second(arrivals=0, in_flight=0.0)
    assert feed.now == last_request + 30
    assert idle.desired == 0
    assert idle.event == "New size: 0; reason: idle for 30 s"
    condition = idle.condition("ScaledToZero")
    assert condition is not None
    assert condition.status == "True"


def test_at_zero_the_first_request_starts_a_replica_at_once() -> None:
    feed = Feed(concurrency_policy(min_replicas=0), replicas=0)
    for _ in range(3):
        assert feed.second(arrivals=0, in_flight=0.0).desired == 0
    held = feed.second(arrivals=1, in_flight=1.0)
    assert held.desired == 1
    assert held.reasons[0].reason == "ScaleFromZero"
    assert held.event == "New size: 1; reason: request arrived while scaled to zero"
    idle = feed.decisions[0]
    assert explain(idle, feed.policy).startswith("idle at 0 replicas: no request for 30 s")


def test_many_held_requests_at_zero_start_enough_replicas() -> None:
    feed = Feed(concurrency_policy(min_replicas=0), replicas=0)
    feed.second(arrivals=0, in_flight=0.0)
    assert feed.second(arrivals=9, in_flight=9.0).desired == 5


def test_recent_requests_keep_one_replica_even_when_metrics_allow_none() -> None:
    zero_ok = policy(LOCAL, cpu_target=60, min_replicas=0)
    feed = Feed(zero_ok, replicas=1)
    for _ in range(40):
        # One request every few seconds: CPU near zero, never idle for 30 s.
        decision = feed.second(arrivals=1 if int(feed.now) % 5 == 0 else 0, in_flight=0.0)
        assert decision.desired == 1


def test_prediction_provisions_ahead_of_a_ramp() -> None:
    predicting = concurrency_policy(max_replicas=100, prediction={"enabled": True})
    plain = concurrency_policy(max_replicas=100)
    ahead, behind = Feed(predicting, replicas=2), Feed(plain, replicas=2)
    for second in range(60):
        rate = 20 + 2 * second  # requests per second, rising
        in_flight = rate * 0.1  # 100 ms each (Little's law)
        ahead.second(arrivals=rate, in_flight=in_flight)
        behind.second(arrivals=rate, in_flight=in_flight)
    assert ahead.replicas > behind.replicas
    assert any(d.step("forecast") for d in ahead.decisions)


def test_prediction_never_scales_down_on_a_forecast() -> None:
    feed = Feed(concurrency_policy(max_replicas=100, prediction={"enabled": True}), replicas=10)
    for second in range(60):
        rate = max(10, 200 - 3 * second)
        feed.second(arrivals=rate, in_flight=rate * 0.1)
    assert not any(d.step("forecast") for d in feed.decisions)


def test_a_request_in_service_on_each_ready_replica_is_not_waiting() -> None:
    rps = policy(LOCAL, metrics=[pods_metric("requests_per_second", 10)], max_replicas=50)
    assert rps.burst is not None

    def short_window(in_flight: float) -> tuple[int | None, int | None]:
        feed = Feed(rps, replicas=4, start=0.06)
        for _ in range(8):
            feed.second(arrivals=8, in_flight=in_flight, seconds=0.25)
        seen = feed.observations[-1]
        return short_window_replicas(seen, rps, rps.burst, feed.state.samples, None, feed.now)

    # 32 requests/s at 10 per replica: 4, with or without the four in service.
    assert short_window(4.0) == (4, 4)
    # Nine in flight: five wait, to be cleared within half a second: 32 + 10 = 42/s asks for 5.
    assert short_window(9.0) == (5, 4)


def test_a_short_window_with_few_arrivals_holds_nothing_up() -> None:
    # Idle replicas still burn a little CPU, which a trickle of requests seems to cost: here
    # 0.1 cores each over 8 requests/s reads as 25 ms per request.
    seed_like = policy(LOCAL, cpu_target=60, cpu_request="500m", max_replicas=5)
    assert seed_like.burst is not None

    def trickle(last_arrivals: int) -> tuple[Feed, Decision]:
        """Two replicas under a trickle until the stable window lets one go; the quarter second
        it does, `last_arrivals` arrive."""
        feed = Feed(seed_like, replicas=2, start=0.06)
        for _ in range(released_after - 1):
            feed.second(arrivals=2, in_flight=0.0, cores_each=0.1, seconds=0.25)
        return feed, feed.second(
            arrivals=last_arrivals, in_flight=0.0, cores_each=0.1, seconds=0.25
        )

    steady = Feed(seed_like, replicas=2, start=0.06)
    kept = [
        steady.second(arrivals=2, in_flight=0.0, cores_each=0.1, seconds=0.25) for _ in range(16)
    ]
    released_after = 1 + next(i for i, d in enumerate(kept) if d.desired == 1)
    # Five arrivals in that quarter second (20/s at 25 ms) ask for 2 replicas of 0.3 cores...
    feed, decision = trickle(5)
    seen, samples = feed.observations[-1], decision.state.samples
    demand = estimate(seen, seed_like, samples)
    asked = short_window_replicas(seen, seed_like, seed_like.burst, samples, demand, feed.now)
    assert asked == (2, 2)
    # ...but five is no evidence: the stable window's 1 wins.
    assert decision.step("short window") is None
    assert decision.desired == 1
