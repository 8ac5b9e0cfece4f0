"""Processes known by more than their pid: a pid and the start time the kernel gave it.

A pid is reused once its process is gone; the pair (pid, start time) is not, so a control
plane that restarts and reads a recorded pair signals the very process it recorded or none.
Signals go through a pidfd opened before the check, so the process checked is the process
signalled even if it exits and its pid is reused in between.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil

START_TIME_TOLERANCE = 0.05
"""Seconds two readings of one process's start time may differ by, where it is read as
seconds since the epoch (off Linux)."""


def start_time(pid: int) -> float:
    """When the kernel started `pid`: on Linux its start in clock ticks after boot, exactly as
    the kernel keeps it (psutil's seconds since the epoch add the boot time, which some
    kernels report a second off from one reading to the next); elsewhere psutil's reading.
    `ProcessLookupError` if no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return float(fields[19])  # field 22 of proc(5), counted after the command name
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except (OSError, IndexError, ValueError):
        pass
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as a pid and its start time (`start_time`)."""

    pid: int
    start_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of the running process `pid`; `ProcessLookupError` if there is none."""
        return cls(pid, start_time(pid))

    def alive(self) -> bool:
        """Whether this very process runs (a zombie does not: it has exited)."""
        try:
            if abs(start_time(self.pid) - self.start_time) > START_TIME_TOLERANCE:
                return False
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except (ProcessLookupError, psutil.NoSuchProcess):
            return False

    def open(self) -> int:
        """A pidfd of this very process; `ProcessLookupError` if it no longer runs."""
        pidfd = os.pidfd_open(self.pid)
        if not self.alive():
            os.close(pidfd)
            raise ProcessLookupError(self.pid)
        return pidfd

    def signal(self, signum: int) -> bool:
        """Send `signum` to this very process; False if it no longer runs."""
        try:
            pidfd = self.open()
        except ProcessLookupError:
            return False
        try:
            signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            return False
        finally:
            os.close(pidfd)
        return True

    def reap(self) -> None:
        """Collect the exit status if this process is our exited child (nothing otherwise)."""
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)

    def to_record(self) -> dict[str, float | int]:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_record(cls, record: dict[str, object]) -> ProcessIdentity:
        pid, start_time = record["pid"], record["start_time"]
        if not isinstance(pid, int) or not isinstance(start_time, int | float):
            raise ValueError(f"not a process identity: {record!r}")
        return cls(pid, float(start_time))


def become_subreaper() -> bool:
    """Make orphaned descendants (replicas whose control plane died) this process's children,
    so it can reap them instead of leaving zombies to an init that may not (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return bool(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_orphans() -> list[tuple[int, int]]:
    """Collect every exited child without waiting: (pid, exit code) of each."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, os.waitstatus_to_exitcode(status)))
