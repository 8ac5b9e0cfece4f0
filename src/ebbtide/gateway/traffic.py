"""What an endpoint's traffic looks like: live counters, snapshots of them, windows between two.

Counters only grow, so any window is the difference of two snapshots: the autoscaler keeps
the snapshots it wants (a 6 s and a 60 s window, say) and the gateway keeps no history.
Concurrency is kept as its integral over time (request-seconds), so the mean concurrency of
a window is exact, not sampled. Latencies go into fixed buckets, ten per decade from 0.1 ms
to 100 s, fine enough to read a percentile within about 15%.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass

from ebbtide.core.latency import LATENCY_BOUNDS, bucket_percentile


class TrafficStats:
    """Live counters of one endpoint, updated on every request it receives."""

    __slots__ = (
        "_changed_at",
        "_concurrency",
        "arrivals",
        "completions",
        "concurrency_seconds",
        "errors",
        "latency_counts",
        "latency_sum",
        "rejected",
        "retries",
        "statuses",
    )

    def __init__(self, now: float) -> None:
        self.arrivals = 0
        self.completions = 0
        self.errors = 0
        self.rejected = 0
        self.retries = 0
        self.statuses: dict[int, int] = {}
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.concurrency_seconds = 0.0
        self._concurrency = 0
        self._changed_at = now

    def arrive(self, now: float) -> None:
        """A request for this endpoint came in."""
        self.concurrency_seconds += self._concurrency * (now - self._changed_at)
        self._changed_at = now
        self._concurrency += 1
        self.arrivals += 1

    def complete(self, now: float, status: int, latency: float) -> None:
        """It was answered with `status` after `latency` seconds (or given up: 499, 5xx)."""
        self.concurrency_seconds += self._concurrency * (now - self._changed_at)
        self._changed_at = now
        self._concurrency -= 1
        self.completions += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            self.errors += 1
        self.latency_counts[bisect_left(LATENCY_BOUNDS, latency)] += 1
        self.latency_sum += latency

    def concurrency_seconds_at(self, now: float) -> float:
        return self.concurrency_seconds + self._concurrency * (now - self._changed_at)

    def snapshot(
        self,
        now: float,
        in_flight: int,
        queued: int,
        upstreams: int,
        upstream_in_flight: Mapping[str, int],
    ) -> TrafficSnapshot:
        """These counters at `now`, with the endpoint's live state the gateway adds."""
        return TrafficSnapshot(
            taken_at=now,
            in_flight=in_flight,
            queued=queued,
            upstreams=upstreams,
            upstream_in_flight=upstream_in_flight,
            arrivals=self.arrivals,
            completions=self.completions,
            errors=self.errors,
            rejected=self.rejected,
            retries=self.retries,
            concurrency_seconds=self.concurrency_seconds_at(now),
            latency_counts=tuple(self.latency_counts),
            latency_sum=self.latency_sum,
        )


@dataclass(frozen=True)
class TrafficWindow:
    """The traffic between two snapshots of one endpoint."""

    seconds: float
    arrivals: int
    completions: int
    errors: int
    rejected: int
    retries: int
    mean_concurrency: float
    """Time-weighted mean of requests in the gateway (in flight plus waiting)."""
    latency_counts: tuple[int, ...]
    latency_sum: float

    @property
    def arrival_rate(self) -> float:
        """Requests per second that arrived."""
        return self.arrivals / self.seconds if self.seconds > 0 else 0.0

    @property
    def completion_rate(self) -> float:
        return self.completions / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        """5xx answers per second (the replicas' and the gateway's own)."""
        return self.errors / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency(self) -> float | None:
        return self.latency_sum / self.completions if self.completions else None

    def latency_percentile(self, percent: float) -> float | None:
        """The latency below which `percent`% of the window's answers fell, or None if none."""
        return percentile(self.latency_counts, percent)


@dataclass(frozen=True)
class TrafficSnapshot:
    """One endpoint's traffic counters at `taken_at` (the gateway clock's `now()`)."""

    taken_at: float
    in_flight: int
    """Requests sent to replicas and not yet answered, including draining replicas'."""
    queued: int
    """Requests waiting for a free replica, or held at zero replicas."""
    upstreams: int
    """Replicas in rotation."""
    upstream_in_flight: Mapping[str, int]
    """In flight per replica name, draining replicas included."""
    arrivals: int
    completions: int
    errors: int
    """Answers with a 5xx status, the replicas' and the gateway's own (503, 502, 504)."""
    rejected: int
    """Requests the gateway refused: queue full, or no replica within the hold timeout."""
    retries: int
    """Requests sent again to another replica after one refused the connection."""
    concurrency_seconds: float
    latency_counts: tuple[int, ...]
    """Answers per bucket of `LATENCY_BOUNDS` (the last bucket is above the last bound)."""
    latency_sum: float

    @property
    def concurrency(self) -> int:
        """Requests in the gateway right now: in flight plus waiting."""
        return self.in_flight + self.queued

    def since(self, earlier: TrafficSnapshot) -> TrafficWindow:
        """The traffic from `earlier` to this snapshot."""
        seconds = self.taken_at - earlier.taken_at
        busy = self.concurrency_seconds - earlier.concurrency_seconds
        return TrafficWindow(
            seconds=seconds,
            arrivals=self.arrivals - earlier.arrivals,
            completions=self.completions - earlier.completions,
            errors=self.errors - earlier.errors,
            rejected=self.rejected - earlier.rejected,
            retries=self.retries - earlier.retries,
            mean_concurrency=busy / seconds if seconds > 0 else float(self.concurrency),
            latency_counts=tuple(
                now - before
                for now, before in zip(self.latency_counts, earlier.latency_counts, strict=True)
            ),
            latency_sum=self.latency_sum - earlier.latency_sum,
        )


def percentile(counts: tuple[int, ...] | list[int], percent: float) -> float | None:
    """A percentile of bucketed latencies over `LATENCY_BOUNDS` (`ebbtide.core.latency`)."""
    return bucket_percentile(counts, percent)
