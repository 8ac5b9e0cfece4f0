"""Fakes that tests and users share: a clock you move by hand, and in-memory twins.

These are real implementations of ebbtide's small protocols, not mocks: the same
contract tests run against them and against the real ones.
"""

from __future__ import annotations

import asyncio
import heapq
from datetime import UTC, datetime, timedelta

from ebbtide.core.clock import Clock
from ebbtide.store import SqliteStore


class FakeClock:
    """A clock that moves only when told to. `sleep` parks until `advance` passes its time."""

    def __init__(self, start: float = 0.0, wall_start: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = 0

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counter += 1
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), self._counter, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


def memory_store(clock: Clock | None = None) -> SqliteStore:
    """The store's in-memory twin: the same code on a private `:memory:` database."""
    return SqliteStore(":memory:", clock or FakeClock())
