"""The simulator's inputs measured on the live system: CPU per request and replica start time.

CPU per request is the replicas' CPU seconds (`process_cpu_seconds_total` of each replica's
`/metrics`) over the inference requests they answered (`ebbtide_requests_total` on the infer
and predict routes, 2xx), both as differences across a short constant load. It therefore
includes everything a replica does per request (HTTP parsing, JSON, the model), which is what
the simulator's service time stands for, plus the little a replica does besides (health
probes, metric scrapes), which over a few seconds of load is small. The start time is the
seconds from a scale request to the new replica's first ready observation, the median of a
few; it includes the control loop's reaction, as the simulator's start time does.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from ebbtide.core.errors import EbbtideError

INFERENCE_ROUTES = frozenset({"infer", "predict"})


class CalibrationError(EbbtideError):
    """Live measurements that cannot calibrate the simulator: no requests served, no starts."""


@dataclass(frozen=True)
class ReplicaCounters:
    """One replica's cumulative counters at one moment."""

    cpu_seconds: float
    requests: int


def parse_replica_metrics(text: str) -> ReplicaCounters:
    """CPU seconds and answered inference requests from a replica's Prometheus text."""
    cpu: float | None = None
    requests = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                cpu = sample.value
            elif (
                sample.name == "ebbtide_requests_total"
                and sample.labels.get("route") in INFERENCE_ROUTES
                and sample.labels.get("code", "").startswith("2")
            ):
                requests += sample.value
    if cpu is None:
        raise CalibrationError(
            "the replica's /metrics has no process_cpu_seconds_total; "
            "CPU time is only exported on Linux (/proc)"
        )
    return ReplicaCounters(cpu, int(requests))


def cpu_ms_per_request(
    before: Mapping[str, ReplicaCounters], after: Mapping[str, ReplicaCounters]
) -> float:
    """Milliseconds of replica CPU per request between two scrapes of every replica (by name).
    A replica absent before started in between: its counters count from zero."""
    zero = ReplicaCounters(0.0, 0)
    cpu = sum(now.cpu_seconds - before.get(name, zero).cpu_seconds for name, now in after.items())
    served = sum(now.requests - before.get(name, zero).requests for name, now in after.items())
    if served <= 0:
        raise CalibrationError("no inference requests were answered between the two scrapes")
    return 1000.0 * cpu / served


@dataclass(frozen=True)
class Calibration:
    """What the live system measured, as `ebbtide simulate` takes it."""

    cpu_ms: float
    start_time: float
    requests: int
    starts: tuple[float, ...]

    def options(self) -> str:
        return f"--cpu-ms {self.cpu_ms:.2f} --start-time {self.start_time:.2f}"


def calibrate(cpu_ms: float, requests: int, starts: Sequence[float]) -> Calibration:
    """Combine the measurements: the start time is the median of the observed starts."""
    if not starts:
        raise CalibrationError("no replica start was observed; scale the endpoint up once")
    return Calibration(cpu_ms, statistics.median(starts), requests, tuple(starts))
