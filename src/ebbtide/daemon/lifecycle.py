"""Starting the control plane in the background and stopping it: `ebbtide up --detach`/`down`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import ControlPlaneUnavailableError, EbbtideError
from ebbtide.daemon.control_plane import StatePaths

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Started:
    """A control plane that answers: its process and where its log goes."""

    pid: int
    log: Path


def is_running(home: Path) -> bool:
    """True when a control plane answers on `home`'s socket."""
    client = ControlPlaneClient(home, timeout=2.0)
    try:
        if not client.reachable():
            return False
        client.health()
    except ControlPlaneUnavailableError:
        return False
    finally:
        client.close()
    return True


def start_detached(
    home: Path, options: Sequence[str] = (), timeout: float = START_TIMEOUT
) -> Started:
    """Start a control plane in its own session and wait until it answers; `options` are
    the daemon's (`--gateway-port 0`, `--profile kubernetes`, ...)."""
    paths = StatePaths(home)
    if is_running(home):
        raise EbbtideError(
            f"a control plane is already running for {home}; `ebbtide down` stops it"
        )
    paths.prepare()
    log = paths.logs / "control-plane.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ebbtide.daemon", "--home", str(home), *options],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = SYSTEM_CLOCK.now() + timeout
    while SYSTEM_CLOCK.now() < deadline:
        if process.poll() is not None:
            raise EbbtideError(f"the control plane could not start: {_last_line(log)}")
        if is_running(home):
            return Started(process.pid, log)
        SYSTEM_CLOCK.blocking_sleep(POLL_INTERVAL)
    process.kill()
    raise EbbtideError(f"the control plane did not answer within {timeout:.0f} s; see {log}")


def stop(home: Path, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the control plane of `home` and every process it started; returns its pid, or None
    when none was running. SIGTERM first (replicas drain), SIGKILL after `timeout`."""
    paths = StatePaths(home)
    pid = _recorded_pid(paths)
    if pid is None or not psutil.pid_exists(pid):
        with contextlib.suppress(FileNotFoundError):
            paths.pid.unlink()
        return None
    process = psutil.Process(pid)
    if not any("ebbtide" in part for part in process.cmdline()):
        paths.pid.unlink()  # a stale file: that pid now belongs to another program
        return None
    family = [process, *process.children(recursive=True)]
    process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs([process], timeout=timeout)
    leftovers = [p for p in family if p.is_running()] + alive
    for survivor in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    psutil.wait_procs(leftovers, timeout=5)
    with contextlib.suppress(FileNotFoundError):
        paths.pid.unlink()
    return pid


def exit_on_sigterm() -> None:
    """Turn SIGTERM into `SystemExit`, so a program that started a control plane runs its
    `finally` and stops it (Python's default for SIGTERM ends the process on the spot)."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("error: ") if lines else f"no output; see {log}"


def _recorded_pid(paths: StatePaths) -> int | None:
    try:
        pid = int(paths.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid != os.getpid() else None
