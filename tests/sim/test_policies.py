"""The comparison policies on constructed windows, at exact virtual times."""

from __future__ import annotations

from dataclasses import dataclass

from ebbtide.sim.oracle import Oracle
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import Knative, RayServe
from ebbtide.sim.view import ReplicaView, View
from ebbtide.sim.workload import Workload


@dataclass
class Load:
    """Feeds a policy views with a chosen average in flight between its ticks."""

    policy: Knative | RayServe
    replicas: int
    now: float = 0.0
    integral: float = 0.0

    def tick(self, in_flight: float) -> int:
        self.now += self.policy.sync_period
        self.integral += in_flight * self.policy.sync_period
        fleet = tuple(ReplicaView(f"r{i}", 0.0, True, 0.0, 0.0, 0) for i in range(self.replicas))
        view = View(self.replicas, fleet, int(in_flight), 0, self.integral)
        self.replicas = self.policy.decide(view, self.now)
        return self.replicas


def warm(load: Load, in_flight: float, seconds: float) -> None:
    for _ in range(int(seconds / load.policy.sync_period)):
        load.tick(in_flight)


def test_knative_holds_concurrency_at_70_percent_of_the_cap() -> None:
    load = Load(Knative(concurrency=4, min_replicas=1, max_replicas=50), replicas=2)
    warm(load, 5.6, 60)  # 5.6 in flight / 2.8 per replica
    assert load.replicas == 2
    warm(load, 11.2, 60)
    assert load.replicas == 4


def test_knative_panics_on_a_surge_and_never_scales_down_while_panicking() -> None:
    load = Load(Knative(concurrency=4, min_replicas=1, max_replicas=50), replicas=2)
    warm(load, 5.6, 60)
    # The first surge tick: the 6 s panic window averages 22.4 in flight, 8 replicas' worth,
    # four times the 2 ready: panic, and 8 at once. The window fills: 14, then 20.
    surge = [load.tick(56.0) for _ in range(3)]
    assert surge == [8, 14, 20]
    # Calm again: panic lasts until 60 s after the last tick over the threshold (the first),
    # and while it lasts the count never drops.
    calm = [load.tick(5.6) for _ in range(28)]
    assert calm == [20] * 28
    assert load.tick(5.6) < 20


def test_knative_halves_at_most_per_tick() -> None:
    load = Load(Knative(concurrency=4, min_replicas=1, max_replicas=50), replicas=16)
    # The first tick has no window yet; then the average is 0 and 1 would do.
    assert [load.tick(0.0) for _ in range(6)] == [16, 8, 4, 2, 1, 1]


def test_ray_serve_scales_up_only_after_30_seconds_of_wanting_to() -> None:
    load = Load(RayServe(min_replicas=1, max_replicas=50), replicas=2)
    warm(load, 4.0, 30)
    assert load.replicas == 2
    counts = [load.tick(20.0) for _ in range(40)]
    first_up = next(i for i, count in enumerate(counts) if count > 2)
    # The 30 s look-back average crosses 2 per replica at once; the decision waits 30 s, by
    # when the look-back holds only the new load: 20 in flight, 2 per replica.
    assert first_up == 30
    assert counts[first_up] == 10


def test_ray_serve_waits_600_seconds_to_scale_down() -> None:
    load = Load(RayServe(min_replicas=1, max_replicas=50), replicas=8)
    warm(load, 16.0, 30)
    warm(load, 2.0, 599)
    assert load.replicas == 8
    warm(load, 2.0, 40)
    assert load.replicas == 1


def test_the_oracle_starts_replicas_ahead_of_the_load() -> None:
    # 400 requests of 10 ms in [10, 11): 4 cores of work, 5 replicas at 95% each.
    arrivals = tuple(10 + i / 400 for i in range(400))
    workload = Workload("burst", arrivals, (0.01,) * 400, 20.0)
    oracle = Oracle(workload, Platform(start_time=0.5), 0.95, 1, 10)
    empty = View(1, (), 0, 0, 0.0)
    assert oracle.decide(empty, 9.0) == 1
    assert oracle.decide(empty, 9.5) == 5  # ready by 10.0
    assert oracle.decide(empty, 11.0) == 1
    assert oracle.peak == 5
