"""The replica's Prometheus metrics, served at `GET /metrics`.

- `ebbtide_requests_total{route, code}`: requests by route (infer, predict, health, metadata,
  metrics, other) and HTTP status code.
- `ebbtide_request_duration_seconds{route}`: latency of inference requests (infer, predict),
  from the first byte the app sees to the last byte it sends.
- `ebbtide_requests_in_flight`: inference requests being served now.
- `ebbtide_batch_size`: rows per model call when batching is on.
- `ebbtide_model_load_seconds`, `ebbtide_model_ready`: how long loading took; 1 when ready.
- `process_*`: CPU seconds, resident memory and open files of the replica process.

Every series carries `model` and `version` labels.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """One registry per server; label children are cached so recording stays cheap."""

    def __init__(self, model: str, version: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` adds only noise
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        labels = {"model": model, "version": version}
        self._requests = Counter(
            "ebbtide_requests",
            "Requests by route and HTTP status code.",
            ["model", "version", "route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "ebbtide_request_duration_seconds",
            "Latency of inference requests.",
            ["model", "version", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ebbtide_requests_in_flight",
            "Inference requests being served.",
            ["model", "version"],
            registry=self.registry,
        ).labels(**labels)
        self._batch_size = Histogram(
            "ebbtide_batch_size",
            "Rows per model call with batching on.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.load_seconds = Gauge(
            "ebbtide_model_load_seconds",
            "Seconds the model took to load.",
            ["model", "version"],
            registry=self.registry,
        ).labels(**labels)
        self.ready = Gauge(
            "ebbtide_model_ready",
            "1 when the model is loaded and the server is not draining.",
            ["model", "version"],
            registry=self.registry,
        ).labels(**labels)
        self._labels = (model, version)
        self._counters: dict[tuple[str, int], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def record(self, route: str, code: int, seconds: float | None) -> None:
        """Count one finished request; `seconds` for inference routes."""
        counter = self._counters.get((route, code))
        if counter is None:
            counter = self._requests.labels(*self._labels, route, str(code))
            self._counters[(route, code)] = counter
        counter.inc()
        if seconds is not None:
            histogram = self._histograms.get(route)
            if histogram is None:
                histogram = self._latency.labels(*self._labels, route)
                self._histograms[route] = histogram
            histogram.observe(seconds)

    def record_batch(self, rows: int) -> None:
        self._batch_size.observe(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
