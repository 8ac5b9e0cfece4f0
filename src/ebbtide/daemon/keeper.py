"""`python -m ebbtide.daemon.keeper --home DIR [daemon options]`: keeps a control plane running.

What `ebbtide up --detach` starts. It runs the control plane as its child and starts it again
when it exits on its own: at once after a hand-over (`ebbtide restart`, exit code 75), after a
backoff after a crash (0.25 s, doubling up to 30 s, reset after a minute of running). Each
restart is a line in the log and a `ControlPlaneRestarted` event on every endpoint (shown by
`ebbtide describe`). Since the data plane runs in processes of its own, requests are served
all the while; the new control plane adopts the gateway and the replicas.

SIGTERM (`ebbtide down`) is passed on to the control plane, which stops everything; the
keeper exits after it. The keeper is also the subreaper of what it starts, so replicas whose
control plane died are reaped by it when they exit, not left as zombies.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from ebbtide.core.clock import SYSTEM_CLOCK, SystemClock
from ebbtide.core.processes import become_subreaper, reap_orphans
from ebbtide.daemon.control_plane import EXIT_HANDOVER, StatePaths
from ebbtide.spec import KIND
from ebbtide.store import SqliteStore
from ebbtide.supervisor import Backoff

KEEPER_PID_FILE = "keeper.pid"
RESTART_BACKOFF = Backoff(initial=0.25, ceiling=30.0, reset_after=60.0)
WAIT_SLICE = 0.05
EXIT_STARTUP_FAILED = 1
STARTUP_SECONDS = 30.0
"""A first control plane that exits with code 1 this soon could not start: nothing to keep."""


def exit_reason(code: int) -> str:
    """An exit status as people say it."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    if code == EXIT_HANDOVER:
        return "handed over"
    return f"exited with code {code}"


class Keeper:
    """Runs `command` (a control plane) and starts it again whenever it exits on its own."""

    def __init__(
        self,
        home: Path,
        command: list[str],
        backoff: Backoff = RESTART_BACKOFF,
        clock: SystemClock = SYSTEM_CLOCK,
    ) -> None:
        self.paths = StatePaths(home)
        self.command = command
        self.backoff = backoff
        self.clock = clock
        self.stopping = False
        self.ever_started = False
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        become_subreaper()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR2, self._pass_on)
        restarts = 0
        while True:
            began = self.clock.now()
            code = self._run_once()
            if self.stopping:
                return 0
            ran = self.clock.now() - began
            if code == EXIT_STARTUP_FAILED and not self.ever_started and ran < STARTUP_SECONDS:
                return code  # a setting that cannot work (a busy port): it says why in the log
            self.ever_started = True
            if code == EXIT_HANDOVER:
                delay = 0.0
            else:
                restarts = 1 if ran >= self.backoff.reset_after else restarts + 1
                delay = self.backoff.delay(restarts)
            self._say(
                "Warning" if code != EXIT_HANDOVER else "Normal",
                f"the control plane {exit_reason(code)} after {ran:.1f} s; "
                f"started again after {delay:.2f} s",
            )
            self._wait(delay)
            if self.stopping:
                return 0

    def _run_once(self) -> int:
        self.child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        try:
            while True:
                pid, status = os.waitpid(-1, 0)  # reaps adopted orphans too
                if pid == self.child.pid:
                    code = os.waitstatus_to_exitcode(status)
                    self.child.returncode = code
                    return code
        except ChildProcessError:
            return self.child.returncode if self.child.returncode is not None else 255

    def _wait(self, seconds: float) -> None:
        deadline = self.clock.now() + seconds
        while not self.stopping and self.clock.now() < deadline:
            reap_orphans()
            self.clock.blocking_sleep(min(WAIT_SLICE, deadline - self.clock.now()))

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._pass_on(signal.SIGTERM, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _say(self, type_: str, message: str) -> None:
        print(f"keeper: {message}", flush=True)
        try:
            store = SqliteStore(self.paths.state)
        except Exception as error:  # the event is a courtesy; the restart is what matters
            print(f"keeper: cannot record the event: {error}", flush=True)
            return
        try:
            for record in store.list_objects(KIND):
                store.record_event(
                    record.key, type_, "ControlPlaneRestarted", message, component="keeper"
                )
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ebbtide.daemon.keeper")
    parser.add_argument("--home", type=Path, required=True)
    arguments, options = parser.parse_known_args(argv)
    home: Path = arguments.home
    paths = StatePaths(home)
    paths.prepare()
    pid_file = home / KEEPER_PID_FILE
    pid_file.write_text(str(os.getpid()))
    command = [sys.executable, "-m", "ebbtide.daemon", "--home", str(home), *options]
    try:
        return Keeper(home, command).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()


if __name__ == "__main__":
    sys.exit(main())
