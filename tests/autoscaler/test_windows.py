"""Window averages from counter readings."""

from __future__ import annotations

import pytest

from ebbtide.autoscaler.windows import Sample, arrival_rate, concurrency, cpu_cores


def cpu_samples(readings: list[tuple[float, float]]) -> list[Sample]:
    return [Sample(t, None, None, None, {"r": used}) for t, used in readings]


def test_a_late_tick_keeps_the_full_window() -> None:
    # Ticks a little late: the reading 3.02 s old still belongs to a 3 s window.
    samples = cpu_samples([(0.0, 0.0), (0.99, 0.5), (2.0, 1.0), (3.02, 1.6), (6.04, 3.2)])
    rate = cpu_cores(samples, "r", window=3.0, slack=0.5)
    assert rate is not None
    assert (rate.start, rate.end) == (3.02, 6.04)
    assert rate.value == pytest.approx(1.6 / 3.02)


def test_one_reading_is_no_average() -> None:
    assert cpu_cores(cpu_samples([(5.0, 1.0)]), "r", 3.0, 0.5) is None


def test_a_restarted_process_has_no_average_until_its_next_reading() -> None:
    samples = cpu_samples([(0.0, 50.0), (1.0, 0.2)])
    assert cpu_cores(samples, "r", 3.0, 0.5) is None


def test_arrival_rate() -> None:
    samples = [Sample(t, 10 * int(t), 0.0, None, {}) for t in range(6)]
    rate = arrival_rate(samples, window=2.0, slack=0.5)
    assert rate is not None
    assert rate.value == 10.0


def test_concurrency_from_the_integral() -> None:
    samples = [Sample(0.0, 0, 1.0, 0.0, {}), Sample(2.0, 0, 5.0, 7.0, {})]
    rate = concurrency(samples, window=2.0, slack=0.5)
    assert rate is not None
    assert rate.value == 3.5


def test_concurrency_from_sampled_values_without_an_integral() -> None:
    samples = [Sample(float(t), 0, float(v), None, {}) for t, v in enumerate([9, 2, 4])]
    rate = concurrency(samples, window=2.0, slack=0.5)
    assert rate is not None
    assert rate.value == 3.0  # the readings after the window's start: 2 and 4


def test_concurrency_with_one_reading_is_the_instantaneous_value() -> None:
    rate = concurrency([Sample(0.0, 0, 6.0, None, {})], window=2.0, slack=0.5)
    assert rate is not None
    assert rate.value == 6.0
