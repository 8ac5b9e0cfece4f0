"""Send requests at fixed arrival times, whatever the responses do, and summarize them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ebbtide.core.clock import Clock

Send = Callable[[], Awaitable[int]]
"""Sends one request; returns the HTTP status, or raises on a transport error."""


@dataclass(frozen=True)
class Outcome:
    """One request: when it was due, how long it took, and how it ended."""

    due: float
    latency: float
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Progress:
    """Running counts, read by a live progress line."""

    sent: int = 0
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)


async def run_open_loop(
    send: Send,
    arrivals: Sequence[float],
    clock: Clock,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Fire one `send` at each arrival offset (seconds from now) and wait for all to finish."""
    progress = progress or Progress()
    start = clock.now()
    outcomes: list[Outcome] = []

    async def one(due: float) -> None:
        began = clock.now()
        try:
            status: int | None = await send()
            error = None
        except Exception as failure:  # every transport failure is an outcome, not a crash
            status, error = None, f"{type(failure).__name__}: {failure}"
        latency = clock.now() - began
        outcome = Outcome(due, latency, status, error)
        outcomes.append(outcome)
        progress.done += 1
        progress.latencies.append(latency)
        if outcome.ok:
            progress.succeeded += 1
        else:
            progress.failed += 1

    tasks = []
    for due in arrivals:
        delay = due - (clock.now() - start)
        if delay > 0:
            await clock.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
        progress.sent += 1
    await asyncio.gather(*tasks)
    return sorted(outcomes, key=lambda outcome: outcome.due)


@dataclass(frozen=True)
class Summary:
    """What a load run amounted to."""

    sent: int
    succeeded: int
    failed: int
    failures: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    duration_s: float

    def lines(self) -> list[str]:
        rate = self.sent / self.duration_s if self.duration_s > 0 else 0.0
        failures = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"
        return [
            f"sent {self.sent} in {self.duration_s:.1f}s ({rate:.1f} req/s)",
            f"succeeded {self.succeeded}, failed {self.failed} ({failures})",
            f"latency p50 {self.p50_ms:.1f} ms, p90 {self.p90_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms",
        ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summarize(outcomes: Sequence[Outcome]) -> Summary:
    """Counts, failure kinds and latency percentiles of a run."""
    latencies = [o.latency * 1000 for o in outcomes]
    failures: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            key = str(outcome.status) if outcome.status is not None else (outcome.error or "?")
            key = key.split(":")[0]
            failures[key] = failures.get(key, 0) + 1
    duration = max((o.due + o.latency for o in outcomes), default=0.0)
    succeeded = sum(1 for o in outcomes if o.ok)
    return Summary(
        sent=len(outcomes),
        succeeded=succeeded,
        failed=len(outcomes) - succeeded,
        failures=failures,
        p50_ms=percentile(latencies, 0.50),
        p90_ms=percentile(latencies, 0.90),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies, default=0.0),
        duration_s=duration,
    )
