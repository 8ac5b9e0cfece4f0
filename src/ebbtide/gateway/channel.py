"""The channel between a gateway process and the control plane that feeds it.

A unix stream socket in the state directory (`gateway-<worker>.sock`, mode 0600: only the
owner may route traffic), one JSON object per line each way. The control plane connects; a
newer connection replaces an older one, so a restarted control plane takes over at once.

    gateway → control plane, first line of every connection, with the gateway's listening
    TCP socket attached (SCM_RIGHTS), so a control plane that restarts holds it too:
        {"event": "hello", "protocol": 1, "pid": P, "worker": W, "address": [HOST, PORT],
         "routes": [ROUTE, ...]}
    control plane → gateway:
        {"op": "set", "seq": N, "route": ROUTE}         serve exactly ROUTE's upstreams
        {"op": "remove", "seq": N, "namespace": NS, "endpoint": EP}
        {"op": "synced", "seq": N}      every route given: a starting gateway begins to serve
        {"op": "stop", "seq": N, "grace": SECONDS}      finish in-flight requests and exit
    gateway → control plane:
        {"event": "traffic", "applied": N, "endpoints": [REPORT, ...]}
            every report interval (50 ms) and after each op; `applied` is the last op's seq
        {"event": "demand", "namespace": NS, "endpoint": EP}   a request waits at zero
        {"event": "error", "seq": N, "reason": TEXT}           an op that changed nothing

    ROUTE  = {"namespace", "endpoint", "model_name", "model_version", "hold_timeout",
              "upstreams": [[NAME, ADDRESS], ...]}
    REPORT = {"namespace", "endpoint", "in_flight", "queued", "upstreams",
              "upstream_in_flight": {NAME: N}, "arrivals", "completions", "errors",
              "rejected", "retries", "concurrency_seconds"}

Counters are cumulative since the gateway process started; the control plane adds up those of
a gateway that was restarted, so its windows never see a counter go down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ebbtide.gateway.routes import Route, Upstream
from ebbtide.gateway.traffic import TrafficSnapshot

if TYPE_CHECKING:
    from ebbtide.autoscaler.observation import Traffic

PROTOCOL = 1
REPORT_INTERVAL = 0.05
"""Seconds between traffic reports: what a drain waits at most beyond its last request."""
SYNC_TIMEOUT = 5.0
"""The longest a starting gateway waits for `synced` before it serves whatever it has (a
gateway run without a control plane serves after this, with no routes until one connects)."""


class ChannelError(ValueError):
    """A line that is not a message of this protocol. It never leaves the channel's two ends
    (they log it and drop the line), so it is not part of `ebbtide.core.errors`."""


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise ChannelError(f"not JSON: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ChannelError(f"not an object: {line[:200]!r}")
    return message


@dataclass(frozen=True)
class RouteEntry:
    """A route and its ready replicas, as the channel carries them."""

    route: Route
    upstreams: tuple[Upstream, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "namespace": self.route.namespace,
            "endpoint": self.route.endpoint,
            "model_name": self.route.model_name,
            "model_version": self.route.model_version,
            "hold_timeout": self.route.hold_timeout,
            "upstreams": [[u.name, u.address] for u in self.upstreams],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RouteEntry:
        try:
            hold = data.get("hold_timeout")
            route = Route(
                str(data["namespace"]),
                str(data["endpoint"]),
                str(data["model_name"]),
                str(data["model_version"]),
                hold_timeout=None if hold is None else float(hold),
            )
            upstreams = tuple(Upstream(str(n), str(a)) for n, a in data.get("upstreams", []))
        except (KeyError, TypeError, ValueError) as error:
            raise ChannelError(f"not a route: {error!r} in {dict(data)!r}") from None
        return cls(route, upstreams)


@dataclass(frozen=True)
class EndpointReport:
    """One endpoint's counters in one gateway process, as the channel carries them."""

    namespace: str
    endpoint: str
    in_flight: int = 0
    queued: int = 0
    upstreams: int = 0
    upstream_in_flight: Mapping[str, int] = field(default_factory=dict)
    arrivals: int = 0
    completions: int = 0
    errors: int = 0
    rejected: int = 0
    retries: int = 0
    concurrency_seconds: float = 0.0
    latency_counts: tuple[int, ...] = ()
    """Answers per latency bucket (`ebbtide.gateway.traffic.LATENCY_BOUNDS`); empty: none yet."""
    latency_sum: float = 0.0

    @classmethod
    def of(cls, namespace: str, endpoint: str, snapshot: TrafficSnapshot) -> EndpointReport:
        return cls(
            namespace,
            endpoint,
            in_flight=snapshot.in_flight,
            queued=snapshot.queued,
            upstreams=snapshot.upstreams,
            upstream_in_flight=dict(snapshot.upstream_in_flight),
            arrivals=snapshot.arrivals,
            completions=snapshot.completions,
            errors=snapshot.errors,
            rejected=snapshot.rejected,
            retries=snapshot.retries,
            concurrency_seconds=snapshot.concurrency_seconds,
            latency_counts=tuple(snapshot.latency_counts),
            latency_sum=snapshot.latency_sum,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "endpoint": self.endpoint,
            "in_flight": self.in_flight,
            "queued": self.queued,
            "upstreams": self.upstreams,
            "upstream_in_flight": dict(self.upstream_in_flight),
            "arrivals": self.arrivals,
            "completions": self.completions,
            "errors": self.errors,
            "rejected": self.rejected,
            "retries": self.retries,
            "concurrency_seconds": self.concurrency_seconds,
            "latency_counts": list(self.latency_counts),
            "latency_sum": self.latency_sum,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> EndpointReport:
        try:
            return cls(
                str(data["namespace"]),
                str(data["endpoint"]),
                in_flight=int(data["in_flight"]),
                queued=int(data["queued"]),
                upstreams=int(data["upstreams"]),
                upstream_in_flight={
                    str(k): int(v) for k, v in dict(data["upstream_in_flight"]).items()
                },
                arrivals=int(data["arrivals"]),
                completions=int(data["completions"]),
                errors=int(data["errors"]),
                rejected=int(data["rejected"]),
                retries=int(data["retries"]),
                concurrency_seconds=float(data["concurrency_seconds"]),
                latency_counts=tuple(int(n) for n in data.get("latency_counts", ())),
                latency_sum=float(data.get("latency_sum", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ChannelError(f"not a traffic report: {error!r}") from None

    def plus(self, later: EndpointReport) -> EndpointReport:
        """This report's counters and `later`'s added up (two gateway processes, or a gone
        process's base and its successor): gauges add too, `upstreams` is the larger."""
        in_flight = dict(self.upstream_in_flight)
        for name, count in later.upstream_in_flight.items():
            in_flight[name] = in_flight.get(name, 0) + count
        return EndpointReport(
            later.namespace,
            later.endpoint,
            in_flight=self.in_flight + later.in_flight,
            queued=self.queued + later.queued,
            upstreams=max(self.upstreams, later.upstreams),
            upstream_in_flight=in_flight,
            arrivals=self.arrivals + later.arrivals,
            completions=self.completions + later.completions,
            errors=self.errors + later.errors,
            rejected=self.rejected + later.rejected,
            retries=self.retries + later.retries,
            concurrency_seconds=self.concurrency_seconds + later.concurrency_seconds,
            latency_counts=_summed(self.latency_counts, later.latency_counts),
            latency_sum=self.latency_sum + later.latency_sum,
        )

    def traffic(self) -> Traffic:
        """What the autoscaler reads of this report, for whichever control plane decides
        (local or the operator)."""
        # Imported here: the gateway process itself never decides, and its start stays lean.
        from ebbtide.autoscaler.observation import Traffic

        return Traffic(
            in_flight=float(self.in_flight + self.queued),
            requests_total=self.arrivals,
            in_flight_seconds=self.concurrency_seconds,
            latency_counts=tuple(self.latency_counts),
            latency_sum=self.latency_sum,
        )

    def counters_only(self) -> EndpointReport:
        """A gone process's report as a base: its counters, none of its gauges."""
        return EndpointReport(
            self.namespace,
            self.endpoint,
            arrivals=self.arrivals,
            completions=self.completions,
            errors=self.errors,
            rejected=self.rejected,
            retries=self.retries,
            concurrency_seconds=self.concurrency_seconds,
            latency_counts=self.latency_counts,
            latency_sum=self.latency_sum,
        )


def _summed(earlier: tuple[int, ...], later: tuple[int, ...]) -> tuple[int, ...]:
    """Two histograms' buckets added; an empty one (no answers reported) adds nothing."""
    if not earlier or not later:
        return earlier or later
    return tuple(a + b for a, b in zip(earlier, later, strict=True))


def traffic_message(applied: int, reports: Sequence[EndpointReport]) -> dict[str, Any]:
    return {"event": "traffic", "applied": applied, "endpoints": [r.to_wire() for r in reports]}


def control_socket_name(worker: int) -> str:
    """The control channel's file name in the state directory for gateway worker `worker`."""
    return f"gateway-{worker}.sock"
