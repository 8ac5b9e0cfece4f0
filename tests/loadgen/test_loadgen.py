import asyncio
import random
from pathlib import Path

import pytest

from ebbtide.loadgen.runner import Outcome, percentile, run_open_loop, summarize
from ebbtide.loadgen.schedule import ScheduleError, Step, constant, parse_steps, steps, trace
from ebbtide.testing import FakeClock


def test_constant_rate_is_even_and_exact() -> None:
    arrivals = constant(10, 2)
    assert len(arrivals) == 20
    assert arrivals[1] - arrivals[0] == pytest.approx(0.1)
    assert arrivals[-1] < 2


def test_poisson_arrivals_are_seeded() -> None:
    first = constant(50, 10, random.Random(7))
    assert first == constant(50, 10, random.Random(7))
    assert 400 < len(first) < 600


def test_steps_follow_each_other() -> None:
    arrivals = steps([Step(10, 1), Step(0, 1), Step(20, 1)])
    assert len(arrivals) == 30
    assert not [a for a in arrivals if 1 <= a < 2]


def test_parse_steps_and_its_error() -> None:
    assert parse_steps("10:20,40:30") == [Step(10, 20), Step(40, 30)]
    with pytest.raises(ScheduleError, match="RATE:SECONDS"):
        parse_steps("10-20")


def test_trace_compression_and_rate_scale(tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,1,1\n2023-11-16 18:15:56.6805900,1,1\n"
    )
    assert trace(file, speedup=10) == [0.0, pytest.approx(1.0)]
    assert len(trace(file, speedup=10, rate_scale=3)) == 6


def test_trace_without_timestamps_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_text("a,b\n1,2\n")
    with pytest.raises(ScheduleError, match="no TIMESTAMP column"):
        trace(file)


def test_open_loop_sends_on_time_regardless_of_responses() -> None:
    clock = FakeClock()
    sent_at: list[float] = []

    async def send() -> int:
        sent_at.append(clock.now())
        await clock.sleep(5.0)  # far slower than the arrival gaps
        return 200

    async def drive() -> list[Outcome]:
        task = asyncio.create_task(run_open_loop(send, [0.0, 0.5, 1.0], clock))
        for _ in range(100):
            for _ in range(5):  # let every runnable task run before time moves on
                await asyncio.sleep(0)
            clock.advance(0.25)
        return await task

    outcomes = asyncio.run(drive())
    assert sent_at == [0.0, 0.5, 1.0]
    assert all(o.latency == pytest.approx(5.0) for o in outcomes)


def test_failures_are_outcomes_and_summarized() -> None:
    outcomes = [
        Outcome(0.0, 0.010, 200),
        Outcome(0.1, 0.020, 503),
        Outcome(0.2, 0.030, None, "ConnectError: refused"),
    ]
    summary = summarize(outcomes)
    assert (summary.sent, summary.succeeded, summary.failed) == (3, 1, 2)
    assert summary.failures == {"503": 1, "ConnectError": 1}
    assert summary.p50_ms == pytest.approx(20.0)


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.5) == 50
    assert percentile([], 0.5) == 0.0
