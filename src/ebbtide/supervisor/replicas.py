"""Replica processes: start, wait until ready, restart after a crash with backoff, drain, stop.

Each replica is one model-server process listening on its own loopback port. It counts as
ready only once its readiness probe (`GET /v2/health/ready`) answers 200, the moment the
gateway may send it traffic. A replica that exits on its own is restarted after an
exponentially growing delay (`CrashLoopBackOff`, as the kubelet does, on a local timescale);
a replica being stopped gets SIGTERM, finishes what it accepted, and is killed only after its
grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import httpx

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.processes import ProcessIdentity
from ebbtide.supervisor.adoption import (
    REPLICA_ROLE,
    AdoptedProcess,
    ProcessLedger,
    ReplicaRecord,
    listens_on,
)
from ebbtide.supervisor.limits import CgroupLimits, LimitsOutcome
from ebbtide.supervisor.naming import replica_name
from ebbtide.supervisor.template import ReplicaTemplate


class Phase(StrEnum):
    """What `get pods` prints in STATUS."""

    PENDING = "Pending"
    RUNNING = "Running"
    CRASH_LOOP = "CrashLoopBackOff"
    TERMINATING = "Terminating"


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, doubling up to `ceiling`; reset after `reset_after` seconds
    of healthy running. The kubelet's are 10 s to 5 min; a local replica starts in under a
    second, so these are shorter."""

    initial: float = 0.5
    ceiling: float = 30.0
    reset_after: float = 60.0

    def delay(self, restarts: int) -> float:
        return min(self.ceiling, self.initial * 2.0 ** max(0, restarts - 1))


@dataclass(frozen=True)
class SupervisorSettings:
    """Timing of probes, starts and stops."""

    probe_interval: float = 0.02
    start_timeout: float = 120.0
    grace_period: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)


class ReplicaProcess(Protocol):
    """A started replica process."""

    pid: int

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    """Starts the model server of a template listening on a port, writing to a log file.

    A launcher that holds processes of its own (the warm processes of `WarmForkLauncher`) also
    has `async close()`, which `Supervisor.stop_all()` calls after stopping every replica."""

    async def launch(self, template: ReplicaTemplate, port: int, log: Path) -> ReplicaProcess: ...


@dataclass
class Replica:
    """One replica and what is known of it. Mutated only by the supervisor."""

    name: str
    template: ReplicaTemplate
    port: int
    created: datetime
    started_at: float
    phase: Phase = Phase.PENDING
    ready: bool = False
    ready_since: float | None = None
    """When `ready` last changed, as the Ready condition's lastTransitionTime."""
    restarts: int = 0
    pid: int | None = None
    limits: LimitsOutcome | None = None
    last_exit_code: int | None = None
    terminating: bool = False
    process: ReplicaProcess | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> tuple[str, str]:
        return self.template.namespace, self.template.endpoint


ChangeListener = Callable[[Replica], None]
log = logging.getLogger("ebbtide.supervisor")
ADOPTION_PROBE = 0.5
"""Seconds an adopted replica's first readiness probe may take before the control plane goes
on without waiting for it."""


