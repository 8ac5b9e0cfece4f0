"""The one place that reads time.

Every delay and every window in ebbtide compares times taken from a `Clock`, never counts
ticks, and no other module calls `time.time()` or sleeps directly. Tests and the simulator
pass `ebbtide.testing.FakeClock`, so a simulated hour runs in milliseconds and is exact.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for decisions, wall time for what people read."""

    def now(self) -> float:
        """Monotonic seconds; only differences between two readings mean anything."""
        ...

    def wall(self) -> datetime:
        """The current UTC wall time, for timestamps shown to people and stored."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, UTC wall time and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def blocking_sleep(self, seconds: float) -> None:
        """Sleep outside an event loop (command-line polling, process teardown)."""
        time.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
