"""Fast replica starts: fork each replica from a warm process that has loaded its model.

A fresh replica spends seconds importing numpy, scikit-learn and the model server and reading
its model before it can answer. `WarmForkLauncher` keeps one warm process per model template
(model name, version, repository and batching) that has done all of that once
(`python -m ebbtide.runtime.zygote`), and asks it to fork a child per replica. The child
starts its event loop, binds its port and is ready in a small fraction of a second, and shares
the warm process's memory pages until it writes to them.

The supervisor and the runtime sit in one import layer and never import each other, so this
side starts the warm process as a program and speaks to it over a socket pair it inherits, one
JSON object per line (the protocol is described in `ebbtide.runtime.zygote`).

Where forking is unsafe (a format whose runtime runs threads: ONNX, XGBoost, LightGBM,
TorchScript), where the warm process cannot start, or off Linux, a replica starts as a fresh
process through the fallback launcher, and its log says why.

A forked replica is the warm process's child, not ours: the warm process reaps it and reports
its exit code, and we watch it through a pidfd (Linux 5.3+), which becomes readable when it
exits and signals exactly that process even once its pid is reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.supervisor.launcher import SubprocessLauncher, model_arguments
from ebbtide.supervisor.pidfd import PidfdProcess
from ebbtide.supervisor.replicas import Launcher, ReplicaProcess
from ebbtide.supervisor.template import ReplicaTemplate

WARM_MODULE = "ebbtide.runtime.zygote"
UNKNOWN_EXIT_CODE = 255
"""What `wait()` returns when the warm process that could tell the exit code is gone."""
SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
"""Numeric libraries start their pools when imported; a process with threads cannot fork
safely. Replicas run one such thread anyway (`ServerSettings.threads`)."""
CAN_WATCH_OTHERS_CHILDREN = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


@dataclass(frozen=True)
class WarmSettings:
    """Timing of warm processes."""

    start_timeout: float = 120.0
    """The longest a warm process may take to import and load its model."""
    fork_timeout: float = 10.0
    """The longest to wait for the answer to a fork request."""
    grace_period: float = 10.0
    """On close, how long replicas still running get to drain before SIGKILL."""
    retry_after: float = 30.0
    """After a warm process failed to start, replicas of its template start fresh this long
    before another warm process is tried (a model that does not load fails fresh too, and
    says why in its own log)."""
    report_timeout: float = 2.0
    """How long `wait()` waits for the exit code once the replica is gone."""


Reply = tuple[dict[str, Any], "asyncio.Future[int] | None"]
"""An answer to a fork request, and the future of the child's exit code when it forked."""


class WarmStartUnavailableError(Exception):
    """Why a replica cannot be forked now. It never leaves this module (the launcher starts a
    fresh replica instead and logs the reason), so it is not part of `ebbtide.core.errors`.
    `retry_at` None means never for this template (its model is not fork-safe); `remember`
    means replicas of the template start fresh until then without trying again."""

    def __init__(self, reason: str, retry_at: float | None = None, remember: bool = False):
        super().__init__(reason)
        self.retry_at = retry_at
        self.remember = remember


class ForkedReplica(PidfdProcess):
    """A replica forked by a warm process, watched through a pidfd since it is not our child;
    its exit code comes in the warm process's report (one that exited before the pidfd opened
    was reaped already: the report has its code)."""

    def __init__(self, pid: int, exit_report: asyncio.Future[int], report_timeout: float):
        self._report = exit_report
        self._report_timeout = report_timeout
        super().__init__(pid, lambda: os.pidfd_open(pid))

    async def wait(self) -> int:
        """The exit code once the replica has exited (-N when killed by signal N)."""
        await self._gone.wait()
        if self.returncode is None:
            try:
                code = await asyncio.wait_for(asyncio.shield(self._report), self._report_timeout)
            except TimeoutError:
                code = UNKNOWN_EXIT_CODE
            self.returncode = code if self.returncode is None else self.returncode
        return self.returncode


