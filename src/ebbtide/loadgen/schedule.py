"""When requests are sent: arrival offsets for a constant rate, rate steps, or a replayed trace.

Open loop: arrivals are fixed in advance and do not wait for responses, so a slow endpoint
sees the load a real population of clients would send, not a politely reduced one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ebbtide.core import traces
from ebbtide.core.errors import EbbtideError, TraceError


class ScheduleError(EbbtideError):
    """A load schedule that cannot be built: a bad step list, or an unreadable trace."""


@dataclass(frozen=True)
class Step:
    """Send `rate` requests per second for `seconds` seconds."""

    rate: float
    seconds: float


def constant(rate: float, seconds: float, rng: random.Random | None = None) -> list[float]:
    """Arrivals at `rate` per second for `seconds`; Poisson when `rng` is given, else even."""
    return steps([Step(rate, seconds)], rng)


def steps(plan: list[Step], rng: random.Random | None = None) -> list[float]:
    """Arrivals for consecutive steps of constant rate."""
    arrivals: list[float] = []
    start = 0.0
    for step in plan:
        if step.rate < 0 or step.seconds <= 0:
            raise ScheduleError(f"a step needs rate >= 0 and seconds > 0, got {step}")
        end = start + step.seconds
        if step.rate > 0 and rng is None:
            count = round(step.rate * step.seconds)
            arrivals.extend(start + index / step.rate for index in range(count))
        elif step.rate > 0 and rng is not None:
            at = start + rng.expovariate(step.rate)
            while at < end:
                arrivals.append(at)
                at += rng.expovariate(step.rate)
        start = end
    return arrivals


def parse_steps(text: str) -> list[Step]:
    """`10:20,40:30` -> 10 req/s for 20 s, then 40 req/s for 30 s."""
    plan = []
    for part in text.split(","):
        try:
            rate, seconds = part.split(":")
            plan.append(Step(float(rate), float(seconds)))
        except ValueError:
            raise ScheduleError(
                f"{part!r} is not RATE:SECONDS; write steps as 10:20,40:30"
            ) from None
    return plan


def trace(
    path: Path,
    speedup: float = 1.0,
    rate_scale: float = 1.0,
    limit_seconds: float | None = None,
    rng: random.Random | None = None,
) -> list[float]:
    """Arrival offsets from a trace CSV with a TIMESTAMP column (as the Azure LLM traces),
    time compressed `speedup` times, and the rate scaled by `rate_scale` (copies or thinning,
    seeded, so the shape over time is kept)."""
    if speedup <= 0 or rate_scale <= 0:
        raise ScheduleError("--speedup and --rate-scale must be above 0")
    rng = rng or random.Random(0)
    stamps = _read_timestamps(path)
    first = stamps[0]
    arrivals: list[float] = []
    for stamp in stamps:
        offset = (stamp - first) / speedup
        if limit_seconds is not None and offset > limit_seconds:
            break
        copies = int(rate_scale) + (1 if rng.random() < rate_scale % 1 else 0)
        arrivals.extend(offset + rng.uniform(0, 0.001) * index for index in range(copies))
    return sorted(arrivals)


def _read_timestamps(path: Path) -> list[float]:
    try:
        return traces.read_timestamps(path)
    except TraceError as error:
        raise ScheduleError(str(error)) from None
