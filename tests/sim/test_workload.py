"""Workloads: traces compressed and scaled, synthetic shapes, all deterministic under a seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.sim.workload import ServiceModel, WorkloadError, from_trace, synthetic

SERVICE = ServiceModel(mean=0.007, cv=0.3)


def write_trace(path: Path, seconds: list[float]) -> Path:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [f"2023-11-16 18:00:{s:010.7f},100,10" for s in seconds]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_trace_is_compressed_in_time(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.csv", [0.0, 10.0, 20.0, 40.0])
    workload = from_trace(trace, SERVICE, speedup=10)
    assert len(workload.arrivals) == 4
    assert workload.duration == pytest.approx(4.0)
    # Each arrival lands within the gap before the next one (after compression).
    for got, low, high in zip(workload.arrivals, [0, 1, 2, 4], [1, 2, 4, 4], strict=True):
        assert low <= got <= high


def test_rate_scale_multiplies_requests_and_keeps_the_shape(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.csv", [0.0, 1.0, 2.0, 30.0, 31.0])
    workload = from_trace(trace, SERVICE, rate_scale=3)
    assert len(workload.arrivals) == 15
    # Copies spread over the gap after each original arrival; the last one has no gap.
    assert sum(1 for a in workload.arrivals if a < 2) == 6
    assert sum(1 for a in workload.arrivals if 2 <= a < 30) == 3
    assert workload.arrivals[-3:] == (31.0, 31.0, 31.0)


def test_a_fractional_rate_scale_thins_by_a_seeded_draw(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.csv", [float(s) for s in range(50)])
    once = from_trace(trace, SERVICE, rate_scale=0.5, seed=4)
    again = from_trace(trace, SERVICE, rate_scale=0.5, seed=4)
    assert once == again
    assert 10 < len(once.arrivals) < 40


def test_a_csv_without_timestamps_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,tokens\n1,2\n")
    with pytest.raises(WorkloadError, match="no TIMESTAMP column"):
        from_trace(bad, SERVICE)


def test_a_missing_trace_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot be read"):
        from_trace(tmp_path / "absent.csv", SERVICE)


def test_a_spike_is_ten_times_the_base_for_a_sixth_of_the_time() -> None:
    workload = synthetic("spike", 100, 600, SERVICE, seed=1)
    inside = sum(1 for a in workload.arrivals if 200 <= a < 300)
    before = sum(1 for a in workload.arrivals if 100 <= a < 200)
    assert 8 < inside / before < 12


@pytest.mark.parametrize("shape", ["steps", "spike", "ramp", "diurnal"])
def test_synthetic_shapes_are_deterministic_under_a_seed(shape: str) -> None:
    first = synthetic(shape, 20, 120, SERVICE, seed=7)
    assert first == synthetic(shape, 20, 120, SERVICE, seed=7)
    assert first != synthetic(shape, 20, 120, SERVICE, seed=8)
    assert all(0 <= a < 120 for a in first.arrivals)


def test_explicit_steps() -> None:
    workload = synthetic("steps", 1, 30, SERVICE, steps="10:10,100:10,10:10", seed=2)
    middle = sum(1 for a in workload.arrivals if 10 <= a < 20)
    assert 800 < middle < 1200


def test_bad_steps_say_how_to_write_them() -> None:
    with pytest.raises(WorkloadError, match="RATE:SECONDS"):
        synthetic("steps", 1, 30, SERVICE, steps="10-10")


def test_an_unknown_shape_lists_the_known_ones() -> None:
    with pytest.raises(WorkloadError, match="steps, spike, ramp, diurnal"):
        synthetic("square", 1, 30, SERVICE)


def test_cpu_times_average_the_mean() -> None:
    workload = synthetic("ramp", 200, 60, SERVICE, seed=3)
    mean = sum(workload.cpu_seconds) / len(workload.cpu_seconds)
    assert mean == pytest.approx(0.007, rel=0.05)
