"""The latency objective step: how many replicas the observed latency asks for.

The gateway measures each answer's latency into fixed buckets (`latency_counts` over
`bounds`, one more bucket for everything above). Over one metric window the step reads the
objective's percentile from those counts and compares it with the objective:

- over the objective: more replicas, in proportion to how far over (queueing delay grows
  faster than linearly as replicas fill up, so the ratio is a floor, and at least one more);
- within it: no floor from the objective; the other targets decide, so an endpoint never runs
  more replicas than they ask for just because latency is good;
- over it at `maxReplicas`: the objective cannot be met, and the reason says so.

Pure: counts in, a proposal and its sentence out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ebbtide.core.latency import bucket_percentile

MIN_ANSWERS = 100
"""Fewer answers in the window cannot place a p99: one slow answer in 20 is a p95, not news."""


class ObjectiveReason(Enum):
    """Why the objective step proposed what it did."""

    NO_DATA = "ObjectiveNoData"
    MET = "ObjectiveMet"
    MISSED = "ObjectiveMissed"
    UNMEETABLE_AT_MAX = "ObjectiveUnmeetableAtMaxReplicas"


@dataclass(frozen=True)
class ObjectiveProposal:
    """What the objective asks for, and why."""

    replicas: int | None
    """A floor on the replicas; None when the objective asks for nothing."""
    observed: float | None
    """The percentile latency over the window, in seconds; None without enough answers."""
    reason: ObjectiveReason
    message: str


def propose_for_objective(
    counts: Sequence[int],
    bounds: Sequence[float],
    percentile: float,
    latency_seconds: float,
    ready: int,
    max_replicas: int,
) -> ObjectiveProposal:
    """The objective's proposal from one window's latency counts and the ready replicas."""
    name = f"p{percentile:g}"
    goal = f"{latency_seconds * 1000:g} ms"
    if sum(counts) < MIN_ANSWERS:
        return ObjectiveProposal(
            None,
            None,
            ObjectiveReason.NO_DATA,
            f"fewer than {MIN_ANSWERS} answers in the window: the {name} latency objective "
            "waits for more",
        )
    observed = bucket_percentile(counts, percentile, bounds)
    assert observed is not None
    seen = f"{observed * 1000:.3g} ms"
    if observed <= latency_seconds:
        return ObjectiveProposal(
            None,
            observed,
            ObjectiveReason.MET,
            f"{name} latency {seen} is within the objective {goal}",
        )
    ready = max(ready, 1)
    wanted = max(ready + 1, math.ceil(ready * observed / latency_seconds - 1e-9))
    if ready >= max_replicas:
        return ObjectiveProposal(
            max_replicas,
            observed,
            ObjectiveReason.UNMEETABLE_AT_MAX,
            f"{name} latency {seen} is over the objective {goal} at maxReplicas "
            f"({max_replicas}): the objective cannot be met; raise maxReplicas or the objective",
        )
    wanted = min(wanted, max_replicas)
    return ObjectiveProposal(
        wanted,
        observed,
        ObjectiveReason.MISSED,
        f"{name} latency {seen} is over the objective {goal}: {ready} → {wanted}",
    )
