"""How the control plane's parts meet: the gateway as the controller sees it.

The controller and the gateway sit in the same layer and do not import each other; the
controller states what it needs (`GatewayPort`) and this adapter answers it with the gateway
workers, which run as processes of their own (`GatewayFleet`).
"""

from __future__ import annotations

from ebbtide.autoscaler.observation import Traffic
from ebbtide.core.clock import Clock
from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.daemon.gateway_fleet import GatewayFleet
from ebbtide.gateway import Route, Upstream
from ebbtide.gateway.channel import RouteEntry
from ebbtide.gateway.routes import parse_address
from ebbtide.gateway.traffic import TrafficSnapshot
from ebbtide.spec import InferenceEndpoint
from ebbtide.spec.models import DEFAULT_NAMESPACE
from ebbtide.store import ObjectKey


class GatewayAdapter:
    """`ebbtide.controller.GatewayPort` over the gateway workers."""

    def __init__(self, fleet: GatewayFleet, clock: Clock) -> None:
        self.fleet = fleet
        self.clock = clock

    def publish(
        self, key: ObjectKey, endpoint: InferenceEndpoint, upstreams: list[tuple[str, str]]
    ) -> None:
        model = endpoint.spec.model
        zero = endpoint.spec.autoscaling.scale_to_zero
        hold = zero.hold_timeout_seconds if zero is not None else None
        route = Route(key.namespace, key.name, model.name, model.version, hold_timeout=hold)
        entry = RouteEntry(route, tuple(Upstream(name, address) for name, address in upstreams))
        for upstream in entry.upstreams:
            parse_address(upstream.address)  # refused here, not in every worker
        self.fleet.publish(entry)

    def withdraw(self, key: ObjectKey) -> None:
        self.fleet.withdraw((key.namespace, key.name))

    def in_flight(self, key: ObjectKey, upstream: str) -> int:
        return self.fleet.in_flight((key.namespace, key.name), upstream)

    def traffic(self, key: ObjectKey) -> Traffic | None:
        report = self.fleet.traffic((key.namespace, key.name))
        return None if report is None else report.traffic()

    def url(self, key: ObjectKey) -> str:
        host, port = self.fleet.address
        path = key.name if key.namespace == DEFAULT_NAMESPACE else f"{key.namespace}/{key.name}"
        return f"http://{host}:{port}/endpoints/{path}"

    def snapshot(self, key: ObjectKey) -> TrafficSnapshot | None:
        """The endpoint's full counters (latencies included) for the dashboard, summed over the
        gateway workers as their last reports gave them."""
        report = self.fleet.traffic((key.namespace, key.name))
        if report is None:
            return None
        buckets = report.latency_counts or (0,) * (len(LATENCY_BOUNDS) + 1)
        return TrafficSnapshot(
            taken_at=self.clock.now(),
            in_flight=report.in_flight,
            queued=report.queued,
            upstreams=report.upstreams,
            upstream_in_flight=report.upstream_in_flight,
            arrivals=report.arrivals,
            completions=report.completions,
            errors=report.errors,
            rejected=report.rejected,
            retries=report.retries,
            concurrency_seconds=report.concurrency_seconds,
            latency_counts=buckets,
            latency_sum=report.latency_sum,
        )
