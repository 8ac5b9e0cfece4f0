"""Adaptive batching on a real event loop with a fake clock: merge, split, wait, fall back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest

from ebbtide.runtime.batching import AdaptiveBatcher
from ebbtide.testing import FakeClock

Arrays = dict[str, np.ndarray[Any, Any]]


class RecordingModel:
    """Doubles `x`; refuses negative values; records the rows of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def predict(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        features = inputs["x"]
        self.calls.append(len(features))
        if (features < 0).any():
            raise ValueError("negative")
        return {name: features * (2 if name == "y" else 3) for name in outputs}


def rows(*values: float) -> Arrays:
    return {"x": np.array([[v, v + 0.5] for v in values])}


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _batcher(model: RecordingModel, clock: FakeClock, size: int = 8) -> AdaptiveBatcher:
    return AdaptiveBatcher(model.predict, size, 0.010, clock)


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=10))


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with ExitStack() as stack:
            tickets = [stack.enter_context(batcher.arrival()) for _ in range(3)]
            calls = [
                asyncio.create_task(batcher.submit(rows(*vs), ("y",), {}, ticket))
                for vs, ticket in zip([(1,), (2, 3), (4,)], tickets, strict=True)
            ]
            results = await asyncio.gather(*calls)
        assert model.calls == [4]
        for result, vs in zip(results, [(1,), (2, 3), (4,)], strict=True):
            np.testing.assert_array_equal(result["y"], rows(*vs)["x"] * 2)
        worker.cancel()

    run(scenario)


def test_a_lone_request_runs_at_once_without_waiting_for_the_deadline() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with batcher.arrival() as ticket:
            result = await batcher.submit(rows(1), ("y",), {}, ticket)
        assert model.calls == [1]
        assert clock.now() == 0.0
        np.testing.assert_array_equal(result["y"], rows(1)["x"] * 2)
        worker.cancel()

    run(scenario)


def test_a_batch_waits_for_a_request_still_arriving_until_the_deadline() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with batcher.arrival() as first, batcher.arrival():
            call = asyncio.create_task(batcher.submit(rows(1), ("y",), {}, first))
            await _settle()
            assert model.calls == []  # the second request is still being read
            clock.advance(0.009)
            await _settle()
            assert model.calls == []
            clock.advance(0.002)
            await _settle()
            assert model.calls == [1]
            await call
        worker.cancel()

    run(scenario)


def test_a_request_that_never_arrives_releases_the_batch_at_once() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with batcher.arrival() as first:
            call = asyncio.create_task(batcher.submit(rows(1), ("y",), {}, first))
            with batcher.arrival():
                await _settle()
                assert model.calls == []
            # the second request failed to parse: nobody else is coming
            await _settle()
            assert model.calls == [1]
            await call
        worker.cancel()

    run(scenario)


def test_batches_never_exceed_the_maximum_rows() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock, size=4)
        worker = asyncio.create_task(batcher.run())
        calls = [asyncio.create_task(batcher.submit(rows(i, i), ("y",), {})) for i in range(5)]
        await asyncio.gather(*calls)
        assert model.calls == [4, 4, 2]
        worker.cancel()

    run(scenario)


def test_requests_asking_for_different_outputs_or_parameters_are_not_merged() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with batcher.arrival() as a, batcher.arrival() as b, batcher.arrival() as c:
            calls = [
                asyncio.create_task(batcher.submit(rows(1), ("y",), {}, a)),
                asyncio.create_task(batcher.submit(rows(2), ("z",), {}, b)),
                asyncio.create_task(batcher.submit(rows(3), ("y",), {"mode": 1}, c)),
            ]
            results = await asyncio.gather(*calls)
        assert sorted(model.calls) == [1, 1, 1]
        np.testing.assert_array_equal(results[1]["z"], rows(2)["x"] * 3)
        worker.cancel()

    run(scenario)


def test_a_failing_request_fails_alone_and_its_neighbours_succeed() -> None:
    async def scenario() -> None:
        model, clock = RecordingModel(), FakeClock()
        batcher = _batcher(model, clock)
        worker = asyncio.create_task(batcher.run())
        with ExitStack() as stack:
            tickets = [stack.enter_context(batcher.arrival()) for _ in range(3)]
            values = [(1,), (-1,), (2,)]
            calls = [
                asyncio.create_task(batcher.submit(rows(*vs), ("y",), {}, t))
                for vs, t in zip(values, tickets, strict=True)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert model.calls == [3, 1, 1, 1]
        assert isinstance(results[1], ValueError)
        np.testing.assert_array_equal(results[0]["y"], rows(1)["x"] * 2)
        np.testing.assert_array_equal(results[2]["y"], rows(2)["x"] * 2)
        worker.cancel()

    run(scenario)


@pytest.mark.parametrize("shape", [(), (2, 3)])
def test_inputs_without_a_shared_first_dimension_bypass_the_queue(shape: tuple[int, ...]) -> None:
    async def scenario() -> None:
        seen: list[tuple[int, ...]] = []

        async def predict(inputs: Arrays, outputs: Sequence[str], _: Mapping[str, Any]) -> Arrays:
            seen.append(inputs["a"].shape)
            return {"y": inputs["a"]}

        batcher = AdaptiveBatcher(predict, 8, 0.01, FakeClock())
        inputs = {"a": np.zeros(shape), "b": np.zeros((5,))}
        await batcher.submit(inputs, ("y",), {})
        assert seen == [shape]

    run(scenario)