class WarmProcess:
    """One running `ebbtide.runtime.zygote` and the connection to it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        settings: WarmSettings,
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.model_format = str(hello.get("format"))
        self.load_seconds = float(hello.get("load_seconds", 0.0))
        self.settings = settings
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[Reply] | None = None
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._listening = asyncio.create_task(self._read(), name=f"warm process {self.pid}")

    @property
    def alive(self) -> bool:
        return not self._listening.done()

    @classmethod
    async def start(
        cls, template: ReplicaTemplate, log: Path, settings: WarmSettings, clock: Clock
    ) -> WarmProcess:
        """Start a warm process for `template` and wait until it has loaded the model."""
        ours, theirs = socket.socketpair()
        try:
            with log.open("ab") as output:
                process = await asyncio.create_subprocess_exec(
                    *warm_command(template, theirs.fileno(), settings.grace_period),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **SINGLE_THREADED},
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # the control plane, not the terminal, stops it
                )
        except OSError as error:
            ours.close()
            raise WarmStartUnavailableError(
                f"cannot start a warm process: {error}", clock.now() + settings.retry_after, True
            ) from error
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:
            ours.close()
            await _kill(process)
            raise
        try:
            hello = await cls._hello(process, reader, log, settings, clock)
        except BaseException:
            writer.close()  # the transport owns the socket now
            await _kill(process)
            raise
        return cls(process, reader, writer, hello, settings)

    @staticmethod
    async def _hello(
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        log: Path,
        settings: WarmSettings,
        clock: Clock,
    ) -> dict[str, Any]:
        def retry_at() -> float:
            return clock.now() + settings.retry_after

        try:
            line = await asyncio.wait_for(reader.readline(), settings.start_timeout)
        except TimeoutError:
            raise WarmStartUnavailableError(
                f"the warm process did not load the model within {settings.start_timeout:g} s",
                retry_at(),
                remember=True,
            ) from None
        if not line:
            code = await process.wait()
            raise WarmStartUnavailableError(
                f"the warm process exited with code {code} before it was ready (see {log})",
                retry_at(),
                remember=True,
            )
        try:
            hello: dict[str, Any] = json.loads(line)
        except ValueError:
            raise WarmStartUnavailableError(
                f"the warm process said {line[:200]!r}, not a protocol line", retry_at(), True
            ) from None
        if hello.get("event") == "unsafe":
            raise WarmStartUnavailableError(str(hello.get("reason")), None, remember=True)
        if hello.get("event") != "ready":
            raise WarmStartUnavailableError(
                f"the warm process could not load the model: {hello.get('reason')}",
                retry_at(),
                remember=True,
            )
        return hello

    async def fork(self, port: int, log: Path) -> ForkedReplica:
        """Ask for a replica serving on `port` and writing to `log`."""
        async with self._lock:
            if not self.alive:
                raise WarmStartUnavailableError(f"the warm process {self.pid} has exited")
            self._reply = asyncio.get_running_loop().create_future()
            try:
                await self._send({"op": "fork", "port": port, "log": str(log)})
                reply, report = await asyncio.wait_for(self._reply, self.settings.fork_timeout)
            except TimeoutError:
                raise WarmStartUnavailableError(
                    f"the warm process {self.pid} did not answer a fork request within "
                    f"{self.settings.fork_timeout:g} s"
                ) from None
            finally:
                self._reply = None
        if report is None:
            reason = reply.get("reason")
            raise WarmStartUnavailableError(f"the warm process could not fork: {reason}")
        return ForkedReplica(int(reply["pid"]), report, self.settings.report_timeout)

    async def close(self) -> None:
        """Stop the warm process; it stops any replica of its own still running."""
        if self.process.returncode is None:
            with contextlib.suppress(WarmStartUnavailableError):
                await self._send({"op": "stop"})
            try:  # the connection stays open meanwhile: it carries the replicas' exit codes
                await asyncio.wait_for(self.process.wait(), self.settings.grace_period + 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        self._writer.close()
        await self._listening

    async def release(self) -> None:
        """Close the connection without `stop`: the warm process exits and its replicas serve
        on, for the next control plane to adopt."""
        self._writer.close()
        self._listening.cancel()
        await asyncio.gather(self._listening, return_exceptions=True)

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as error:
            gone = f"the warm process {self.pid} is gone: {error}"
            raise WarmStartUnavailableError(gone) from None

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                self._dispatch(json.loads(line))
        except (ConnectionError, ValueError):
            pass  # a broken connection or line: the warm process is as good as gone
        finally:
            if self._reply is not None and not self._reply.done():
                gone = {"event": "error", "reason": "the warm process exited"}
                self._reply.set_result((gone, None))
            for report in self._exits.values():
                if not report.done():
                    report.set_result(UNKNOWN_EXIT_CODE)

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "exited":
            exited = self._exits.pop(int(message["pid"]), None)
            if exited is not None and not exited.done():
                exited.set_result(int(message["code"]))
            return
        report: asyncio.Future[int] | None = None
        if event == "forked":
            report = asyncio.get_running_loop().create_future()
            self._exits[int(message["pid"])] = report
        if self._reply is not None and not self._reply.done():
            self._reply.set_result((message, report))


class WarmForkLauncher:
    """Starts replicas by forking a warm per-template process; fresh where that is unsafe.

    The first replica of a template waits for its warm process to load the model (about as
    long as a fresh start); `prepare()` starts one ahead of need. `close()` stops every warm
    process and anything forked from it."""

    def __init__(
        self,
        fallback: Launcher | None = None,
        settings: WarmSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.fallback = fallback or SubprocessLauncher()
        self.settings = settings or WarmSettings()
        self.clock = clock
        self._warm: dict[str, asyncio.Task[WarmProcess]] = {}
        self._unavailable: dict[str, WarmStartUnavailableError] = {}
        self._forked: list[ForkedReplica] = []
        self._closed = False

    async def launch(self, template: ReplicaTemplate, port: int, log: Path) -> ReplicaProcess:
        """A replica of `template` on `port`, forked when it can be, else fresh."""
        try:
            warm = await self._warm_process(template, log.parent)
            replica = await warm.fork(port, log)
        except WarmStartUnavailableError as reason:
            with log.open("a") as file:
                file.write(f"warm start not used: {reason}; starting a fresh process\n")
            return await self.fallback.launch(template, port, log)
        self._forked = [r for r in self._forked if r.running] + [replica]
        return replica

    async def prepare(self, template: ReplicaTemplate, logs: Path) -> str | None:
        """Start the template's warm process now (its log goes to `logs`). Returns None once
        it is ready, or why replicas of this template will start fresh."""
        try:
            await self._warm_process(template, logs)
        except WarmStartUnavailableError as reason:
            return str(reason)
        return None

    def warm_pids(self) -> list[int]:
        """The process ids of the warm processes running now."""
        return [
            task.result().pid
            for task in self._warm.values()
            if task.done() and not task.cancelled() and task.exception() is None
        ]

    async def close(self) -> None:
        """Stop every warm process and every replica forked from one; none outlives this."""
        self._closed = True
        tasks, self._warm = list(self._warm.values()), {}
        for task in tasks:
            if not task.done():
                task.cancel()  # still loading: its start kills the process
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, WarmProcess):
                await outcome.close()
        for replica in self._forked:  # orphans of a warm process that died
            with contextlib.suppress(ProcessLookupError):
                replica.kill()
            await replica.wait()
        self._forked = []

    async def release(self) -> None:
        """Let go of every warm process and forked replica without stopping the replicas (a
        hand-over to the next control plane)."""
        self._closed = True
        tasks, self._warm = list(self._warm.values()), {}
        for task in tasks:
            if not task.done():
                task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, WarmProcess):
                await outcome.release()
        self._forked = []

    async def _warm_process(self, template: ReplicaTemplate, logs: Path) -> WarmProcess:
        if not CAN_WATCH_OTHERS_CHILDREN:
            raise WarmStartUnavailableError("this OS has no pidfd to watch a forked replica with")
        if self._closed:
            raise WarmStartUnavailableError("the launcher is closed")
        key = warm_key(template)
        known = self._unavailable.get(key)
        if known is not None:
            if known.retry_at is None or self.clock.now() < known.retry_at:
                raise known
            del self._unavailable[key]
        task = self._warm.get(key)
        if task is not None and task.done():
            if task.cancelled() or task.exception() is not None:
                task = None
            elif not task.result().alive:
                await task.result().close()  # it died; start another
                task = None
        if task is None:
            log = logs / f"warm-{template.model_name}-{template.model_version}-{key[:10]}.log"
            starting = WarmProcess.start(template, log, self.settings, self.clock)
            task = asyncio.create_task(starting, name=f"warm {template.model_name}")
            self._warm[key] = task
        try:
            return await asyncio.shield(task)
        except WarmStartUnavailableError as error:
            if self._warm.get(key) is task:
                del self._warm[key]
            if error.remember:
                self._unavailable[key] = error
            raise


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def warm_key(template: ReplicaTemplate) -> str:
    """Replicas that one warm process can fork: same model, repository and batching."""
    arguments = model_arguments(template)
    return hashlib.sha256("\0".join(arguments).encode()).hexdigest()


def warm_command(template: ReplicaTemplate, control_fd: int, grace_seconds: float) -> list[str]:
    """The warm process's command line for a template."""
    return [
        sys.executable,
        "-m",
        WARM_MODULE,
        *model_arguments(template),
        "--control-fd",
        str(control_fd),
        "--grace-seconds",
        str(grace_seconds),
    ]
