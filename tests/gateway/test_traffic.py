import pytest

from ebbtide.core.latency import COARSE_BOUNDS, LATENCY_BOUNDS
from ebbtide.gateway.traffic import (
    TrafficSnapshot,
    TrafficStats,
    percentile,
)


def snapshot(stats: TrafficStats, now: float) -> TrafficSnapshot:
    return stats.snapshot(now, in_flight=0, queued=0, upstreams=1, upstream_in_flight={})


def test_bounds_are_increasing_and_coarse_ones_a_subset() -> None:
    assert list(LATENCY_BOUNDS) == sorted(set(LATENCY_BOUNDS))
    assert LATENCY_BOUNDS[0] == 0.0001
    assert LATENCY_BOUNDS[-1] == 100.0
    assert set(COARSE_BOUNDS) <= set(LATENCY_BOUNDS)
    assert COARSE_BOUNDS[:4] == (0.0001, 0.00025, 0.0005, 0.001)


def test_a_window_gives_rates_and_exact_mean_concurrency() -> None:
    stats = TrafficStats(now=0.0)
    before = snapshot(stats, 0.0)
    stats.arrive(0.0)
    stats.arrive(1.0)  # two in the gateway from 1 s
    stats.complete(3.0, 200, 3.0)  # one from 3 s
    stats.complete(4.0, 503, 3.0)  # none from 4 s
    window = snapshot(stats, 10.0).since(before)
    assert window.seconds == 10.0
    assert window.arrival_rate == pytest.approx(0.2)
    assert window.error_rate == pytest.approx(0.1)
    # 1 request for 1 s, 2 for 2 s, 1 for 1 s: 6 request-seconds over 10 s
    assert window.mean_concurrency == pytest.approx(0.6)
    assert window.mean_latency == pytest.approx(3.0)
    assert stats.statuses == {200: 1, 503: 1}


def test_a_request_still_in_flight_counts_towards_concurrency() -> None:
    stats = TrafficStats(now=0.0)
    stats.arrive(0.0)
    assert snapshot(stats, 4.0).since(snapshot(stats, 2.0)).mean_concurrency == pytest.approx(1.0)


def test_percentiles_from_buckets() -> None:
    stats = TrafficStats(now=0.0)
    for _ in range(90):
        stats.arrive(0.0)
        stats.complete(0.0, 200, 0.010)
    for _ in range(10):
        stats.arrive(0.0)
        stats.complete(0.0, 200, 0.300)
    window = snapshot(stats, 1.0).since(snapshot(TrafficStats(0.0), 0.0))
    p50 = window.latency_percentile(50)
    p99 = window.latency_percentile(99)
    assert p50 is not None
    assert p99 is not None
    assert 0.008 <= p50 <= 0.010
    assert 0.25 <= p99 <= 0.300
    assert percentile([0] * (len(LATENCY_BOUNDS) + 1), 50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile(stats.latency_counts, 101)


def test_latencies_beyond_the_last_bound_land_in_the_last_bucket() -> None:
    stats = TrafficStats(now=0.0)
    stats.arrive(0.0)
    stats.complete(500.0, 504, 500.0)
    assert stats.latency_counts[-1] == 1
    assert percentile(stats.latency_counts, 50) == 100.0
