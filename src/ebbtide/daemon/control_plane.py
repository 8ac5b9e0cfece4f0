"""The local control plane: one asyncio process that composes the store, the API, and (when
it runs them) the controller and the gateway.

It listens on a unix socket in the state directory, which it creates readable by its owner
only: the API can start processes, so nobody else on the machine may reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Histogram

from ebbtide.api.client import socket_path
from ebbtide.api.server import build_app
from ebbtide.autoscaler.profiles import LOCAL, PROFILES
from ebbtide.controller.manager import Controller
from ebbtide.controller.reconciler import ReconcilerSettings
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import EbbtideError
from ebbtide.core.sockets import listen_owner_only
from ebbtide.daemon.gateway_fleet import FleetSettings, GatewayFleet
from ebbtide.daemon.wiring import GatewayAdapter
from ebbtide.dashboard import DashboardServer, Recorder
from ebbtide.dashboard.metrics import EndpointCollector
from ebbtide.spec import KIND
from ebbtide.store import ObjectKey, SqliteStore
from ebbtide.supervisor import Replica, SubprocessLauncher, Supervisor, WarmForkLauncher

log = logging.getLogger("ebbtide.control_plane")

EXIT_HANDOVER = 75
"""The control plane's exit code after a hand-over: the data plane runs on."""
STATE_FILE = "state.db"
PID_FILE = "control-plane.pid"
LOG_DIR = "logs"


