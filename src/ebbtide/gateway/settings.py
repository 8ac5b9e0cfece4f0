"""The gateway's knobs, with local defaults and why they are what they are."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and timeouts of the data plane. Every duration is in seconds."""

    max_outstanding_per_upstream: int = 32
    """Requests one replica may have in flight at once; more wait in the endpoint's queue,
    where the balancer can still send them to whichever replica frees up first."""

    queue_length: int = 512
    """Requests one endpoint may hold waiting (for a free replica, or for the first replica
    at zero). One more is refused at once with 503 and `Retry-After`."""

    queue_timeout: float = 30.0
    """How long a request waits for a busy endpoint's free replica before 503."""

    hold_timeout: float = 30.0
    """How long a request waits at zero replicas (scale from zero, or every replica refused
    it) for one to become ready before 503. Longer than a replica start, by a wide margin."""

    retry_after_seconds: int = 1
    """The `Retry-After` header of a 503."""

    connect_timeout: float = 1.0
    """Connecting to a replica on this machine is instant; longer means its accept queue is
    full, and the request is better tried elsewhere."""

    upstream_timeout: float = 300.0
    """How long a replica may take to answer, from sending it the request to the last byte."""

    pool_idle_timeout: float = 2.0
    """Idle keep-alive connections to a replica close after this, before the replica's own
    keep-alive timeout (uvicorn's is 5 s) can close one under a request being sent."""

    connect_failure_cooldown: float = 1.0
    """After a replica refuses a connection, the balancer prefers others for this long."""

    demand_interval: float = 1.0
    """At zero replicas, `on_demand` is called at most once per this interval per endpoint."""

    retry_unanswered: bool = False
    """Also retry a request whose replica closed the connection before any byte of an
    answer (a replica killed mid-request). Inference changes nothing, so this is safe for it,
    but a replica did receive the request, so it is off unless asked for."""

    max_request_bytes: int = 64 * 1024 * 1024
    """The largest request body accepted (413 above it); bodies are read whole so that a
    request can be retried on another replica."""

    max_head_bytes: int = 64 * 1024
    """The largest request or response head (start line and headers)."""

    housekeeping_interval: float = 0.05
    """How often queue and hold timeouts and idle connections are checked: the precision of
    those timeouts."""

    def __post_init__(self) -> None:
        for name in ("max_outstanding_per_upstream", "max_request_bytes", "max_head_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"GatewaySettings.{name} must be at least 1")
        for name in ("queue_length", "retry_after_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"GatewaySettings.{name} must not be negative")
        for name in (
            "queue_timeout",
            "hold_timeout",
            "connect_timeout",
            "upstream_timeout",
            "pool_idle_timeout",
            "connect_failure_cooldown",
            "demand_interval",
            "housekeeping_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"GatewaySettings.{name} must be a positive number of seconds")
