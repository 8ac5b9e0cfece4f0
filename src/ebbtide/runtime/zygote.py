"""`python -m ebbtide.runtime.zygote MODEL ... --control-fd N`: a warm process that forks replicas.

Named after Android's zygote: it imports the model server and loads one model once, then forks
a child per replica on request. The child only starts its event loop and binds its port, so it
is ready in tens of milliseconds instead of the seconds a fresh interpreter spends importing
numpy and scikit-learn and reading the model, and it shares the warm process's memory pages
(copy on write) until it writes to them.

Forking is only safe while this process runs no thread but its main one: a thread's locks and
state are copied into the child without the thread that would release them. So the warm process

- says `unsafe` for a model whose format is not fork-safe (`Model.fork_safe`: onnxruntime,
  OpenMP and torch run thread pools), before loading it when the format alone tells;
- expects the numeric libraries' pools sized to one thread (`OMP_NUM_THREADS=1` and friends,
  set by whoever starts it: numpy starts OpenBLAS threads as it is imported, before any code
  here runs), and loads with `asyncio.run`, whose worker thread is joined before it returns;
- counts its threads (`/proc/self/task`) after loading and before every fork, and refuses to
  fork while there is more than one.

The protocol is one JSON object per line over an inherited socket (`--control-fd`, one end of a
socket pair), never a path on disk, so only the process that started it can ask it to fork:

    first line, to the starter:  {"event": "ready", "pid": P, "format": F, "load_seconds": S}
                                 | {"event": "unsafe", "reason": R} | {"event": "failed", ...}
    from the starter:            {"op": "fork", "port": N, "log": PATH} | {"op": "stop"}
    answer to each fork, in order:  {"event": "forked", "pid": C} | {"event": "error", ...}
    whenever a child exits:      {"event": "exited", "pid": C, "code": X}

`X` is what asyncio reports as a return code: the exit status, or minus the signal number.
The child starts a new session, appends its output to PATH and serves on 127.0.0.1:N (or
`--host`) until it drains. The warm process reaps its children. On `stop` or on SIGTERM it
sends SIGTERM to every child, SIGKILL after `--grace-seconds`, and exits. On end of file (the
starter exited without a `stop`: a crash, `kill -9`, or a hand-over to a new control plane) it
exits and leaves its children serving, for the next control plane to adopt.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import traceback
from types import FrameType
from typing import Any, NoReturn

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import EbbtideError
from ebbtide.runtime.cli import parser as server_parser
from ebbtide.runtime.cli import settings_from
from ebbtide.runtime.loaders import create_model
from ebbtide.runtime.server import LoadedModel, import_serving_stack, load_model, resolve, serve
from ebbtide.runtime.settings import ListenAddress, ServerSettings

log = logging.getLogger("ebbtide.runtime.zygote")
EXIT_STOPPED = 0
EXIT_NOT_WARM = 4


def parser() -> argparse.ArgumentParser:
    """The model server's options (its listen options are unused: each fork names a port)."""
    p = server_parser()
    p.prog = "python -m ebbtide.runtime.zygote"
    p.description = (
        "Load one model once and fork a replica per request on --control-fd (see the module "
        "docstring of ebbtide.runtime.zygote for the protocol)."
    )
    p.add_argument(
        "--control-fd", type=int, required=True,
        help="an inherited connected unix socket that carries the requests",
    )  # fmt: skip
    p.add_argument(
        "--grace-seconds", type=float, default=10.0,
        help="when stopping, how long children get after SIGTERM before SIGKILL (default 10)",
    )  # fmt: skip
    return p