@dataclass(frozen=True)
class StatePaths:
    """The files of one state directory."""

    home: Path

    @property
    def socket(self) -> Path:
        return socket_path(self.home)

    @property
    def state(self) -> Path:
        return self.home / STATE_FILE

    @property
    def pid(self) -> Path:
        return self.home / PID_FILE

    @property
    def logs(self) -> Path:
        return self.home / LOG_DIR

    def prepare(self) -> None:
        """Create the directory, owner-only, as a fresh control plane needs it."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.logs.mkdir(exist_ok=True)


def bind_socket(path: Path) -> socket.socket:
    """The API's listening unix socket at `path`, owner-only (see `listen_owner_only`)."""
    return listen_owner_only(
        path, f"a control plane is already running on {path}; stop it with `ebbtide down`"
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host: the control plane stops its parts in
    order (API last) on SIGTERM, rather than uvicorn exiting on its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Where the control plane listens and what it runs."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_workers: int = 1
    """Gateway processes sharing the port (`SO_REUSEPORT`); one per core at most is useful."""
    repository: Path | None = None
    """The model repository; default `$EBBTIDE_MODEL_REPOSITORY` or `<home>/models`."""
    profile: str = LOCAL.name
    dashboard_port: int | None = None
    """The read-only dashboard's port on 127.0.0.1; None: 8090, or a free one if that is taken."""


async def serve(home: Path, settings: ControlPlaneSettings | None = None) -> int:
    """Run the control plane until a signal, and return the process's exit code.

    SIGTERM or SIGINT (`ebbtide down`) stops every part in order: the controller and its
    replicas, the gateway, and the API last. SIGUSR2 hands over: the control plane exits
    with `EXIT_HANDOVER` and leaves the gateway and the replicas serving, for the next
    control plane (an upgrade, or `ebbtide restart`) to adopt."""
    settings = settings or ControlPlaneSettings()
    os.umask(0o077)  # every file the control plane writes is its owner's alone
    started = SYSTEM_CLOCK.now()
    paths = StatePaths(home)
    paths.prepare()
    store = SqliteStore(paths.state)
    listener = bind_socket(paths.socket)
    # A replica that dies holding a request has not answered it: inference is a pure function
    # of its input, so sending it again to another replica is safe and loses nothing.
    fleet = GatewayFleet(
        home,
        store,
        FleetSettings(
            host=settings.gateway_host,
            port=settings.gateway_port,
            workers=settings.gateway_workers,
            retry_unanswered=True,
        ),
        paths.logs,
    )
    try:
        await fleet.start()
    except EbbtideError:
        listener.close()
        paths.socket.unlink()
        raise
    repository = settings.repository or _default_repository(home)
    supervisor = Supervisor(WarmForkLauncher(SubprocessLauncher()), paths.logs, ledger=store)
    gateway_ready = SYSTEM_CLOCK.now()
    adopted = await supervisor.adopt()
    log.info(
        "gateway ready %.2f s and replicas adopted %.2f s after start",
        gateway_ready - started,
        SYSTEM_CLOCK.now() - started,
    )
    registry = CollectorRegistry()
    lateness = Histogram(
        "ebbtide_controller_decision_lateness_seconds",
        "How late each autoscaling decision ran after its due time.",
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )
    adapter = GatewayAdapter(fleet, SYSTEM_CLOCK)
    recorder = Recorder(store, adapter.snapshot, SYSTEM_CLOCK)
    decisions = Counter(
        "ebbtide_controller_decisions",
        "Autoscaling decisions made, by endpoint.",
        ["namespace", "endpoint"],
        registry=registry,
    )

    decided: set[ObjectKey] = set()

    def count_decision(key: ObjectKey) -> None:
        if key not in decided:
            decided.add(key)
            log.info(
                "first decision for %s/%s %.2f s after the control plane started",
                key.namespace,
                key.name,
                SYSTEM_CLOCK.now() - started,
            )
        decisions.labels(key.namespace, key.name).inc()

    controller = Controller(
        store,
        supervisor,
        adapter,
        SYSTEM_CLOCK,
        ReconcilerSettings(
            repository=repository,
            profile=PROFILES[settings.profile],
            record_lateness=lateness.observe,
            record_decision=recorder.record_decision,
            count_decision=count_decision,
        ),
    )
    recorder.workloads = controller
    registry.register(EndpointCollector(recorder))
    dashboard = DashboardServer(recorder, home, port=settings.dashboard_port)
    fleet.on_demand = controller.demand
    fleet.on_restart = lambda worker, reason: _record_everywhere(
        store, "Warning", "GatewayRestarted", f"gateway worker {worker}: {reason}"
    )
    paths.pid.write_text(str(os.getpid()))
    config = uvicorn.Config(
        build_app(store, controller, registry),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    stop = asyncio.Event()
    handing_over = False

    def hand_over() -> None:
        nonlocal handing_over
        handing_over = True
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, hand_over)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    controller.start()
    _report_adoption(store, fleet, adopted, SYSTEM_CLOCK.now() - started)
    try:
        await dashboard.start()
        await stop.wait()
    finally:
        await dashboard.stop()
        if handing_over:
            replicas = len(supervisor.replicas())
            log.info("handing over: the gateway and %d replicas keep serving", replicas)
            await controller.release()
            await fleet.release()
        else:
            await controller.stop()
            await fleet.stop()
        server.should_exit = True
        await serving
        store.close()
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            paths.pid.unlink()
    return EXIT_HANDOVER if handing_over else 0


def _report_adoption(
    store: SqliteStore, fleet: GatewayFleet, adopted: list[Replica], seconds: float
) -> None:
    """Say in the log, and on each endpoint whose replicas were taken over, what this
    control plane found running."""
    log.info(
        "control plane up in %.2f s: gateway %s:%d (%d of %d workers adopted), %d replicas adopted",
        seconds,
        *fleet.address,
        fleet.adopted,
        len(fleet.workers()),
        len(adopted),
    )
    by_endpoint: dict[tuple[str, str], list[str]] = {}
    for replica in adopted:
        by_endpoint.setdefault(replica.endpoint, []).append(replica.name)
    for (namespace, name), names in by_endpoint.items():
        key = ObjectKey(KIND, namespace, name)
        message = f"Adopted running pods after a control-plane restart: {', '.join(names)}"
        with contextlib.suppress(EbbtideError):
            store.record_event(key, "Normal", "Adopted", message)


def _record_everywhere(store: SqliteStore, type_: str, reason: str, message: str) -> None:
    """An event about the control plane itself, on every endpoint (where `describe` shows
    it)."""
    for record in store.list_objects(KIND):
        store.record_event(record.key, type_, reason, message)


def _default_repository(home: Path) -> Path:
    configured = os.environ.get("EBBTIDE_MODEL_REPOSITORY")
    return Path(configured) if configured else home / "models"
