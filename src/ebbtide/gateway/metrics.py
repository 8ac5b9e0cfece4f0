"""The gateway's own Prometheus metrics, read from its counters when scraped.

A collector rather than prometheus_client's Counter and Histogram objects: the hot path then
pays nothing for metrics it already counts once in `TrafficStats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ebbtide.core.latency import COARSE_BOUNDS, LATENCY_BOUNDS
from ebbtide.gateway.endpoint import EndpointState

LABELS = ["namespace", "endpoint"]


class GatewayCollector(Collector):
    """Requests by endpoint and status, latency, in-flight, queued and replicas per endpoint."""

    def __init__(
        self,
        endpoints: Callable[[], Iterable[EndpointState]],
        unrouted: Callable[[], dict[int, int]],
    ) -> None:
        self._endpoints = endpoints
        self._unrouted = unrouted

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ebbtide_gateway_requests",
            "Requests answered, by endpoint and HTTP status (499: the client left first).",
            labels=[*LABELS, "code"],
        )
        latency = HistogramMetricFamily(
            "ebbtide_gateway_request_duration_seconds",
            "Time from a request's arrival at the gateway to the end of its answer.",
            labels=LABELS,
        )
        in_flight = GaugeMetricFamily(
            "ebbtide_gateway_in_flight_requests",
            "Requests sent to replicas, not yet answered.",
            labels=LABELS,
        )
        queued = GaugeMetricFamily(
            "ebbtide_gateway_queued_requests",
            "Requests waiting for a free replica or held at zero replicas.",
            labels=LABELS,
        )
        upstreams = GaugeMetricFamily(
            "ebbtide_gateway_upstreams", "Replicas in rotation.", labels=LABELS
        )
        retries = CounterMetricFamily(
            "ebbtide_gateway_retries",
            "Requests sent to another replica after one refused the connection.",
            labels=LABELS,
        )
        for status, count in sorted(self._unrouted().items()):
            requests.add_metric(["", "", str(status)], count)
        for endpoint in self._endpoints():
            labels = [endpoint.route.namespace, endpoint.route.endpoint]
            stats = endpoint.stats
            for status, count in sorted(stats.statuses.items()):
                requests.add_metric([*labels, str(status)], count)
            latency.add_metric(labels, _coarse_buckets(stats.latency_counts), stats.latency_sum)
            in_flight.add_metric(labels, endpoint.in_flight())
            queued.add_metric(labels, endpoint.queued)
            upstreams.add_metric(labels, endpoint.rotation_size)
            retries.add_metric(labels, stats.retries)
        yield from (requests, latency, in_flight, queued, upstreams, retries)


def _coarse_buckets(counts: list[int]) -> list[tuple[str, float]]:
    cumulative = list(accumulate(counts))
    buckets = [
        (repr(bound), float(cumulative[LATENCY_BOUNDS.index(bound)])) for bound in COARSE_BOUNDS
    ]
    buckets.append(("+Inf", float(cumulative[-1])))
    return buckets