def thread_count() -> int:
    """Threads of this process as the kernel sees them, native pools included."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def threads_problem() -> str | None:
    threads = thread_count()
    if threads <= 1:
        return None
    return (
        f"{threads} threads run in the warm process, so forking it is unsafe; start it with "
        "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"
    )


class Zygote:
    """The warm process: a loaded model, a control socket, and the children forked from it."""

    def __init__(
        self,
        control: socket.socket,
        loaded: LoadedModel,
        settings: ServerSettings,
        host: str,
        grace_seconds: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.control = control
        self.loaded = loaded
        self.settings = settings
        self.host = host
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.children: set[int] = set()
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        self._buffer = b""
        self._connected = True
        self._orphan_children = False

    def run(self) -> int:
        """Fork on request until told to stop; then stop the children and return."""
        self._install_signals()
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(self._wake_read, selectors.EVENT_READ)
        self.send(
            event="ready",
            pid=os.getpid(),
            format=self.loaded.location.format,
            load_seconds=round(self.loaded.load_seconds, 3),
        )
        while not self.stopping:
            self._step(timeout=None)
        if not self._orphan_children:
            self._stop_children()
        return EXIT_STOPPED

    def send(self, **message: Any) -> None:
        if not self._connected:
            return
        try:
            self.control.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self._connected = False  # the starter is gone; keep reaping, then stop

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd does the work
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _step(self, timeout: float | None) -> None:
        for key, _ in self.selector.select(timeout):
            if key.fileobj == self._wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 4096)
                self._reap()
            else:
                self._read_requests()

    def _read_requests(self) -> None:
        data = self.control.recv(65536)
        if not data:
            # The starter is gone without a `stop`: it crashed or handed over. Its replicas
            # serve on in their own sessions, for the next control plane to adopt.
            self._connected = False
            self.stopping = True
            self._orphan_children = True
            return
        self._buffer += data
        while b"\n" in self._buffer and not self.stopping:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            operation = request["op"]
        except (ValueError, KeyError, TypeError):
            self.send(event="error", reason=f"not a request: {line[:200]!r}")
            return
        if operation == "stop":
            self.stopping = True
        elif operation == "fork":
            self._fork(int(request["port"]), str(request["log"]))
        else:
            self.send(event="error", reason=f"unknown operation {operation!r}; use fork or stop")

    def _fork(self, port: int, log_path: str) -> None:
        problem = threads_problem()
        if problem is not None:
            self.send(event="error", reason=problem)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as error:
            self.send(event="error", reason=f"fork failed: {error}")
            return
        if pid == 0:
            self._become_replica(port, log_path)
        self.children.add(pid)
        self.send(event="forked", pid=pid)

    def _become_replica(self, port: int, log_path: str) -> NoReturn:
        code = 1
        try:
            self._detach(log_path)
            log.info(
                "forked from warm process %d, where %s loaded in %.2f s",
                os.getppid(),
                self.loaded.location.reference,
                self.loaded.load_seconds,
            )
            code = serve(self.loaded, ListenAddress.tcp(self.host, port), self.settings)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _detach(self, log_path: str) -> None:
        """In the child: drop the warm process's signals and descriptors, start a session of
        its own, and write to the replica's log."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.control.close()
        os.setsid()
        output = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.close(nothing)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send(event="exited", pid=pid, code=os.waitstatus_to_exitcode(status))

    def _stop_children(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.control)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = self.clock.now() + self.grace_seconds
        while self.children and self.clock.now() < deadline:
            self._step(timeout=max(0.0, deadline - self.clock.now()))
        for pid in self.children:
            log.warning("replica %d runs %g s after SIGTERM: SIGKILL", pid, self.grace_seconds)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            _, status = os.waitpid(pid, 0)
            self.children.discard(pid)
            self.send(event="exited", pid=pid, code=os.waitstatus_to_exitcode(status))


def warm_up(args: argparse.Namespace) -> tuple[LoadedModel, ServerSettings] | dict[str, Any]:
    """Load the model and everything serving imports; or the `unsafe`/`failed` message."""
    reference = args.model
    if args.model_version:
        reference = f"{args.model.partition(':')[0]}:{args.model_version}"
    try:
        _, settings = settings_from(args)
        location = resolve(reference, args.repository)
        model = create_model(location)
        if not model.fork_safe and not model.fork_safety_set_by_load:
            return _unsafe(location.format)
        loaded = load_model(location)
        if not loaded.fork_safe:
            return _unsafe(location.format)
        import_serving_stack(settings)
    except (EbbtideError, ValueError, OSError) as error:
        return {"event": "failed", "reason": str(error)}
    problem = threads_problem()
    if problem is not None:
        return {"event": "unsafe", "reason": problem}
    # Objects that survive to here live as long as the children do; freezing them keeps the
    # collector from writing to their pages in every child (copy on write would copy them).
    gc.collect()
    gc.freeze()
    return loaded, settings


def _unsafe(model_format: str) -> dict[str, Any]:
    return {
        "event": "unsafe",
        "reason": f"{model_format} models are not fork-safe (their runtime runs threads that "
        "a forked child would not have)",
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    control = socket.socket(fileno=args.control_fd)
    warm = warm_up(args)
    if isinstance(warm, dict):
        log.warning("not forking replicas: %s", warm["reason"])
        with contextlib.suppress(OSError):
            control.sendall(json.dumps(warm).encode() + b"\n")
        return EXIT_NOT_WARM
    loaded, settings = warm
    log.info(
        "warm: %s (%s) loaded in %.2f s; forking replicas on request",
        loaded.location.reference,
        loaded.location.format,
        loaded.load_seconds,
    )
    return Zygote(control, loaded, settings, args.host, args.grace_seconds).run()


if __name__ == "__main__":
    sys.exit(main())
