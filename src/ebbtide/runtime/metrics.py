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

A fresh replica does not import prometheus-client before it is ready: the import costs about
40 ms, an eighth of an ONNX replica's whole start. Until the registry exists, what is recorded
is kept in plain Python (a list of finished requests, the gauges' last values); once the model
is ready a background thread imports the library, builds the registry and replays that record,
while the event loop goes on serving. A scrape before then builds it at once. In a process that
already imported the library (a child forked from a warm parent) it is built at once.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MAX_PENDING = 10_000
"""Records kept before the registry exists; one more builds it at once rather than grow."""


class ServerMetrics:
    """One registry per server, built when first needed; label children are cached so
    recording stays cheap. Recording is called from the event loop's thread only."""

    def __init__(self, model: str, version: str) -> None:
        self._labels = (model, version)
        self._live: _Registry | None = None
        self._lock = threading.Lock()
        self._pending_requests: list[tuple[str, int, float | None]] = []
        self._pending_batches: list[int] = []
        self._gauges: dict[str, float] = {"ready": 0.0, "in_flight": 0.0}
        """The gauges' last values, by `_Registry` attribute (load_seconds once known)."""
        if "prometheus_client" in sys.modules:
            self.build()

    def build(self) -> None:
        """Import prometheus-client, build the registry and replay what was recorded (once)."""
        if self._live is not None:
            return
        import prometheus_client  # noqa: F401  # outside the lock: the import is the slow part

        with self._lock:
            if self._live is not None:
                return
            live = _Registry(*self._labels)
            for route, code, seconds in self._pending_requests:
                live.record(route, code, seconds)
            for rows in self._pending_batches:
                live.batch_size.observe(rows)
            for name, value in self._gauges.items():
                getattr(live, name).set(value)
            self._pending_requests.clear()
            self._pending_batches.clear()
            self._live = live

    def build_in_background(self) -> None:
        """Build in a daemon thread, so that the event loop goes on serving meanwhile."""
        if self._live is None:
            threading.Thread(target=self.build, name="metrics-registry", daemon=True).start()

    def record(self, route: str, code: int, seconds: float | None) -> None:
        """Count one finished request; `seconds` for inference routes."""
        if self._live is None and self._keep(self._pending_requests, (route, code, seconds)):
            return
        assert self._live is not None
        self._live.record(route, code, seconds)

    def record_batch(self, rows: int) -> None:
        if self._live is None and self._keep(self._pending_batches, rows):
            return
        assert self._live is not None
        self._live.batch_size.observe(rows)

    def set_ready(self, ready: bool) -> None:
        self._gauge("ready", 1.0 if ready else 0.0)

    def set_load_seconds(self, seconds: float) -> None:
        self._gauge("load_seconds", seconds)

    def request_started(self) -> None:
        self._gauge("in_flight", self._gauges["in_flight"] + 1)

    def request_ended(self) -> None:
        self._gauge("in_flight", self._gauges["in_flight"] - 1)

    def render(self) -> tuple[bytes, str]:
        """The exposition and its content type."""
        self.build()
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        assert self._live is not None
        return generate_latest(self._live.registry), CONTENT_TYPE_LATEST

    def _keep(self, pending: list[Any], item: Any) -> bool:
        """Keep `item` for the replay; False when the registry exists (or was just built)."""
        with self._lock:
            if self._live is None and len(pending) < MAX_PENDING:
                pending.append(item)
                return True
        self.build()
        return False

    def _gauge(self, name: str, value: float) -> None:
        live = self._live
        if live is None:  # the build thread may be replaying `_gauges`: under the lock
            with self._lock:
                self._gauges[name] = value
                live = self._live
            if live is None:
                return
        else:
            self._gauges[name] = value
        getattr(live, name).set(value)


class _Registry:
    """The prometheus-client side: a registry, its metrics and their label children."""

    def __init__(self, model: str, version: str) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
            disable_created_metrics,
        )

        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` adds only noise
        self.registry: CollectorRegistry = CollectorRegistry()
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
        self.batch_size = Histogram(
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
        self._counters: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    def record(self, route: str, code: int, seconds: float | None) -> None:
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
