"""Starting the control plane in the background, restarting and stopping it: `ebbtide up
--detach`, `restart` and `down`.

`up --detach` starts a keeper (`ebbtide.daemon.keeper`) that runs the control plane and starts
it again after a crash. `down` stops the keeper and the control plane, which stops the gateway
and the replicas; whatever a dead control plane left running is stopped from its records in
the state store, so nothing is left behind either way.
"""

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
from ebbtide.core.processes import ProcessIdentity
from ebbtide.daemon.control_plane import StatePaths
from ebbtide.daemon.keeper import KEEPER_PID_FILE
from ebbtide.store import SqliteStore

_started_here: dict[int, subprocess.Popen[bytes]] = {}
"""Keepers this process started, reaped by `stop` (a program that starts and stops control
planes, a test or a benchmark, leaves no zombie)."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Started:
    """A control plane that answers: its process, its keeper's, and where its log goes."""

    pid: int
    log: Path
    keeper: int | None = None


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
            [sys.executable, "-m", "ebbtide.daemon.keeper", "--home", str(home), *options],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = SYSTEM_CLOCK.now() + timeout
    while SYSTEM_CLOCK.now() < deadline:
        if process.poll() is not None:
            raise EbbtideError(f"the control plane could not start: {_last_line(log)}")
        pid = _recorded_pid(paths)
        if pid is not None and is_running(home):
            _started_here[process.pid] = process
            return Started(pid, log, keeper=process.pid)
        SYSTEM_CLOCK.blocking_sleep(POLL_INTERVAL)
    process.terminate()
    raise EbbtideError(f"the control plane did not answer within {timeout:.0f} s; see {log}")


def stop(home: Path, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the control plane of `home` (and its keeper), and every process it started;
    returns its pid, or None when none was running. SIGTERM first (replicas drain), SIGKILL
    after `timeout`. Replicas and gateway workers that a dead control plane left running are
    stopped too, found by their records in the state store."""
    paths = StatePaths(home)
    keeper = _ours(paths.home / KEEPER_PID_FILE)
    control_plane = _ours(paths.pid)
    stopped = control_plane.pid if control_plane is not None else None
    family = []
    for process in (control_plane, keeper):
        if process is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += [process, *process.children(recursive=True)]
    # The keeper passes SIGTERM on to the control plane and exits after it.
    first = keeper or control_plane
    if first is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            first.send_signal(signal.SIGTERM)
        _wait_gone([p for p in (keeper, control_plane) if p is not None], timeout)
    leftovers = [p for p in family if _alive(p)]
    for survivor in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            survivor.kill()
    _wait_gone(leftovers, 5)
    if keeper is not None and keeper.pid in _started_here:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _started_here.pop(keeper.pid).wait(timeout=5)
    swept = sweep(paths, timeout)
    for stale in (paths.pid, paths.home / KEEPER_PID_FILE):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    if stopped is None and swept:
        return -1
    return stopped


def sweep(paths: StatePaths, timeout: float = STOP_TIMEOUT) -> int:
    """Stop every recorded replica and gateway worker still running (a control plane that
    died cannot); returns how many there were."""
    if not paths.state.exists():
        return 0
    store = SqliteStore(paths.state)
    try:
        records = store.processes()
        running = []
        for name, record in records.items():
            with contextlib.suppress(KeyError, ValueError):
                identity = ProcessIdentity.from_record(record)
                if identity.signal(signal.SIGTERM):
                    running.append(identity)
            store.forget_process(name)
    finally:
        store.close()
    deadline = SYSTEM_CLOCK.now() + timeout
    while any(i.alive() for i in running) and SYSTEM_CLOCK.now() < deadline:
        SYSTEM_CLOCK.blocking_sleep(POLL_INTERVAL)
    for identity in running:
        identity.signal(signal.SIGKILL)
        identity.reap()
    return len(running)


def restart(home: Path, timeout: float = START_TIMEOUT) -> Started:
    """A new control plane in place of the running one, with no request lost: the old one
    hands over (SIGUSR2) and exits leaving the gateway and the replicas serving; the new one
    (the keeper's next, or one started here) adopts them. New code takes effect this way."""
    paths = StatePaths(home)
    control_plane = _ours(paths.pid)
    if control_plane is None:
        raise EbbtideError(f"no control plane is running for {home}; start one with `ebbtide up`")
    keeper = _ours(paths.home / KEEPER_PID_FILE)
    control_plane.send_signal(signal.SIGUSR2)
    _wait_gone([control_plane], STOP_TIMEOUT)
    log = paths.logs / "control-plane.log"
    if keeper is None:
        options = _options_of(control_plane)
        with contextlib.suppress(FileNotFoundError):
            paths.pid.unlink()
        return start_detached(home, options, timeout)
    deadline = SYSTEM_CLOCK.now() + timeout
    while SYSTEM_CLOCK.now() < deadline:
        pid = _recorded_pid(paths)
        if pid is not None and pid != control_plane.pid and is_running(home):
            return Started(pid, log, keeper=keeper.pid)
        SYSTEM_CLOCK.blocking_sleep(POLL_INTERVAL)
    raise EbbtideError(f"the new control plane did not answer within {timeout:.0f} s; see {log}")


def _options_of(process: psutil.Process) -> list[str]:
    """The daemon options a running control plane was started with (less `--home`)."""
    try:
        command = process.cmdline()
    except psutil.NoSuchProcess:
        return []
    options = command[command.index("ebbtide.daemon") + 1 :] if "ebbtide.daemon" in command else []
    if "--home" in options:
        at = options.index("--home")
        del options[at : at + 2]
    return options


def _ours(pid_file: Path) -> psutil.Process | None:
    """The ebbtide process whose pid `pid_file` holds, if it runs (a stale file whose pid now
    belongs to another program is not ours)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid() or not psutil.pid_exists(pid):
        return None
    try:
        process = psutil.Process(pid)
        if not any("ebbtide" in part for part in process.cmdline()) or not _alive(process):
            return None
    except psutil.NoSuchProcess:
        return None
    return process


def _wait_gone(processes: list[psutil.Process], timeout: float) -> None:
    """Wait until none of `processes` runs; a zombie has exited (an init that does not reap
    would otherwise keep it "running" forever)."""
    deadline = SYSTEM_CLOCK.now() + timeout
    while any(_alive(p) for p in processes) and SYSTEM_CLOCK.now() < deadline:
        SYSTEM_CLOCK.blocking_sleep(POLL_INTERVAL)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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
