"""The simulated platform: what a replica is and what the gateway does, the same for every policy.

A replica is one core. It becomes ready `start_time` seconds after a policy asks for it, then
serves at most `concurrency` requests at once, sharing the core among them (processor sharing,
as threads of one process share a core) or one after another (FIFO). The gateway routes each
request to the less busy of two ready replicas picked at random (power of two choices), queues
it when every ready replica is at its cap, answers 503 when its queue is full, and gives up on a
request that has waited past the client's timeout. A replica asked to stop leaves rotation,
finishes what it holds, then stops; it costs from the moment it was asked for until it stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Platform:
    """Platform constants shared by every policy in a comparison."""

    start_time: float = 1.0
    """Seconds from a scale-up decision until the new replica is ready."""
    concurrency: int = 4
    """Requests one replica serves at once; more wait in the gateway's queue."""
    discipline: Literal["ps", "fifo"] = "ps"
    """How a replica shares its core: processor sharing or first in, first out."""
    queue_capacity: int = 2000
    """Requests the gateway holds for an endpoint; beyond it, 503."""
    timeout: float = 30.0
    """Seconds a client waits before giving up on a request."""
    objective: float = 0.1
    """The latency objective in seconds (p99): requests over it count against a policy."""
