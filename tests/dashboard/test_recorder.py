"""The dashboard's memory in virtual time: real decisions, real traffic counters, the real
(in-memory) store; the feed and the Prometheus series built from them."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ebbtide.autoscaler import Observation
from ebbtide.autoscaler.decision import decide
from ebbtide.autoscaler.explain import explain
from ebbtide.autoscaler.state import State
from ebbtide.dashboard.feed import build_feed
from ebbtide.dashboard.history import ReplicaCounts, endpoint_state, traffic_between
from ebbtide.dashboard.metrics import EndpointCollector
from ebbtide.dashboard.recorder import Recorder, RecorderSettings
from ebbtide.gateway.traffic import TrafficSnapshot, TrafficStats
from ebbtide.spec import KIND
from ebbtide.store import ObjectKey, Selector, Write
from ebbtide.testing import FakeClock, memory_store
from tests.autoscaler.builders import NOW, endpoint, pod, policy

KEY = ObjectKey(KIND, "default", "model")


def running(name: str, ready: bool = True, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, "ready": ready}}


class Fleet:
    """Replicas as `get pods` shows them, and the gateway's live counters of the endpoint."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pods: list[dict[str, Any]] = [running("a"), running("b")]
        self.stats = TrafficStats(clock.now())
        self.queued = 0
        self.routed = True

    def pods_of(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        return self.pods

    def snapshot(self, key: ObjectKey) -> TrafficSnapshot | None:
        if not self.routed:
            return None
        return self.stats.snapshot(self.clock.now(), 0, self.queued, len(self.pods), {})

    def serve(self, requests: int, latency: float, status: int = 200) -> None:
        for _ in range(requests):
            self.stats.arrive(self.clock.now())
            self.stats.complete(self.clock.now(), status, latency)


class FleetWorkloads:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        return self.fleet.pods_of(namespace, selector)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=NOW)


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    return Fleet(clock)


@pytest.fixture
def recorder(clock: FakeClock, fleet: Fleet) -> Recorder:
    store = memory_store(clock)
    manifest = endpoint(max_replicas=5, cpu_target=50).manifest()
    store.apply([Write(KEY, manifest, None)])
    store.update_status(KEY, {"desiredReplicas": 2, "readyReplicas": 2})
    return Recorder(
        store,
        fleet.snapshot,
        clock,
        RecorderSettings(interval=1.0, window=5.0),
        workloads=FleetWorkloads(fleet),
    )


def test_each_sample_measures_the_traffic_since_the_previous_one(
    recorder: Recorder, clock: FakeClock, fleet: Fleet
) -> None:
    recorder.sample()
    fleet.serve(40, latency=0.004)
    fleet.serve(10, latency=0.200, status=503)
    clock.advance(2.0)
    recorder.sample()

    points = [p for _, p in recorder.histories[KEY].points]
    assert points[0].offered is None  # nothing to measure against yet
    second = points[1]
    assert second.offered == pytest.approx(25.0)
    assert second.served == pytest.approx(20.0)
    assert second.failed == pytest.approx(5.0)
    assert second.p50 == pytest.approx(0.004, rel=0.25)
    assert second.p99 == pytest.approx(0.2, rel=0.25)
    assert second.replicas == ReplicaCounts(desired=2, ready=2, starting=0, draining=0, failing=0)


def test_the_ring_keeps_only_the_window(recorder: Recorder, clock: FakeClock) -> None:
    for _ in range(12):
        recorder.sample()
        clock.advance(1.0)
    times = [p.time for _, p in recorder.histories[KEY].points]
    assert len(times) == 5
    assert times == sorted(times)
    assert build_feed(recorder, since=10)["endpoints"][0]["series"]["time"] == times[-2:]


def test_a_decision_that_rescales_enters_the_trail_with_its_reason(
    recorder: Recorder, clock: FakeClock
) -> None:
    resolved = policy(cpu_target=50, max_replicas=5)
    decision = decide(Observation(2, (pod("a", 1.0), pod("b", 1.0))), resolved, State(), NOW)
    recorder.record_decision(KEY, decision, explain(decision, resolved))
    recorder.store.update_status(KEY, {"desiredReplicas": 4, "readyReplicas": 2})
    recorder.sample()

    entry = build_feed(recorder)["endpoints"][0]
    assert entry["trail"] == [
        {
            "time": clock.wall().timestamp(),
            "from": 2,
            "to": 4,
            "reason": "cpu resource utilization (percentage of request) above target",
            "explanation": "scaling up 2 → 4: cpu utilization 100% of request is above the "
            "target 50%",
        }
    ]
    assert entry["metrics"] == [{"name": "cpu", "value": 100.0, "target": 50.0, "unit": "%"}]
    assert entry["series"]["metrics"]["cpu"] == {"unit": "%", "value": [100.0], "target": [50.0]}
    assert entry["state"]["phase"] == "ScalingUp"
    assert entry["explanation"].startswith("scaling up 2 → 4")


