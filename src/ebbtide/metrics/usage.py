"""Reading what a replica process uses: CPU seconds and resident memory, from the OS.

Usage is read as cumulative CPU time; a rate over a window is what Kubernetes' metrics
pipeline reports as a pod's CPU (cores) and what the HPA divides by `requests.cpu`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessUsage:
    """One reading of one process, at monotonic `time`."""

    time: float
    cpu_seconds: float
    memory_bytes: int


def read_usage(pid: int, time: float) -> ProcessUsage | None:
    """CPU seconds (user + system, the process and its threads) and RSS; None if it is gone."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            rss = process.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return ProcessUsage(time, times.user + times.system, rss)


class UsageWindow:
    """Recent readings of one replica, to report CPU in cores over `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._readings: deque[ProcessUsage] = deque()

    def add(self, reading: ProcessUsage) -> None:
        self._readings.append(reading)
        while len(self._readings) > 2 and reading.time - self._readings[1].time >= self.window:
            self._readings.popleft()

    @property
    def latest(self) -> ProcessUsage | None:
        return self._readings[-1] if self._readings else None

    def cpu_cores(self) -> float | None:
        """Average cores used between the oldest and newest reading; None before two."""
        if len(self._readings) < 2:
            return None
        first, last = self._readings[0], self._readings[-1]
        elapsed = last.time - first.time
        if elapsed <= 0:
            return None
        return max(0.0, (last.cpu_seconds - first.cpu_seconds) / elapsed)
