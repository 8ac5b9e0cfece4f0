"""What to change, given what is wanted and what runs: a pure function, like a ReplicaSet's.

Scaling and rolling updates are one plan. Replicas of the current template are "new", others
"old". The plan starts new replicas up to `desired + maxSurge` in all, and stops an old replica
only while enough ready replicas remain (`desired - maxUnavailable`), so a rollout never leaves
fewer ready replicas than the user asked to keep, and the gateway always has somewhere to send
a request. Stopping means draining first; the executor does that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ObservedReplica:
    """What the plan needs to know of one replica."""

    name: str
    template_hash: str
    ready: bool
    started_at: float
    terminating: bool = False


@dataclass(frozen=True)
class RolloutSettings:
    """Deployment-style rollout bounds, as counts of replicas.

    The local default surges by one and never drops below the desired ready count: a
    replica starts in well under a second, so a gentle rollout costs little and keeps the
    endpoint's full capacity throughout.
    """

    max_surge: int = 1
    max_unavailable: int = 0


@dataclass(frozen=True)
class Plan:
    """Replicas to start (of the current template) and replicas to drain and stop."""

    start: int
    stop: tuple[str, ...]
    reason: str

    @property
    def empty(self) -> bool:
        return self.start == 0 and not self.stop


def plan(
    desired: int,
    template_hash: str,
    replicas: Sequence[ObservedReplica],
    rollout: RolloutSettings = RolloutSettings(),
) -> Plan:
    """The next step towards `desired` ready replicas of `template_hash`."""
    live = [r for r in replicas if not r.terminating]
    new = [r for r in live if r.template_hash == template_hash]
    old = [r for r in live if r.template_hash != template_hash]
    if not old:
        return _scale(desired, new)
    return _roll(desired, new, old, rollout)


def _scale(desired: int, new: list[ObservedReplica]) -> Plan:
    if len(new) < desired:
        missing = desired - len(new)
        return Plan(missing, (), f"scaling up from {len(new)} to {desired}")
    if len(new) > desired:
        extra = _removal_order(new)[: len(new) - desired]
        return Plan(0, tuple(r.name for r in extra), f"scaling down from {len(new)} to {desired}")
    return Plan(0, (), "at the desired count")


def _roll(
    desired: int,
    new: list[ObservedReplica],
    old: list[ObservedReplica],
    rollout: RolloutSettings,
) -> Plan:
    ceiling = desired + max(rollout.max_surge, 0 if rollout.max_unavailable else 1)
    start = max(0, min(desired - len(new), ceiling - len(new) - len(old)))
    ready = sum(1 for r in new if r.ready) + sum(1 for r in old if r.ready)
    floor = max(0, desired - rollout.max_unavailable)
    removable = []
    # Unready old replicas serve nothing: stopping them never costs capacity.
    for replica in _removal_order(old):
        if not replica.ready:
            removable.append(replica)
        elif ready - 1 >= floor:
            removable.append(replica)
            ready -= 1
    reason = (
        f"rolling update: {len(new)} new ({sum(1 for r in new if r.ready)} ready), "
        f"{len(old)} old; starting {start}, stopping {len(removable)}"
    )
    return Plan(start, tuple(r.name for r in removable), reason)


def _removal_order(replicas: list[ObservedReplica]) -> list[ObservedReplica]:
    """As a ReplicaSet picks victims: not-ready before ready, then the newest first."""
    return sorted(replicas, key=lambda r: (r.ready, -r.started_at))
