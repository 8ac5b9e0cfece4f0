"""The dashboard's numbers as Prometheus series on the control plane's /metrics.

Read from the recorder when scraped, so a scrape costs nothing between scrapes and shows the
same values as the page: replicas desired and ready, each scaling metric and its target, and
the rescales since the control plane started, by reason.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ebbtide.dashboard.recorder import Recorder

LABELS = ["namespace", "endpoint"]


class EndpointCollector(Collector):
    """Per-endpoint replicas, metrics against targets and rescale counts."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterator[Metric]:
        desired = GaugeMetricFamily(
            "ebbtide_endpoint_desired_replicas",
            "The replica count the autoscaler asks for.",
            labels=LABELS,
        )
        ready = GaugeMetricFamily(
            "ebbtide_endpoint_ready_replicas", "Replicas ready and in rotation.", labels=LABELS
        )
        starting = GaugeMetricFamily(
            "ebbtide_endpoint_starting_replicas", "Replicas created, not ready yet.", labels=LABELS
        )
        draining = GaugeMetricFamily(
            "ebbtide_endpoint_draining_replicas",
            "Replicas out of rotation, finishing their requests.",
            labels=LABELS,
        )
        value = GaugeMetricFamily(
            "ebbtide_endpoint_metric_value",
            "Each scaling metric's current per-replica value, in its target's unit.",
            labels=[*LABELS, "metric", "unit"],
        )
        target = GaugeMetricFamily(
            "ebbtide_endpoint_metric_target",
            "Each scaling metric's target.",
            labels=[*LABELS, "metric", "unit"],
        )
        rescales = CounterMetricFamily(
            "ebbtide_endpoint_rescales",
            "Changes of the replica count since the control plane started, by reason.",
            labels=[*LABELS, "reason"],
        )
        histories = self._recorder.histories.items()
        for key, history in sorted(histories, key=lambda item: (item[0].namespace, item[0].name)):
            labels = [key.namespace, key.name]
            for reason, count in sorted(history.rescales.items()):
                rescales.add_metric([*labels, reason], count)
            point = history.latest
            if point is None:
                continue
            desired.add_metric(labels, point.replicas.desired)
            ready.add_metric(labels, point.replicas.ready)
            starting.add_metric(labels, point.replicas.starting)
            draining.add_metric(labels, point.replicas.draining)
            for reading in point.metrics:
                metric_labels = [*labels, reading.name, reading.unit]
                target.add_metric(metric_labels, reading.target)
                if reading.value is not None:
                    value.add_metric(metric_labels, reading.value)
        yield from (desired, ready, starting, draining, value, target, rescales)
