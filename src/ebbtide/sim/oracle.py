"""The clairvoyant oracle: the fewest replicas that meet the objective, knowing the future.

The oracle sees the whole workload in advance. For every quarter second it computes the CPU the
requests arriving in it will need and asks for the fewest replicas that keep each core's
utilization at or under `utilization`; it starts replicas `start_time` ahead, so they are ready
when that quarter begins, and lets them go as soon as they are no longer needed. `calibrate`
picks the highest utilization (so the fewest replicas) whose run still meets the objective
(at most 1% of requests over it, a p99 within it): that run is the cost floor the policies are
measured against.

`ReactiveOracle` is the same schedule without the foresight: what a policy that measures
perfectly but does not predict could do. Where it cannot meet the objective at a cost near the
oracle's, the replica start, not the policy, is the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ebbtide.sim.platform import Platform
from ebbtide.sim.view import View
from ebbtide.sim.workload import Workload

CANDIDATE_UTILIZATIONS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3)
RESOLUTION = 0.25
"""Seconds per bucket of the oracle's schedule, and between its ticks."""


class Oracle:
    """A schedule computed from the future, replayed at quarter-second ticks."""

    name = "oracle"

    def __init__(
        self,
        workload: Workload,
        platform: Platform,
        utilization: float,
        min_replicas: int,
        max_replicas: int,
    ) -> None:
        self.sync_period = RESOLUTION
        self.utilization = utilization
        self.lead = platform.start_time
        self.need = need_per_bucket(workload, utilization, min_replicas, max_replicas)

    @property
    def initial(self) -> int:
        return self._at(0.0)

    @property
    def peak(self) -> int:
        return max(self.need, default=1)

    def decide(self, view: View, now: float) -> int:
        return self._at(now)

    def _at(self, now: float) -> int:
        first = int(now / RESOLUTION + 1e-9)
        last = int((now + self.lead) / RESOLUTION + 1e-9) + 1
        window = self.need[first : last + 1]
        return max(window) if window else (self.need[-1] if self.need else 1)


class ReactiveOracle(Oracle):
    """The oracle without foresight. It knows exactly the CPU that arrived in each quarter
    second once that quarter is over (never one still to come), asks for the replicas the last
    one needed, and keeps the most any quarter of the last `hold` seconds needed, so that a
    burst that returns finds them: `HOLD_STARTS` replica starts, at least `MIN_HOLD` seconds.
    It reacts in one quarter, with no window to fill and no tolerance."""

    name = "reactive-oracle"
    HOLD_STARTS = 4.0
    MIN_HOLD = 2.0

    @property
    def hold(self) -> float:
        """Seconds a quarter's need is kept: `HOLD_STARTS` starts, at least `MIN_HOLD`."""
        return max(self.MIN_HOLD, self.HOLD_STARTS * self.lead)

    def _at(self, now: float) -> int:
        last = int(now / RESOLUTION + 1e-9) - 1  # the last quarter that is over
        if last < 0 or not self.need:
            # The first quarter: every policy starts warm, with the oracle's first count.
            return self.need[0] if self.need else 1
        first = max(0, int((now - self.hold) / RESOLUTION + 1e-9) - 1)
        return max(self.need[first : last + 1])


def need_per_bucket(
    workload: Workload, utilization: float, min_replicas: int, max_replicas: int
) -> list[int]:
    """Per bucket: the replicas that keep the CPU arriving in it at `utilization` per core."""
    buckets = max(1, math.ceil(workload.duration / RESOLUTION))
    work = [0.0] * buckets
    for at, cpu in zip(workload.arrivals, workload.cpu_seconds, strict=True):
        work[min(int(at / RESOLUTION), buckets - 1)] += cpu
    return [
        min(max(math.ceil(w / RESOLUTION / utilization - 1e-9), min_replicas), max_replicas)
        for w in work
    ]


def candidates(start: float | None) -> Sequence[float]:
    """The utilizations to try, highest first (just `start` when one is given)."""
    return (start,) if start is not None else CANDIDATE_UTILIZATIONS
