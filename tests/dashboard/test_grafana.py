"""The Grafana dashboard in deploy/grafana queries only series that ebbtide exports (or that
kube-state-metrics exports on a cluster), under the names a scrape shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ebbtide.dashboard.metrics import EndpointCollector
from ebbtide.dashboard.recorder import Recorder
from ebbtide.gateway.metrics import GatewayCollector
from ebbtide.testing import FakeClock, memory_store

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "ebbtide.json"
KUBE_STATE_METRICS = {
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_target_metric",
    "kube_deployment_status_replicas_ready",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every sample name our two collectors produce, as Prometheus scrapes them."""
    clock = FakeClock()
    registry = CollectorRegistry()
    registry.register(EndpointCollector(Recorder(memory_store(clock), lambda key: None, clock)))
    registry.register(GatewayCollector(lambda: [], lambda: {}))
    names = set()
    for family in registry.collect():
        for suffix in SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_every_query_names_a_series_that_exists() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = expressions(dashboard["panels"])
    assert len(queries) >= 10
    known = exported_names() | KUBE_STATE_METRICS
    used = {name for q in queries for name in re.findall(r"\b((?:ebbtide|kube)_[a-z_]+)\b", q)}
    assert used - known == set()
    for needed in (
        "ebbtide_endpoint_desired_replicas",
        "ebbtide_endpoint_ready_replicas",
        "ebbtide_endpoint_metric_value",
        "ebbtide_endpoint_metric_target",
        "ebbtide_endpoint_rescales_total",
        "ebbtide_gateway_requests_total",
        "ebbtide_gateway_request_duration_seconds_bucket",
    ):
        assert needed in used, needed
