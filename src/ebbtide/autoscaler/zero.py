"""Scale to zero, for endpoints with `minReplicas: 0`.

An endpoint is idle once no request has arrived or been in flight for the idle period (30 s by
default); then its last replica drains and stops, skipping the stabilization window (the idle
period is that window). While requests are recent, it keeps at least one replica even when the
metrics would allow none. At zero, any request arriving or held by the gateway asks for a
replica at once, without waiting for a window or a rate limit: the gateway holds the request
until the replica is ready.
"""

from __future__ import annotations

from dataclasses import replace

from ebbtide.autoscaler.policy import Policy
from ebbtide.autoscaler.state import State
from ebbtide.autoscaler.windows import Sample


def requested(previous: Sample | None, latest: Sample) -> bool:
    """Whether the gateway holds a request now or received one since the previous reading."""
    if latest.in_flight is not None and latest.in_flight > 0:
        return True
    if previous is None or previous.requests_total is None or latest.requests_total is None:
        return False
    return latest.requests_total > previous.requests_total


def note_requests(state: State, previous: Sample | None, latest: Sample) -> State:
    """Remember when requests were last seen; the first reading starts the idle clock."""
    if requested(previous, latest) or state.last_request_at is None:
        return replace(state, last_request_at=latest.time)
    return state


def idle(state: State, policy: Policy, now: float) -> bool:
    """No request for the whole idle period (and the gateway has reported at all)."""
    if state.last_request_at is None or not state.samples:
        return False
    if state.samples[-1].requests_total is None:
        return False
    return now - state.last_request_at >= policy.zero.idle_period


def idle_message(policy: Policy) -> str:
    return (
        f"no request for {policy.zero.idle_period:g} s: scaled to zero; the next request "
        "starts a replica and waits for it"
    )
