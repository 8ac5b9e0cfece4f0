"""The queue in front of a replica's model: arrival order, a bound, a Retry-After estimate."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ebbtide.core.errors import OverloadedError
from ebbtide.runtime.admission import OFFLOAD_SECONDS, ModelQueue
from ebbtide.runtime.repository import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from tests.runtime.replicas import Replica


async def _serve(queue: ModelQueue, name: str, order: list[str], release: asyncio.Event) -> None:
    async with queue.turn():
        order.append(name)
        await release.wait()


def test_turns_go_in_arrival_order_and_a_newcomer_does_not_overtake() -> None:
    async def scenario() -> list[str]:
        queue, order, release = ModelQueue(max_queue=10), [], asyncio.Event()
        tasks = [asyncio.create_task(_serve(queue, f"r{i}", order, release)) for i in range(4)]
        await asyncio.sleep(0)
        assert order == ["r0"]
        assert queue.waiting == 3
        release.set()  # every holder finishes at once from now on
        # Arrives as the turn passes from r0 to r1: it must queue behind r1, r2 and r3.
        tasks.append(asyncio.create_task(_serve(queue, "late", order, release)))
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["r0", "r1", "r2", "r3", "late"]


def test_one_more_than_the_bound_is_refused_at_once_with_retry_after() -> None:
    async def scenario() -> OverloadedError:
        queue, order, release = ModelQueue(max_queue=2), [], asyncio.Event()
        for _ in range(3):
            queue.record(0.4)
        tasks = [asyncio.create_task(_serve(queue, f"r{i}", order, release)) for i in range(3)]
        await asyncio.sleep(0)
        assert queue.waiting == 2
        with pytest.raises(OverloadedError) as refused:
            async with queue.turn():
                pass
        assert queue.shed == 1
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["r0", "r1", "r2"]
        async with queue.turn():  # room again once the queue drained
            pass
        return refused.value

    error = asyncio.run(scenario())
    # Two waiting plus this one, 0.4 s each: 1.2 s, rounded up.
    assert error.retry_after_seconds == 2
    assert "--max-queue 2" in str(error)


def test_a_cancelled_waiter_leaves_the_line() -> None:
    async def scenario() -> list[str]:
        queue, order, release = ModelQueue(max_queue=10), [], asyncio.Event()
        first = asyncio.create_task(_serve(queue, "first", order, release))
        gone = asyncio.create_task(_serve(queue, "gone", order, release))
        last = asyncio.create_task(_serve(queue, "last", order, release))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert queue.waiting == 1
        release.set()
        await asyncio.gather(first, last)
        return order

    assert asyncio.run(scenario()) == ["first", "last"]


def test_without_exclusive_turns_requests_are_only_counted() -> None:
    async def scenario() -> None:
        queue, order, release = ModelQueue(max_queue=2, exclusive=False), [], asyncio.Event()
        tasks = [asyncio.create_task(_serve(queue, f"r{i}", order, release)) for i in range(2)]
        await asyncio.sleep(0)
        assert order == ["r0", "r1"]  # both inside at once
        with pytest.raises(OverloadedError):
            async with queue.turn():
                pass
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_slow_calls_are_told_apart_by_their_moving_average() -> None:
    queue = ModelQueue(max_queue=1)
    assert not queue.slow_calls
    assert queue.retry_after() == 1
    queue.record(OFFLOAD_SECONDS / 10)
    assert not queue.slow_calls
    for _ in range(20):
        queue.record(OFFLOAD_SECONDS * 5)
    assert queue.slow_calls


@pytest.mark.integration
def test_a_saturated_replica_sheds_past_its_queue_with_retry_after(
    repository: ModelRepository, logs: Path
) -> None:
    ensure_sample("heavy", repository)  # a forest: several ms per call, so calls queue
    body = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64",
                        "data": [float(v % 17) for v in range(64)]}]}  # fmt: skip
    with Replica(repository.root, "sample-heavy:v1", logs, "--max-queue", "2") as replica:
        url = f"{replica.url}/v2/models/sample-heavy/infer"
        for _ in range(5):  # warm up: the moving average learns that calls are slow
            assert httpx.post(url, json=body, timeout=30).status_code == 200

        def one(_: int) -> httpx.Response:
            return httpx.post(url, json=body, timeout=60)

        with ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(one, range(48)))
        statuses = Counter(answer.status_code for answer in answers)
        assert set(statuses) == {200, 503}, statuses
        assert statuses[200] >= 3
        shed = [answer for answer in answers if answer.status_code == 503]
        assert all(int(answer.headers["retry-after"]) >= 1 for answer in shed)
        assert "--max-queue 2" in shed[0].json()["error"]
        assert httpx.post(url, json=body, timeout=30).status_code == 200  # and it recovers
        assert "Traceback" not in replica.log()
