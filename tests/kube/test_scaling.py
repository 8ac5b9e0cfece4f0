"""The pure parts of the operator's scaling loop for class-ebbtide endpoints, in virtual time:
gateway reports → Observation → the same `decide` as locally → scale patch, status, events."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ebbtide.autoscaler import LOCAL, State, decide, explain, policy_for
from ebbtide.core.errors import SpecError
from ebbtide.gateway.channel import EndpointReport
from ebbtide.kube.scaling import (
    GatewayReading,
    PodUsage,
    TrafficBook,
    act,
    event_manifest,
    observation,
    replica_sample,
    waiting_at_zero,
)
from ebbtide.spec import InferenceEndpoint, validate_document
from tests.spec.cases import SEED

WALL = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = ("default", "my-model-endpoint")


def ebbtide_endpoint(min_replicas: int = 1) -> InferenceEndpoint:
    document: dict[str, Any] = copy.deepcopy(SEED)
    autoscaling = document["spec"]["autoscaling"]
    autoscaling.pop("targetCPUUtilizationPercentage", None)
    autoscaling["minReplicas"] = min_replicas
    autoscaling["metrics"] = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "concurrency"},
                "target": {"type": "AverageValue", "averageValue": "2"},
            },
        }
    ]
    return validate_document(document).endpoint


def report(in_flight: int = 0, arrivals: int = 0, seconds: float = 0.0, queued: int = 0) -> Any:
    return EndpointReport(
        *KEY, in_flight=in_flight, queued=queued, arrivals=arrivals, concurrency_seconds=seconds
    )


def reading(gateway: str, started: float, *reports: EndpointReport) -> GatewayReading:
    return GatewayReading(gateway, started, tuple(reports))


def pod(name: str, ready: bool = True, age: float = 60.0) -> dict[str, Any]:
    stamp = (WALL - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "creationTimestamp": stamp},
        "status": {
            "phase": "Running",
            "startTime": stamp,
            "conditions": [
                {"type": "Ready", "status": str(ready), "lastTransitionTime": stamp},
            ],
        },
    }


def test_the_class_resolves_from_what_the_hpa_can_do() -> None:
    assert validate_document(SEED).endpoint.spec.autoscaling.resolved_class() == "hpa"
    assert ebbtide_endpoint().spec.autoscaling.resolved_class() == "ebbtide"


def test_class_hpa_with_a_concurrency_target_is_refused_naming_the_field_and_fix() -> None:
    document = ebbtide_endpoint().manifest()
    document["spec"]["autoscaling"]["class"] = "hpa"
    document["spec"]["autoscaling"]["minReplicas"] = 0
    with pytest.raises(SpecError) as raised:
        validate_document(document)
    text = "\n".join(raised.value.problems)
    assert "spec.autoscaling.class" in text
    assert "minReplicas 0" in text
    assert "metrics[0].pods (concurrency)" in text
    assert "set class: ebbtide" in text


def test_traffic_sums_gateways_and_survives_a_gateway_restart() -> None:
    book = TrafficBook().update(
        [reading("a", 1.0, report(2, 10, 5.0)), reading("b", 1.0, report(1, 4, 1.0))], ["a", "b"]
    )
    traffic = book.traffic(KEY)
    assert traffic is not None
    assert (traffic.in_flight, traffic.requests_total, traffic.in_flight_seconds) == (3, 14, 6)
    # Gateway a restarts: its counters start again from zero, its old ones stay in the base.
    book = book.update([reading("a", 9.0, report(0, 1, 0.5))], ["a", "b"])
    traffic = book.traffic(KEY)
    assert traffic is not None
    assert (traffic.in_flight, traffic.requests_total, traffic.in_flight_seconds) == (1, 15, 6.5)
    # Gateway b goes away: its counters stay, its gauges do not.
    book = book.update([], ["a"])
    traffic = book.traffic(KEY)
    assert traffic is not None
    assert (traffic.in_flight, traffic.requests_total) == (0, 15)


def test_queued_requests_count_as_in_flight_as_locally() -> None:
    book = TrafficBook().update([reading("a", 1.0, report(1, 3, queued=2))], ["a"])
    traffic = book.traffic(KEY)
    assert traffic is not None
    assert traffic.in_flight == 3


def test_demand_answer_names_the_endpoints_waiting_at_zero() -> None:
    answer = {"waiting": [{"namespace": "default", "endpoint": "e", "queued": 2}]}
    assert waiting_at_zero(answer) == (("default", "e"),)
    assert waiting_at_zero({"waiting": []}) == ()


def test_pod_times_map_onto_the_monotonic_clock_and_stale_metrics_are_left_out() -> None:
    fresh = PodUsage(0.25, 1e8, WALL - timedelta(seconds=10))
    sample = replica_sample(pod("p", age=30.0), fresh, now=1000.0, wall=WALL)
    assert sample.started_at == pytest.approx(970.0)
    assert sample.ready
    assert sample.cpu_cores == 0.25
    stale = PodUsage(0.25, 1e8, WALL - timedelta(seconds=120))
    assert replica_sample(pod("p"), stale, 1000.0, WALL).cpu_cores is None
    terminating = pod("q")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    assert replica_sample(terminating, None, 1000.0, WALL).terminating


def test_pod_metrics_parse_quantities_over_containers() -> None:
    item = {
        "metadata": {"name": "p"},
        "timestamp": "2026-01-01T11:59:50Z",
        "window": "15s",
        "containers": [
            {"name": "a", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "b", "usage": {"cpu": "1", "memory": "1Mi"}},
        ],
    }
    usage = PodUsage.from_pod_metrics(item)
    assert usage.cpu_cores == 1.25
    assert usage.memory_bytes == 65 * 2**20


def test_load_raises_replicas_within_a_second_of_virtual_time() -> None:
    endpoint = ebbtide_endpoint()
    policy = policy_for(endpoint, LOCAL)
    assert policy.sync_period == 0.25
    state = State()
    deployment = {"spec": {"replicas": 1}}
    status: dict[str, Any] = {}
    now, arrivals, seconds = 100.0, 0, 0.0
    scaled_at = None
    for tick in range(12):
        in_flight = 0 if tick < 4 else 8  # load appears at tick 4 (t = 101.0)
        arrivals += in_flight
        seconds += in_flight * policy.sync_period
        book = TrafficBook().update(
            [reading("a", 1.0, report(in_flight, arrivals, seconds))], ["a"]
        )
        seen = observation(deployment, [pod("p0")], {}, book.traffic(KEY), now, WALL)
        decision = decide(seen, policy, state, now)
        state = decision.state
        writes = act(decision, explain(decision, policy), status, False, WALL)
        status.update(writes.status)
        if writes.replicas is not None:
            scaled_at = now
            assert writes.replicas > 1
            assert [e.reason for e in writes.events] == ["SuccessfulRescale"]
            break
        assert writes.events == ()
        now += policy.sync_period
    assert scaled_at is not None
    assert scaled_at - 101.0 <= 1.0
    assert status["desiredReplicas"] > 1
    assert "concurrency" in status["explanation"]
    types = {c["type"] for c in status["conditions"]}
    assert {"AbleToScale", "ScalingActive"} <= types


def test_demand_at_zero_scales_to_one_at_once() -> None:
    endpoint = ebbtide_endpoint(min_replicas=0)
    policy = policy_for(endpoint, LOCAL)
    deployment = {"spec": {"replicas": 0}}
    state = State()
    idle = TrafficBook().update([reading("a", 1.0, report())], ["a"])
    decision = decide(
        observation(deployment, [], {}, idle.traffic(KEY), 50.0, WALL), policy, state, 50.0
    )
    assert decision.desired == 0
    waiting = TrafficBook().update([reading("a", 1.0, report(0, 1, queued=1))], ["a"])
    seen = observation(deployment, [], {}, waiting.traffic(KEY), 50.1, WALL)
    decision = decide(seen, policy, decision.state, 50.1)
    writes = act(decision, explain(decision, policy), {}, False, WALL)
    assert writes.replicas == 1


def test_nothing_is_scaled_while_an_hpa_owns_the_deployment() -> None:
    policy = policy_for(ebbtide_endpoint(), LOCAL)
    book = TrafficBook().update([reading("a", 1.0, report(20, 20, 5.0))], ["a"])
    seen = observation({"spec": {"replicas": 1}}, [pod("p0")], {}, book.traffic(KEY), 1.0, WALL)
    decision = decide(seen, policy, State(), 1.0)
    assert act(decision, "x", {}, True, WALL).replicas is None


def test_unchanged_status_writes_nothing_and_conditions_keep_their_transition_time() -> None:
    policy = policy_for(ebbtide_endpoint(), LOCAL)
    book = TrafficBook().update([reading("a", 1.0, report(1, 1, 0.25))], ["a"])
    seen = observation({"spec": {"replicas": 1}}, [pod("p0")], {}, book.traffic(KEY), 1.0, WALL)
    decision = decide(seen, policy, State(), 1.0)
    ready = {"type": "Ready", "status": "True", "reason": "ReplicasReady", "message": "1 of 1"}
    first = act(decision, explain(decision, policy), {"conditions": [ready]}, False, WALL)
    assert first.status["conditions"][0] == ready  # the reconciler's Ready condition stays
    again = act(decision, explain(decision, policy), first.status, False, WALL + timedelta(1))
    assert again.status == {}
    assert again.replicas is None


def test_an_event_names_the_endpoint_as_involved_object() -> None:
    from ebbtide.kube.scaling import EventNote

    event = event_manifest("default", "e", "uid-1", EventNote("Normal", "R", "m"), WALL)
    assert event["involvedObject"] == {
        "apiVersion": "mlops.example.com/v1",
        "kind": "InferenceEndpoint",
        "name": "e",
        "namespace": "default",
        "uid": "uid-1",
    }
    assert event["metadata"]["generateName"] == "e."


def test_moving_figures_alone_wait_for_the_quiet_period_a_rescale_does_not() -> None:
    policy = policy_for(ebbtide_endpoint(), LOCAL)
    book = TrafficBook().update([reading("a", 1.0, report(1, 1, 0.25))], ["a"])
    seen = observation({"spec": {"replicas": 1}}, [pod("p0")], {}, book.traffic(KEY), 1.0, WALL)
    decision = decide(seen, policy, State(), 1.0)
    first = act(decision, explain(decision, policy), {}, False, WALL)
    moved = {**first.status, "explanation": "holding 1 replica: concurrency 0.6 …"}
    assert act(decision, explain(decision, policy), moved, False, WALL, quiet=True).status == {}
    later = act(decision, explain(decision, policy), moved, False, WALL, quiet=False)
    assert set(later.status) == {"explanation"}
    busy = TrafficBook().update([reading("a", 1.0, report(20, 20, 5.0))], ["a"])
    seen = observation({"spec": {"replicas": 1}}, [pod("p0")], {}, busy.traffic(KEY), 1.0, WALL)
    rescale = decide(seen, policy, State(), 1.0)
    writes = act(rescale, explain(rescale, policy), first.status, False, WALL, quiet=True)
    assert writes.replicas is not None
    assert writes.status["desiredReplicas"] == writes.replicas


def objective_endpoint(latency_ms: float = 200) -> InferenceEndpoint:
    document = ebbtide_endpoint().model_dump(by_alias=True, exclude_none=True)
    document["spec"]["autoscaling"]["objective"] = {"latencyMilliseconds": latency_ms}
    return validate_document(document).endpoint


def test_the_objective_standing_is_written_and_a_figure_it_lost_is_nulled() -> None:
    from ebbtide.core.latency import LATENCY_BOUNDS

    policy = policy_for(objective_endpoint(), LOCAL)
    slow = [0] * (len(LATENCY_BOUNDS) + 1)
    slow[LATENCY_BOUNDS.index(0.4)] = 200  # p99 in (300 ms, 400 ms]: over 200 ms
    fleet = [pod("p0")]
    state = State()
    for when, answers in ((1.0, [0] * len(slow)), (16.0, slow)):
        counted = replace(report(2, sum(answers), 2 * when), latency_counts=tuple(answers))
        book = TrafficBook().update([reading("a", 1.0, counted)], ["a"])
        seen = observation({"spec": {"replicas": 1}}, fleet, {}, book.traffic(KEY), when, WALL)
        decision = decide(seen, policy, state, when)
        state = decision.state
    writes = act(decision, explain(decision, policy), {}, False, WALL)
    assert writes.replicas is not None
    assert writes.replicas > 1
    standing = writes.status["objective"]
    assert 300 < standing["observedMilliseconds"] <= 400
    observed = standing["observedMilliseconds"] / 1000
    assert standing["learnedLimit"] == pytest.approx(2 * 0.2 / observed, rel=1e-3)
    # Too few answers in the next window: no percentile, so the patch nulls the old one
    # (a merge patch would otherwise keep it) and keeps the limit.
    assert decision.objective is not None
    quiet = replace(decision, objective=replace(decision.objective, observed=None))
    later = act(quiet, explain(quiet, policy), writes.status, False, WALL)
    assert later.status["objective"] == {
        "observedMilliseconds": None,
        "learnedLimit": standing["learnedLimit"],
    }
    # The objective left the spec: what it learned is dropped, and the whole field goes.
    plain = policy_for(ebbtide_endpoint(), LOCAL)
    gone = decide(seen, plain, state, 16.25)
    assert gone.state.objective_load is None
    assert act(gone, explain(gone, plain), writes.status, False, WALL).status["objective"] is None


def test_the_kept_limit_is_read_from_the_status_and_anything_else_is_none() -> None:
    from ebbtide.kube.scaling import learned_limit

    assert learned_limit({"objective": {"learnedLimit": 0.5, "observedMilliseconds": 3}}) == 0.5
    for status in (None, {}, {"objective": {}}, {"objective": {"learnedLimit": -1}},
                   {"objective": {"learnedLimit": 0}}, {"objective": {"learnedLimit": "x"}},
                   {"objective": {"learnedLimit": 1, "unknownField": 2}}):  # fmt: skip
        assert learned_limit(status) is None, status
