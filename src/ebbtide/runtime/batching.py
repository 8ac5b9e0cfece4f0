"""Adaptive batching: concurrent requests merged into one model call and split back.

A batch closes when the first of these happens:

1. it holds `max_batch_size` rows;
2. `max_latency` has passed since its oldest request arrived;
3. no other request is on its way: every request the server has begun to read has reached
   the batcher. Waiting longer could only add latency, so at low load a request runs at once
   and batching costs nothing; under load, requests pile up while the model runs and the
   next call takes them all.

Requests merge only when they ask for the same outputs with the same parameters and their
inputs agree in names, datatypes and every dimension but the first. Rows are stacked along
the first dimension and each request gets back exactly its slice, so results equal unbatched
ones. If a merged call raises, each request is retried alone, so one bad request fails by
itself and not its neighbours.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ebbtide.core.clock import Clock
from ebbtide.core.errors import ModelFailedError

Arrays = dict[str, np.ndarray[Any, Any]]
Predict = Callable[[Arrays, Sequence[str], Mapping[str, Any]], Awaitable[Arrays]]


@dataclass
class Arrival:
    """A request the server has begun to read; the batcher waits for it while it is pending."""

    submitted: bool = False


@dataclass
class _Pending:
    inputs: Arrays
    outputs: tuple[str, ...]
    parameters: Mapping[str, Any]
    rows: int
    key: tuple[Any, ...]
    arrived: float
    result: asyncio.Future[Arrays] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def batch_rows(inputs: Arrays) -> int | None:
    """The shared first dimension of every input, or None when they have none in common."""
    sizes = {array.shape[0] if array.ndim else None for array in inputs.values()}
    if len(sizes) != 1:
        return None
    return sizes.pop()


class AdaptiveBatcher:
    """Runs `predict` on merged requests; `run()` is its worker, started once per server."""

    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_latency_seconds: float,
        clock: Clock,
        on_batch: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_seconds
        self._clock = clock
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._changed = asyncio.Event()
        self._arriving = 0

    @contextmanager
    def arrival(self) -> Iterator[Arrival]:
        """Mark a request as on its way from the moment the server starts reading it."""
        ticket = Arrival()
        self._arriving += 1
        try:
            yield ticket
        finally:
            if not ticket.submitted:
                self._arriving -= 1
                self._changed.set()

    async def submit(
        self,
        inputs: Arrays,
        outputs: Sequence[str],
        parameters: Mapping[str, Any],
        ticket: Arrival | None = None,
    ) -> Arrays:
        """Queue a request and wait for its share of a batch."""
        if ticket is not None and not ticket.submitted:
            ticket.submitted = True
            self._arriving -= 1
            self._changed.set()
        rows = batch_rows(inputs)
        if rows is None or rows > self.max_batch_size:
            return await self._predict(inputs, outputs, parameters)
        pending = _Pending(
            inputs=inputs,
            outputs=tuple(outputs),
            parameters=parameters,
            rows=rows,
            key=_key(inputs, outputs, parameters),
            arrived=self._clock.now(),
        )
        self._queue.append(pending)
        self._changed.set()
        return await pending.result

    async def run(self) -> None:
        """Form and run batches until cancelled."""
        while True:
            while not self._queue:
                self._changed.clear()
                await self._changed.wait()
            batch = await self._gather()
            await self._execute(batch)

    async def _gather(self) -> list[_Pending]:
        deadline = self._queue[0].arrived + self.max_latency
        while True:
            batch = self._compatible()
            rows = sum(p.rows for p in batch)
            if rows >= self.max_batch_size or self._arriving <= 0:
                break
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                break
            self._changed.clear()
            await self._wait_for_change(remaining)
        for pending in batch:
            self._queue.remove(pending)
        return batch

    def _compatible(self) -> list[_Pending]:
        first = self._queue[0]
        batch, rows = [first], first.rows
        for pending in list(self._queue)[1:]:
            if pending.key == first.key and rows + pending.rows <= self.max_batch_size:
                batch.append(pending)
                rows += pending.rows
        return batch

    async def _wait_for_change(self, seconds: float) -> None:
        changed = asyncio.ensure_future(self._changed.wait())
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({changed, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Not awaited: awaiting here could swallow a cancellation of the worker itself.
            changed.cancel()
            timer.cancel()

    async def _execute(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.result.done()]
        if not live:
            return
        self._on_batch(sum(p.rows for p in live))
        if len(live) == 1:
            await self._run_alone(live[0])
            return
        first = live[0]
        merged = {name: np.concatenate([p.inputs[name] for p in live]) for name in first.inputs}
        try:
            results = await self._predict(merged, first.outputs, first.parameters)
            shares = _split(results, [p.rows for p in live])
        except Exception:
            for pending in live:
                await self._run_alone(pending)
            return
        for pending, share in zip(live, shares, strict=True):
            if not pending.result.done():
                pending.result.set_result(share)

    async def _run_alone(self, pending: _Pending) -> None:
        try:
            result = await self._predict(pending.inputs, pending.outputs, pending.parameters)
        except Exception as error:
            if not pending.result.done():
                pending.result.set_exception(error)
            return
        if not pending.result.done():
            pending.result.set_result(result)


def _key(inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]) -> tuple[Any, ...]:
    layout = tuple((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items())
    frozen = json.dumps(parameters, sort_keys=True, default=str) if parameters else ""
    return (layout, tuple(outputs), frozen)


def _split(results: Arrays, rows: list[int]) -> list[Arrays]:
    total = sum(rows)
    for name, array in results.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ModelFailedError(
                f"output {name!r} has shape {list(array.shape)}, not one row per input row "
                f"({total}); this model cannot be batched"
            )
    bounds = np.cumsum([0, *rows])
    return [
        {name: array[start:end] for name, array in results.items()}
        for start, end in itertools.pairwise(bounds)
    ]
