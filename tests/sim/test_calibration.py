"""Calibration from replica /metrics: parsing, CPU per request, the start-time median."""

from __future__ import annotations

import pytest

from ebbtide.sim.calibration import (
    CalibrationError,
    ReplicaCounters,
    calibrate,
    cpu_ms_per_request,
    parse_replica_metrics,
)

METRICS = """\
# HELP ebbtide_requests_total Requests by route and status code.
# TYPE ebbtide_requests_total counter
ebbtide_requests_total{code="200",model="m",route="infer",version="v1"} 120.0
ebbtide_requests_total{code="200",model="m",route="predict",version="v1"} 30.0
ebbtide_requests_total{code="400",model="m",route="infer",version="v1"} 5.0
ebbtide_requests_total{code="200",model="m",route="health",version="v1"} 900.0
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 2.5
"""


def test_parse_counts_answered_inference_only() -> None:
    assert parse_replica_metrics(METRICS) == ReplicaCounters(cpu_seconds=2.5, requests=150)


def test_parse_without_cpu_says_why() -> None:
    text = METRICS.split("# HELP process")[0]
    with pytest.raises(CalibrationError, match="process_cpu_seconds_total"):
        parse_replica_metrics(text)


def test_cpu_per_request_sums_replicas_and_counts_new_ones_from_zero() -> None:
    before = {"a": ReplicaCounters(1.0, 100)}
    after = {"a": ReplicaCounters(1.6, 180), "b": ReplicaCounters(0.15, 20)}
    assert cpu_ms_per_request(before, after) == pytest.approx(7.5)


def test_cpu_per_request_needs_requests() -> None:
    same = {"a": ReplicaCounters(1.0, 100)}
    with pytest.raises(CalibrationError, match="no inference requests"):
        cpu_ms_per_request(same, same)


def test_calibrate_takes_the_median_start_and_prints_simulate_options() -> None:
    calibration = calibrate(7.456, 300, [0.30, 0.05, 0.07])
    assert calibration.start_time == pytest.approx(0.07)
    assert calibration.options() == "--cpu-ms 7.46 --start-time 0.07"
    with pytest.raises(CalibrationError):
        calibrate(7.0, 300, [])