def test_a_change_no_decision_made_is_named_for_what_caused_it(
    recorder: Recorder, fleet: Fleet
) -> None:
    recorder.sample()
    recorder.store.update_status(KEY, {"desiredReplicas": 0})
    fleet.pods = []
    recorder.sample()
    recorder.store.update_status(KEY, {"desiredReplicas": 1})
    recorder.sample()
    trail = build_feed(recorder)["endpoints"][0]["trail"]
    assert [(t["from"], t["to"], t["reason"]) for t in trail] == [
        (2, 0, "scaled by request"),
        (0, 1, "request at zero"),
    ]


def test_the_prometheus_series_show_what_the_page_shows(recorder: Recorder) -> None:
    resolved = policy(cpu_target=50, max_replicas=5)
    decision = decide(Observation(2, (pod("a", 1.0), pod("b", 1.0))), resolved, State(), NOW)
    recorder.record_decision(KEY, decision, explain(decision, resolved))
    recorder.store.update_status(KEY, {"desiredReplicas": 4})
    recorder.sample()
    registry = CollectorRegistry()
    registry.register(EndpointCollector(recorder))
    text = generate_latest(registry).decode()
    labels = 'endpoint="model",namespace="default"'
    assert f"ebbtide_endpoint_desired_replicas{{{labels}}} 4.0" in text
    assert f"ebbtide_endpoint_ready_replicas{{{labels}}} 2.0" in text
    cpu = 'endpoint="model",metric="cpu",namespace="default",unit="%"'
    assert f"ebbtide_endpoint_metric_value{{{cpu}}} 100.0" in text
    assert f"ebbtide_endpoint_metric_target{{{cpu}}} 50.0" in text
    reason = 'reason="cpu resource utilization (percentage of request) above target"'
    assert f"ebbtide_endpoint_rescales_total{{{labels},{reason}}} 1.0" in text


def test_a_deleted_endpoint_leaves_the_feed(recorder: Recorder) -> None:
    recorder.sample()
    recorder.store.delete(KEY)
    recorder.sample()
    assert build_feed(recorder)["endpoints"] == []
    assert recorder.histories == {}


@pytest.mark.parametrize(
    ("counts", "queued", "conditions", "phase"),
    [
        (ReplicaCounts(1, 0, 0, 0, 0), 0, [{"type": "ReplicaFailure", "status": "True"}],
         "ModelUnavailable"),
        (ReplicaCounts(2, 1, 0, 0, 1), 0, [], "Failing"),
        (ReplicaCounts(1, 0, 1, 0, 0), 3, [], "Holding"),
        (ReplicaCounts(0, 0, 0, 0, 0), 0, [], "ScaledToZero"),
        (ReplicaCounts(3, 1, 2, 0, 0), 0, [], "ScalingUp"),
        (ReplicaCounts(1, 1, 0, 1, 0), 0, [], "ScalingDown"),
        (ReplicaCounts(2, 2, 0, 0, 0), 0, [], "Ready"),
    ],
)  # fmt: skip
def test_the_state_badge_names_what_the_endpoint_is_doing(
    counts: ReplicaCounts, queued: int, conditions: list[dict[str, str]], phase: str
) -> None:
    assert endpoint_state(counts, queued, conditions).phase == phase


def test_pods_are_counted_by_what_they_are_doing() -> None:
    pods = [
        running("a"),
        running("b", ready=False),
        running("c", phase="Pending", ready=False),
        running("d", phase="Terminating"),
        running("e", phase="CrashLoopBackOff", ready=False),
        {"status": {"phase": "Running", "ready": False, "restarts": 2}},
        {"status": {"phase": "Running", "ready": True, "restarts": 2}},
    ]
    assert ReplicaCounts.of(3, pods) == ReplicaCounts(3, 2, 2, 1, 2)


def test_a_restarted_gateway_measures_nothing_rather_than_negative_rates(clock: FakeClock) -> None:
    old = TrafficStats(clock.now())
    for _ in range(50):
        old.arrive(clock.now())
    before = old.snapshot(clock.now(), 0, 0, 1, {})
    clock.advance(1.0)
    after = TrafficStats(clock.now()).snapshot(clock.now(), 0, 0, 1, {})
    assert traffic_between(before, after) == (None, None, None, None, None)


def test_the_latency_chart_draws_the_spec_objective_over_the_annotation(
    clock: FakeClock, fleet: Fleet
) -> None:
    store = memory_store(clock)
    manifest = endpoint(objective={"latencyMilliseconds": 40, "percentile": 95}).manifest()
    manifest["metadata"]["annotations"] = {"mlops.example.com/latency-objective-ms": "70"}
    store.apply([Write(KEY, manifest, None)])
    recorder = Recorder(store, fleet.snapshot, clock, RecorderSettings(interval=1.0, window=5.0))
    recorder.sample()
    (entry,) = build_feed(recorder)["endpoints"]
    assert entry["latencyObjective"] == {
        "seconds": 0.04,
        "percentile": 95.0,
        "source": "spec.autoscaling.objective",
    }
    plain = endpoint().manifest()
    plain["metadata"]["annotations"] = {"mlops.example.com/latency-objective-ms": "70"}
    store.apply([Write(KEY, plain, None)])
    recorder.sample()
    (entry,) = build_feed(recorder)["endpoints"]
    assert entry["latencyObjective"]["seconds"] == pytest.approx(0.07)
