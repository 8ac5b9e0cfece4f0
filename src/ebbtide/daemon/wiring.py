"""How the control plane's parts meet: the gateway as the controller sees it.

The controller and the gateway sit in the same layer and do not import each other; the
controller states what it needs (`GatewayPort`) and this adapter answers it with the real
gateway.
"""

from __future__ import annotations

from ebbtide.autoscaler.observation import Traffic
from ebbtide.core.errors import NotFoundError
from ebbtide.gateway import Gateway, Route, Upstream
from ebbtide.gateway.traffic import TrafficSnapshot
from ebbtide.spec import InferenceEndpoint
from ebbtide.spec.models import DEFAULT_NAMESPACE
from ebbtide.store import ObjectKey


class GatewayAdapter:
    """`ebbtide.controller.GatewayPort` over a running `Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def publish(
        self, key: ObjectKey, endpoint: InferenceEndpoint, upstreams: list[tuple[str, str]]
    ) -> None:
        model = endpoint.spec.model
        zero = endpoint.spec.autoscaling.scale_to_zero
        hold = zero.hold_timeout_seconds if zero is not None else None
        route = Route(key.namespace, key.name, model.name, model.version, hold_timeout=hold)
        self.gateway.set_upstreams(route, [Upstream(name, address) for name, address in upstreams])

    def withdraw(self, key: ObjectKey) -> None:
        self.gateway.remove_route(key.namespace, key.name)

    def in_flight(self, key: ObjectKey, upstream: str) -> int:
        return self.gateway.in_flight(key.namespace, key.name, upstream)

    def traffic(self, key: ObjectKey) -> Traffic | None:
        if key.name not in {
            r.endpoint for r in self.gateway.routes() if r.namespace == key.namespace
        }:
            return None
        snapshot = self.gateway.traffic(key.namespace, key.name)
        return Traffic(
            in_flight=float(snapshot.concurrency),
            requests_total=snapshot.arrivals,
            in_flight_seconds=snapshot.concurrency_seconds,
        )

    def url(self, key: ObjectKey) -> str:
        host, port = self.gateway.address
        path = key.name if key.namespace == DEFAULT_NAMESPACE else f"{key.namespace}/{key.name}"
        return f"http://{host}:{port}/endpoints/{path}"

    def snapshot(self, key: ObjectKey) -> TrafficSnapshot | None:
        """The endpoint's full counters (latencies included) for the dashboard."""
        try:
            return self.gateway.traffic(key.namespace, key.name)
        except NotFoundError:
            return None
