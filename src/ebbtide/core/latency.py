"""Latency buckets: the bounds the gateway counts answers into, and percentiles read from them.

One place for both, so the gateway (which counts) and the autoscaler (which reads a window of
counts against a latency objective) agree on what a bucket means.
"""

from __future__ import annotations

from collections.abc import Sequence

_STEPS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
LATENCY_BOUNDS: tuple[float, ...] = (
    *(round(step * 10.0**exponent, 12) for exponent in range(-4, 2) for step in _STEPS),
    100.0,
)
"""Upper bounds of the latency buckets in seconds, ten per decade from 0.1 ms to 100 s; one
more bucket holds everything above."""

COARSE_BOUNDS: tuple[float, ...] = tuple(
    bound
    for index, bound in enumerate(LATENCY_BOUNDS)
    if _STEPS[index % len(_STEPS)] in (1.0, 2.5, 5.0)
)
"""The 1-2.5-5 subset of the bounds that /metrics exports, to keep scrapes small."""


def bucket_percentile(
    counts: Sequence[int], percent: float, bounds: Sequence[float] = LATENCY_BOUNDS
) -> float | None:
    """A percentile of bucketed latencies, interpolated linearly inside its bucket; the bucket
    above the last bound reads as the last bound. None without any count."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {percent}")
    total = sum(counts)
    if not total:
        return None
    rank = percent / 100 * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * max(0.0, rank - seen) / count
        seen += count
    return bounds[-1]
