"""The latency objective step: how many replicas the observed latency asks for.

The gateway measures each answer's latency into fixed buckets (`counts` over
`bounds`, one more bucket for everything above). Over one metric window the step reads the
objective's percentile from those counts and compares it with the objective. What it learns
is a load: the requests in flight per ready replica at which the objective holds (`learned`,
kept in the autoscaler's state). Requests in flight carry the latency they cause (Little's
law: in flight = arrival rate x latency), and the level one replica can hold within the
objective depends on the requests' cost and the traffic's burstiness, which is what the step
cannot know in advance and can measure. Its floor is the window's requests in flight over
that load, so it follows the traffic as a concurrency target does, with a target the latency
set:

- over the objective: the load is lowered to the measured one scaled by objective/observed
  (at saturation latency grows with the load per replica), which asks for at least one more
  replica at once; it is lowered again only once the window holds answers served by the
  replicas that asked for (`may_lower`), so one slow window does not compound;
- within it with room (under `ROOM` of the objective) while the floor is what holds the
  replicas: the load is raised by `GROWTH` per decision, so a load learned in a worse hour
  does not keep replicas forever (while other targets hold more replicas than the floor, a
  met objective says nothing about how much a replica could hold, and the load stays);
- no load learned yet: no floor, the other targets decide;
- over it at `maxReplicas`: the objective cannot be met, and the reason says so.

Pure: counts and readings in, a proposal, the new load and its sentence out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ebbtide.core.latency import bucket_percentile

MIN_ANSWERS = 100
"""Fewer answers in the window cannot place a p99: one slow answer in 20 is a p95, not news."""
ROOM = 0.9
"""The learned load grows only while the percentile is under this share of the objective: the
band between is where it settles, so a small rise in latency does not miss at once."""
GROWTH = 1.02
"""Per decision with room: doubling in 35 decisions (9 s at the local profile's 0.25 s)."""
MOST_LOWERED = 0.5
"""The learned load is at most halved per lowering."""
NEAR = 0.5
"""The learned load grows only while the measured load is at least this share of it."""
LIGHTER = 0.8
"""More replicas "have not helped" only when each now holds at most this share of the load it
held at fewer, and the percentile is not clearly lower: a fifth less load per replica that does
not show in the latency says the time is not the replicas' queue. (Requests in flight are
counted at the gateway, so time spent outside the replicas counts as load too: live, with 2.5
times the replicas on two busy cores, the load each held fell by only a third.)"""
SAME_TRAFFIC = 1.5
"""Windows compare only while requests arrive no faster than this many times the earlier
window's rate: a much larger burst queues longer whatever the replicas. (Two 2 s windows of the
same steady traffic differ by 10-20% from chance alone.)"""
NO_LOWER = 0.85
"""The percentile counts as not lowered while it is above this share of the earlier one,
about the noise between two windows of the same traffic."""
COMPARED_WITHIN = 300.0
"""Seconds a missed window is kept to compare a later one with. The load per replica is what
makes two windows comparable, not their times; this only bounds how stale the comparison may
be, while keeping it for an endpoint that stays at maxReplicas for minutes."""


class ObjectiveReason(Enum):
    """Why the objective step proposed what it did."""

    NO_DATA = "ObjectiveNoData"
    MET = "ObjectiveMet"
    MISSED = "ObjectiveMissed"
    MISSED_WHILE_STARTING = "ObjectiveMissedWhileStarting"
    """Over it while replicas it asked for are still starting: the start is what the miss
    costs, and no count asked for now shortens it."""
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
    learned: float | None = None
    """Requests in flight per ready replica at which the objective holds, as learned so far."""
    acted: bool = False
    """Over the objective by more answers than chance, on answers the last change did not
    ask for: the step asked for more replicas because of this window."""


@dataclass(frozen=True)
class MissedWindow:
    """One window that missed the objective, read with the replicas it had: what a later
    window at more replicas is compared with."""

    time: float
    ready: int
    load: float
    """Requests in flight per ready replica over the window."""
    observed: float
    """The percentile latency over the window, in seconds."""
    rate: float
    """Requests per second arriving over the window."""


def note_miss(missed: tuple[MissedWindow, ...], window: MissedWindow) -> tuple[MissedWindow, ...]:
    """Keep `window` as the latest at its replica count; drop those older than
    `COMPARED_WITHIN` seconds."""
    kept = tuple(
        w for w in missed if w.ready != window.ready and w.time >= window.time - COMPARED_WITHIN
    )
    return (*kept, window)


def compare_with_fewer(
    missed: tuple[MissedWindow, ...], window: MissedWindow
) -> tuple[MissedWindow, bool] | None:
    """Of the earlier missed windows at fewer replicas, each holding clearly more load, the one
    with the lowest percentile, and whether this one's is clearly lower still: adding replicas
    took load off each of them, and the latency fell with it (queueing) or did not (time spent
    elsewhere). Against the lowest, so that one slow window at some count does not read as
    progress. None when no earlier window compares."""
    comparable = [
        earlier
        for earlier in missed
        if earlier.ready < window.ready
        and earlier.time >= window.time - COMPARED_WITHIN
        and window.load <= LIGHTER * earlier.load
        and window.rate <= SAME_TRAFFIC * earlier.rate
    ]
    if not comparable:
        return None
    best = min(comparable, key=lambda earlier: earlier.observed)
    return best, window.observed < NO_LOWER * best.observed


NOT_LOWERED = "more replicas have not lowered it"
"""How a miss's message begins to say that adding replicas did not lower the latency."""


def not_lowered_message(
    earlier: MissedWindow, window: MissedWindow, percentile: float, seconds: float
) -> str:
    """`; more replicas have not lowered it: p99 15.2 ms at 2 replicas, 15.8 ms at 5 with 60%
    less load each. The latency does not follow ...`. `seconds` is the metric window."""
    lighter = 1 - window.load / earlier.load
    return (
        f"; {NOT_LOWERED}: p{percentile:g} "
        f"{earlier.observed * 1000:.3g} ms at {earlier.ready} "
        f"replica{'s' if earlier.ready > 1 else ''}, "
        f"{window.observed * 1000:.3g} ms at {window.ready} with {lighter:.0%} less load "
        "each. The latency does not follow the replicas' load: it is spent outside them (the "
        "gateway, the network, the client), in the requests' own work, or in bursts shorter "
        f"than the {seconds:g} s window, and adding replicas as the load asks is unlikely to "
        "meet the objective"
    )


def propose_for_objective(
    counts: Sequence[int],
    bounds: Sequence[float],
    percentile: float,
    latency_seconds: float,
    ready: int,
    max_replicas: int,
    in_flight: float | None = None,
    learned: float | None = None,
    may_lower: bool = True,
) -> ObjectiveProposal:
    """The objective's proposal from one window's latency counts, the ready replicas and the
    window's average requests in flight, given the load learned so far."""
    name = f"p{percentile:g}"
    goal = f"{latency_seconds * 1000:g} ms"
    ready = max(ready, 1)
    total = sum(counts)
    if total < MIN_ANSWERS:
        return ObjectiveProposal(
            _floor(in_flight, learned, max_replicas),
            None,
            ObjectiveReason.NO_DATA,
            f"fewer than {MIN_ANSWERS} answers in the window: the {name} latency objective "
            "waits for more",
            learned,
        )
    observed = bucket_percentile(counts, percentile, bounds)
    assert observed is not None
    seen = f"{observed * 1000:.3g} ms"
    load = in_flight / ready if in_flight is not None else None
    if observed <= latency_seconds:
        floor = _floor(in_flight, learned, max_replicas)
        # While the floor is what holds these replicas, at a load near it, with room: try
        # fewer. (One replica holding a trickle says nothing about what it could hold.)
        holding = learned is not None and floor is not None and floor >= ready
        near = load is not None and learned is not None and load >= NEAR * learned
        if holding and near and observed <= ROOM * latency_seconds:
            learned = (learned or 0.0) * GROWTH
        return ObjectiveProposal(
            _floor(in_flight, learned, max_replicas),
            observed,
            ObjectiveReason.MET,
            f"{name} latency {seen} is within the objective {goal}{_holding(learned)}",
            learned,
        )
    over = answers_over(counts, bounds, latency_seconds)
    acting = may_lower and _significant(over, total, percentile)
    if acting:
        if load is not None and load > 0:
            scaled = load * latency_seconds / observed
            if learned is not None:  # at most halved per window: one queue is not a rule
                scaled = max(scaled, learned * MOST_LOWERED)
            learned = scaled if learned is None else min(learned, scaled)
        wanted = max(
            ready + 1,
            _floor(in_flight, learned, max_replicas) or 0,
            math.ceil(ready * observed / latency_seconds - 1e-9),
        )
    else:
        wanted = _floor(in_flight, learned, max_replicas) or ready
    if ready >= max_replicas:
        return ObjectiveProposal(
            max_replicas,
            observed,
            ObjectiveReason.UNMEETABLE_AT_MAX,
            f"{name} latency {seen} is over the objective {goal} at maxReplicas "
            f"({max_replicas}): the objective cannot be met; raise maxReplicas or the objective",
            learned,
            acting,
        )
    wanted = min(wanted, max_replicas)
    if acting:
        outcome = f"{ready} → {wanted}"
    elif not may_lower:
        outcome = f"holding {wanted} until the replicas it asked for have served a window"
    else:
        allowed = (100.0 - percentile) / 100.0 * total
        outcome = (
            f"holding {wanted}: {over:.0f} of {total} answers over it is within chance "
            f"of the {allowed:.0f} allowed"
        )
    return ObjectiveProposal(
        wanted,
        observed,
        ObjectiveReason.MISSED,
        f"{name} latency {seen} is over the objective {goal}: {outcome}{_holding(learned)}",
        learned,
        acting,
    )


def _holding(learned: float | None) -> str:
    if learned is None:
        return ""
    return f" (learned limit: {learned:.3g} in flight per replica)"


def _floor(in_flight: float | None, learned: float | None, max_replicas: int) -> int | None:
    """The replicas that hold the requests in flight at the learned load each."""
    if in_flight is None or learned is None or learned <= 0:
        return None
    return min(max_replicas, math.ceil(in_flight / learned - 1e-9))


def _significant(over: float, total: int, percentile: float) -> bool:
    """More answers over the objective than its percentile allows, by more than chance: one
    binomial standard deviation. A p99 read from 100 answers is the 99th of them, and two
    slow answers in a hundred at a light load are chance, not a queue to add replicas for."""
    share = (100.0 - percentile) / 100.0
    allowed = share * total
    return over > allowed + math.sqrt(allowed * (1 - share))


def answers_over(counts: Sequence[int], bounds: Sequence[float], latency_seconds: float) -> float:
    """Answers slower than `latency_seconds`, the bucket it falls in split linearly."""
    over = 0.0
    for index, count in enumerate(counts):
        lower = bounds[index - 1] if index else 0.0
        upper = bounds[index] if index < len(bounds) else math.inf
        if lower >= latency_seconds:
            over += count
        elif upper > latency_seconds and count:
            over += count * (upper - latency_seconds) / (upper - lower)
    return over