class Supervisor:
    """Owns every replica process of the control plane."""

    def __init__(
        self,
        launcher: Launcher,
        logs: Path,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        limits: CgroupLimits | None = None,
        settings: SupervisorSettings | None = None,
        ledger: ProcessLedger | None = None,
    ) -> None:
        self.launcher = launcher
        self.logs = logs
        self.clock = clock
        self.rng = rng or random.Random()
        self.limits = limits or CgroupLimits()
        self.settings = settings or SupervisorSettings()
        self.ledger = ledger
        """Where running replicas are recorded, so that the next control plane adopts them."""
        self._replicas: dict[str, Replica] = {}
        self._listeners: list[ChangeListener] = []
        self._http = httpx.AsyncClient(timeout=1.0)

    def subscribe(self, listener: ChangeListener) -> None:
        """Call `listener` whenever a replica becomes ready, unready, or goes away."""
        self._listeners.append(listener)

    def replicas(self, namespace: str | None = None, endpoint: str | None = None) -> list[Replica]:
        """Replicas, optionally of one endpoint, oldest first."""
        found = [
            r
            for r in self._replicas.values()
            if (namespace is None or r.template.namespace == namespace)
            and (endpoint is None or r.template.endpoint == endpoint)
        ]
        return sorted(found, key=lambda r: r.started_at)

    def start(self, template: ReplicaTemplate) -> Replica:
        """Create a replica of `template` and start it in the background; returns at once."""
        name = replica_name(template.endpoint, template.hash, self.rng)
        while name in self._replicas:
            name = replica_name(template.endpoint, template.hash, self.rng)
        replica = Replica(
            name=name,
            template=template,
            port=free_port(),
            created=self.clock.wall(),
            started_at=self.clock.now(),
        )
        self._replicas[name] = replica
        replica.task = asyncio.create_task(self._keep_running(replica), name=f"replica {name}")
        return replica

    async def stop(self, name: str) -> None:
        """Stop a replica: SIGTERM (it drains), SIGKILL after the grace period. The caller
        takes it out of the gateway first."""
        replica = self._replicas.get(name)
        if replica is None or replica.terminating:
            return
        replica.terminating = True
        replica.phase = Phase.TERMINATING
        self._set_ready(replica, False)
        process = replica.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), self.settings.grace_period)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if replica.task is not None:
            replica.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task
        self.limits.release(name)
        self._replicas.pop(name, None)
        if self.ledger is not None:
            self.ledger.forget_process(name)
        self._notify(replica)

    async def stop_all(self) -> None:
        """Stop every replica, then close the launcher (when it has `close()`)."""
        await asyncio.gather(*(self.stop(name) for name in list(self._replicas)))
        close = getattr(self.launcher, "close", None)
        if close is not None:
            await close()
        await self._http.aclose()

    async def release(self) -> None:
        """Let go of every replica without stopping it (a hand-over to the next control
        plane), then close the launcher's channels."""
        for replica in list(self._replicas.values()):
            replica.terminating = True  # no restart from here on
            if replica.task is not None:
                replica.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replica.task
        self._replicas.clear()
        release = getattr(self.launcher, "release", None)
        if release is not None:
            await release()
        await self._http.aclose()

    async def adopt(self) -> list[Replica]:
        """Take over the recorded replicas that still run and serve (see
        `ebbtide.supervisor.adoption`); drop the records of the others. Adopted replicas
        that answer their readiness probe are ready when this returns."""
        if self.ledger is None:
            return []
        records = []
        for name, raw in self.ledger.processes(REPLICA_ROLE).items():
            try:
                records.append(ReplicaRecord.from_record(name, raw))
            except (KeyError, TypeError, ValueError) as error:
                log.warning("dropping the unreadable record of replica %s: %s", name, error)
                self.ledger.forget_process(name)
        outcomes = await asyncio.gather(*(self._adopt_one(record) for record in records))
        adopted = []
        for record, replica in zip(records, outcomes, strict=True):
            if replica is None:
                log.info("replica %s no longer runs as recorded; it will be replaced", record.name)
                self.ledger.forget_process(record.name)
            else:
                adopted.append(replica)
        return adopted

    async def _adopt_one(self, record: ReplicaRecord) -> Replica | None:
        if record.name in self._replicas or not listens_on(record.identity, record.port):
            return None
        replica = Replica(
            name=record.name,
            template=record.template,
            port=record.port,
            created=record.created,
            started_at=record.started_at,
            restarts=record.restarts,
        )
        # A busy replica may answer its probe late; it is ours all the same (its identity and
        # port say so), and it joins the rotation when it answers.
        ready = await self._probe(replica, self._model_ready_url(replica), ADOPTION_PROBE)
        process = AdoptedProcess(record.identity)
        replica.process, replica.pid = process, process.pid
        template = replica.template
        replica.limits = self.limits.apply(
            replica.name, process.pid, template.cpu_limit, template.memory_limit
        )
        replica.phase = Phase.RUNNING if ready else Phase.PENDING
        replica.ready, replica.ready_since = ready, self.clock.now()
        self._replicas[replica.name] = replica
        replica.task = asyncio.create_task(
            self._keep_running(replica, adopted=process), name=f"replica {replica.name}"
        )
        return replica

    async def _keep_running(self, replica: Replica, adopted: ReplicaProcess | None = None) -> None:
        while not replica.terminating:
            launched_at = self.clock.now()
            if adopted is not None:
                await self._watch(replica, adopted)
                adopted = None
            else:
                await self._run_once(replica)
            if replica.terminating:
                return
            if self.clock.now() - launched_at >= self.settings.backoff.reset_after:
                replica.restarts = 0
            replica.restarts += 1
            replica.phase = Phase.CRASH_LOOP
            await self.clock.sleep(self.settings.backoff.delay(replica.restarts))

    async def _run_once(self, replica: Replica) -> None:
        log = self.logs / f"{replica.name}.log"
        try:
            process = await self.launcher.launch(replica.template, replica.port, log)
        except OSError as error:
            with log.open("a") as file:
                file.write(f"could not start the model server: {error}\n")
            replica.last_exit_code = -1
            return
        replica.process, replica.pid = process, process.pid
        template = replica.template
        replica.limits = self.limits.apply(
            replica.name, process.pid, template.cpu_limit, template.memory_limit
        )
        self._record(replica)
        exited = asyncio.create_task(process.wait())
        await self._ready_or_exited(replica, process, exited)
        replica.last_exit_code = await exited
        self._set_ready(replica, False)

    async def _ready_or_exited(
        self, replica: Replica, process: ReplicaProcess, exited: asyncio.Task[int]
    ) -> None:
        """Until the replica is ready (it joins the rotation) or its process exits; one that
        never became ready within the start timeout is killed."""
        probing = asyncio.create_task(self._until_ready(replica))
        done, _ = await asyncio.wait({exited, probing}, return_when=asyncio.FIRST_COMPLETED)
        if probing in done and probing.result():
            replica.phase = Phase.RUNNING
            self._set_ready(replica, True)
            return
        probing.cancel()
        if exited not in done:
            process.kill()

    async def _watch(self, replica: Replica, process: ReplicaProcess) -> None:
        """An adopted replica: until it exits (once ready, if it was not yet)."""
        exited = asyncio.create_task(process.wait())
        if not replica.ready:
            await self._ready_or_exited(replica, process, exited)
        replica.last_exit_code = await exited
        self._set_ready(replica, False)

    def _record(self, replica: Replica) -> None:
        if self.ledger is None or replica.pid is None:
            return
        try:
            identity = ProcessIdentity.of(replica.pid)
        except ProcessLookupError:
            return  # exited already; its watcher restarts it
        record = ReplicaRecord(
            replica.name,
            replica.template,
            replica.port,
            identity,
            replica.created,
            replica.started_at,
            replica.restarts,
        )
        self.ledger.record_process(replica.name, REPLICA_ROLE, record.to_record())

    def _model_ready_url(self, replica: Replica) -> str:
        template = replica.template
        return (
            f"http://{replica.address}/v2/models/{template.model_name}"
            f"/versions/{template.model_version}/ready"
        )

    async def _probe(self, replica: Replica, url: str, timeout: float) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return (await self._http.get(url, timeout=timeout)).status_code == 200
        return False

    async def _until_ready(self, replica: Replica) -> bool:
        url = f"http://{replica.address}/v2/health/ready"
        deadline = self.clock.now() + self.settings.start_timeout
        while self.clock.now() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self._http.get(url)).status_code == 200:
                    return True
            await self.clock.sleep(self.settings.probe_interval)
        return False

    def _set_ready(self, replica: Replica, ready: bool) -> None:
        if replica.ready != ready:
            replica.ready = ready
            replica.ready_since = self.clock.now()
            self._notify(replica)

    def _notify(self, replica: Replica) -> None:
        for listener in self._listeners:
            listener(replica)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
