"""A process that is not this one's child, watched and signalled through a pidfd: a pid that
the kernel recycles cannot be mistaken for it once the pidfd is open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable


class PidfdProcess:
    """`pid`, `returncode`, `terminate()` and `kill()` of a `ReplicaProcess`; subclasses say in
    `wait()` where the exit code comes from, since only the parent can reap it."""

    def __init__(self, pid: int, open_pidfd: Callable[[], int]) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._gone = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pidfd: int | None = None
        try:
            self._pidfd = open_pidfd()
        except ProcessLookupError:
            self._gone.set()  # exited already
        else:
            self._loop.add_reader(self._pidfd, self._exited)

    @property
    def running(self) -> bool:
        return not self._gone.is_set()

    def terminate(self) -> None:
        self._send(signal.SIGTERM)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        if self._pidfd is None:
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, signum)

    def _exited(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None
        self._gone.set()
