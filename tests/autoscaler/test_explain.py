"""The one-line answer to "why is it (not) scaling?"."""

from __future__ import annotations

from ebbtide.autoscaler import Observation, State, decide, explain
from tests.autoscaler.builders import pod, policy

T0 = 1000.0


def line(current: int, cores: float | None, **spec: object) -> str:
    resolved = policy(**spec)  # type: ignore[arg-type]
    replicas = tuple(pod(f"r{i}", cores) for i in range(current))
    return explain(decide(Observation(current, replicas), resolved, State(), T0), resolved)


def test_a_target_set_too_high_is_named() -> None:
    text = line(1, 0.75, cpu_target=95)
    assert text.startswith(
        "holding 1 replica: cpu utilization 75% of request is below the target 95%"
    )
    assert "little headroom" in text


def test_a_balanced_target_gets_no_hint() -> None:
    text = line(2, 0.5, cpu_target=60)
    assert text == "holding 2 replicas: cpu utilization 50% of request is below the target 60%"


def test_within_tolerance() -> None:
    assert "within tolerance of the target 60%" in line(2, 0.63, cpu_target=60)


def test_at_max_replicas() -> None:
    text = line(5, 1.5, cpu_target=50, max_replicas=5)
    assert text.startswith("not scaling up: already at maxReplicas (5)")
    assert "asks for 15" in text


def test_scaling_up_rate_limited() -> None:
    text = line(2, 2.0, cpu_target=50)
    assert text.startswith("scaling up 2 → 6: cpu utilization 200% of request is above the target")
    assert text.endswith("(rate-limited; the metrics ask for 8)")


def test_scale_down_held_by_the_stabilization_window() -> None:
    text = line(4, 0.1, cpu_target=50)
    assert text.startswith("holding 4 replicas: the metrics ask for 1")
    assert "300 s" in text


def test_missing_metrics() -> None:
    text = line(2, None, cpu_target=50)
    assert text.startswith("not scaling: cannot compute a replica count: did not receive metrics")


def test_scaled_to_zero_by_hand() -> None:
    assert "scaled to 0 replicas by hand" in line(0, None, cpu_target=50)


def test_idle_at_min_replicas_names_the_floor_not_the_window() -> None:
    text = line(1, 0.0, cpu_target=60)
    assert text == (
        "not scaling down: at minReplicas (1); cpu utilization 0% of request is below the "
        "target 60%"
    )
