"""The replica's queue in front of its model: one call at a time, in arrival order, bounded.

A saturated replica serves requests in the order they finished arriving (their body fully
read and decoded): no request waits behind one that came after it. That holds for the formats
whose model is a call into a native library (`Model.blocking`: scikit-learn, ONNX, XGBoost,
LightGBM, TorchScript), which compute on one core and so run one call at a time. A Python
class's async `predict` and a batcher keep their own concurrency and order; for them the queue
only counts requests against the bound (`exclusive=False`). At most `max_queue`
requests wait for the model; one more is refused at once with `OverloadedError` (503 and
`Retry-After` over HTTP), carrying an estimate of when the queue will have drained, so that a
client or the gateway retries instead of waiting seconds in a line that only grows.

Order comes from the event loop seeing arrivals while the model runs: a model call that takes
longer than `OFFLOAD_SECONDS` (the typical last one) runs in one worker thread, so the loop keeps
reading, decoding and queueing the requests that arrive meanwhile. A faster call runs on the
loop itself, where a thread hop would cost more than the call.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

from ebbtide.core.errors import OverloadedError

OFFLOAD_SECONDS = 0.001
"""A model call slower than this (as a moving average) runs off the event loop."""
SMOOTHING = 0.2
"""The weight of the newest call in the moving average of a model call's duration."""


class ModelQueue:
    """Admission to the model: `async with queue.turn(): ...` around each model call."""

    def __init__(self, max_queue: int, exclusive: bool = True) -> None:
        self.max_queue = max_queue
        self.exclusive = exclusive
        """Whether one call runs at a time (False: a batcher behind decides; only counted)."""
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._admitted = 0
        self.call_seconds: float | None = None
        """The moving average of one model call's duration; None before the first."""
        self.shed = 0

    @property
    def waiting(self) -> int:
        """Requests admitted that are not running now."""
        if self.exclusive:
            return len(self._waiters)
        return self._admitted

    @property
    def slow_calls(self) -> bool:
        """Whether a model call takes long enough to be worth a worker thread."""
        return self.call_seconds is not None and self.call_seconds >= OFFLOAD_SECONDS

    def retry_after(self) -> int:
        """Whole seconds until the queue as it stands now will have drained (at least 1)."""
        per_call = self.call_seconds or 0.0
        return max(1, math.ceil((self.waiting + 1) * per_call))

    def turn(self) -> Turn:
        """`async with queue.turn():` waits for this request's turn, in arrival order, or
        raises OverloadedError at once when `max_queue` requests are already waiting."""
        return Turn(self)

    async def enter(self) -> None:
        if self.waiting >= self.max_queue and (self._busy or not self.exclusive):
            self.shed += 1
            seconds = self.retry_after()
            raise OverloadedError(
                f"this replica is saturated: {self.waiting} requests are already waiting for "
                f"the model (--max-queue {self.max_queue}); retry in {seconds} s",
                retry_after_seconds=seconds,
            )
        self._admitted += 1
        if not self.exclusive:
            return
        if not self._busy and not self._waiters:
            self._busy = True  # the common case: no one to wait for, no await at all
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            self._admitted -= 1
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn was handed over just as the waiter went away
            else:
                self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        self._admitted -= 1
        if self.exclusive:
            self._release()

    def _release(self) -> None:
        # The turn passes straight to the oldest waiter, so a request arriving now queues
        # behind it instead of overtaking it.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False

    def record(self, seconds: float) -> None:
        """Count one model call's duration into the moving average."""
        previous = self.call_seconds
        self.call_seconds = (
            seconds if previous is None else previous + SMOOTHING * (seconds - previous)
        )


class Turn:
    """One request's turn at the model (`ModelQueue.turn()`): a plain object rather than a
    generator-based context manager, since it wraps every inference request."""

    __slots__ = ("_queue",)

    def __init__(self, queue: ModelQueue) -> None:
        self._queue = queue

    async def __aenter__(self) -> None:
        await self._queue.enter()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._queue.leave()
