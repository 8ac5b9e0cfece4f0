"""The local control plane: one asyncio process that composes the store, the API, and (when
it runs them) the controller and the gateway.

It listens on a unix socket in the state directory, which it creates readable by its owner
only: the API can start processes, so nobody else on the machine may reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry, Histogram

from ebbtide.api.client import socket_path
from ebbtide.api.server import build_app
from ebbtide.autoscaler.profiles import LOCAL, PROFILES
from ebbtide.controller.manager import Controller
from ebbtide.controller.reconciler import ReconcilerSettings
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import EbbtideError
from ebbtide.daemon.wiring import GatewayAdapter
from ebbtide.dashboard import DashboardServer, Recorder
from ebbtide.dashboard.metrics import EndpointCollector
from ebbtide.gateway import Gateway, GatewaySettings
from ebbtide.store import SqliteStore
from ebbtide.supervisor import SubprocessLauncher, Supervisor, WarmForkLauncher

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
    """A listening unix socket at `path`, owner-only; a stale one left by a crash is replaced,
    a live one is an error."""
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise EbbtideError(
                f"a control plane is already running on {path}; stop it with `ebbtide down`"
            )
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_mask)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener


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
    repository: Path | None = None
    """The model repository; default `$EBBTIDE_MODEL_REPOSITORY` or `<home>/models`."""
    profile: str = LOCAL.name
    dashboard_port: int | None = None
    """The read-only dashboard's port on 127.0.0.1; None: 8090, or a free one if that is taken."""


async def serve(home: Path, settings: ControlPlaneSettings | None = None) -> None:
    """Run the control plane until SIGTERM or SIGINT, then stop every part in order: the
    controller and its replicas, the gateway, and the API last."""
    settings = settings or ControlPlaneSettings()
    os.umask(0o077)  # every file the control plane writes is its owner's alone
    paths = StatePaths(home)
    paths.prepare()
    store = SqliteStore(paths.state)
    listener = bind_socket(paths.socket)
    # A replica that dies holding a request has not answered it: inference is a pure function
    # of its input, so sending it again to another replica is safe and loses nothing.
    gateway = Gateway(
        clock=SYSTEM_CLOCK,
        rng=random.Random(),
        settings=GatewaySettings(retry_unanswered=True),
    )
    try:
        await gateway.start(settings.gateway_host, settings.gateway_port)
    except OSError as error:
        listener.close()
        paths.socket.unlink()
        raise EbbtideError(
            f"the gateway cannot listen on {settings.gateway_host}:{settings.gateway_port}: "
            f"{error.strerror}; choose another port with `ebbtide up --gateway-port N`"
        ) from None
    repository = settings.repository or _default_repository(home)
    supervisor = Supervisor(WarmForkLauncher(SubprocessLauncher()), paths.logs)
    registry = CollectorRegistry()
    lateness = Histogram(
        "ebbtide_controller_decision_lateness_seconds",
        "How late each autoscaling decision ran after its due time.",
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )
    adapter = GatewayAdapter(gateway)
    recorder = Recorder(store, adapter.snapshot, SYSTEM_CLOCK)
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
        ),
    )
    recorder.workloads = controller
    registry.register(EndpointCollector(recorder))
    dashboard = DashboardServer(recorder, home, port=settings.dashboard_port)
    gateway.on_demand = controller.demand
    paths.pid.write_text(str(os.getpid()))
    config = uvicorn.Config(
        build_app(store, controller, registry),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    controller.start()
    try:
        await dashboard.start()
        await stop.wait()
    finally:
        await dashboard.stop()
        await controller.stop()
        await gateway.stop()
        server.should_exit = True
        await serving
        store.close()
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            paths.pid.unlink()


def _default_repository(home: Path) -> Path:
    configured = os.environ.get("EBBTIDE_MODEL_REPOSITORY")
    return Path(configured) if configured else home / "models"
