"""Run a replica: load a model, serve it with uvicorn, drain on SIGTERM.

Two ways in:

- `python -m ebbtide.runtime NAME[:VERSION] --port 8080` (or `ebbtide serve-model ...`): a
  fresh process that starts listening at once, answers liveness while the model loads, and
  reports ready when it has loaded.
- `load_model(...)` then `serve(loaded, address, settings)` in the same process: a warm
  parent loads once and forks; each child serves the already loaded model (only where
  `loaded.fork_safe`).

Shutdown: the first SIGTERM or SIGINT turns readiness false and keeps serving for
`drain_seconds`; then the listener closes, every accepted request finishes (up to
`graceful_timeout_seconds`) and the process exits 0. A second SIGINT stops at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.runtime.app import ModelServerApp
from ebbtide.runtime.loaders import Model, create_model
from ebbtide.runtime.metrics import ServerMetrics
from ebbtide.runtime.repository import ModelLocation, ModelRepository, parse_reference
from ebbtide.runtime.settings import ListenAddress, ServerSettings
from ebbtide.runtime.timeline import StartTimeline

log = logging.getLogger("ebbtide.runtime")
EXIT_DRAINED = 0
EXIT_LOAD_FAILED = 3


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded in this process, ready to be served here or in a forked child."""

    model: Model
    load_seconds: float

    @property
    def location(self) -> ModelLocation:
        return self.model.location

    @property
    def fork_safe(self) -> bool:
        """Whether a child forked from this process may serve this model."""
        return self.model.fork_safe


def resolve(
    reference: str, repository: ModelRepository | Path | str | None = None
) -> ModelLocation:
    """`NAME` (newest version) or `NAME:VERSION` in the repository (default root when None)."""
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
    name, version = parse_reference(reference)
    return repo.resolve(name, version)


def load_model(
    reference: str | ModelLocation,
    repository: ModelRepository | Path | str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> LoadedModel:
    """Resolve and load a model in this process (blocking). Raises ModelNotFoundError,
    ModelLoadError or MissingExtraError with a message that says what to do."""
    location = reference if isinstance(reference, ModelLocation) else resolve(reference, repository)
    model = create_model(location)
    started = clock.now()
    asyncio.run(model.load())
    return LoadedModel(model=model, load_seconds=clock.now() - started)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a readiness-first drain on the first SIGTERM or SIGINT."""

    def __init__(self, config: uvicorn.Config, app: ModelServerApp, settings: ServerSettings):
        super().__init__(config)
        self.model_app = app
        self.settings = settings
        self.drain_started: float | None = None
        self.exit_code = EXIT_DRAINED

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None and sig in (signal.SIGTERM, signal.SIGINT):
            self.drain_started = self.model_app.clock.now()
            self.model_app.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.drain_started is None:
            return False
        # Past the drain window, uvicorn's own shutdown closes the listener and still
        # finishes every request already accepted.
        return self.model_app.clock.now() - self.drain_started >= self.settings.drain_seconds

    def fail(self, error: BaseException) -> None:
        self.exit_code = EXIT_LOAD_FAILED
        self.should_exit = True


def serve(
    model: LoadedModel | ModelLocation,
    address: ListenAddress,
    settings: ServerSettings | None = None,
    clock: Clock = SYSTEM_CLOCK,
    timeline: StartTimeline | None = None,
) -> int:
    """Serve one model until drained; returns the exit code (0 drained, 3 load failed).

    Given a `LoadedModel`, the server is ready as soon as it listens; given a location, it
    listens first and loads in the background, reporting not-ready until loaded. A
    `timeline` of the process's start gets the last steps and goes to the log at ready."""
    settings = settings or ServerSettings()
    if isinstance(model, LoadedModel):
        served, load_seconds = model.model, model.load_seconds
    else:
        served, load_seconds = create_model(model), None
    metrics = ServerMetrics(served.location.name, served.location.version)
    if load_seconds is not None:
        metrics.set_load_seconds(load_seconds)
    app = ModelServerApp(served, settings, clock, metrics, timeline=timeline)
    config = uvicorn.Config(app, **_uvicorn_options(address, settings))
    server = DrainingServer(config, app, settings)
    app.on_fatal = server.fail
    log.info(
        "serving %s on %s (batching %s)",
        served.location.reference,
        address.describe(),
        "off" if settings.batching is None else settings.batching,
    )
    with _thread_limits(settings.threads):
        server.run(sockets=[address.sock] if address.sock is not None else None)
    return server.exit_code


def import_serving_stack(settings: ServerSettings | None = None) -> None:
    """Import now what `serve()` would import lazily (uvicorn's HTTP protocol, lifespan and
    event loop modules), so that a process forked after this serves without importing."""
    config = uvicorn.Config(
        _no_app, **_uvicorn_options(ListenAddress.tcp("127.0.0.1", 0), settings or ServerSettings())
    )
    config.load()
    config.get_loop_factory()
    import prometheus_client  # noqa: F401  # a forked child's metrics are then built at once

    "localhost".encode("idna")  # binding encodes the host name: load the codec now


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """The app of a throwaway uvicorn config: never called."""


def _thread_limits(threads: int | None) -> AbstractContextManager[object]:
    if threads is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    limits: AbstractContextManager[object] = threadpool_limits(limits=threads)
    return limits


def _uvicorn_options(address: ListenAddress, settings: ServerSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "lifespan": "on",
        "access_log": settings.access_log,
        "log_level": settings.log_level,
        "server_header": False,
        "timeout_graceful_shutdown": settings.graceful_timeout_seconds,
    }
    if address.unix is not None:
        options["uds"] = address.unix
    elif address.fd is not None:
        options["fd"] = address.fd
    elif address.sock is None:
        options["host"] = address.host or "127.0.0.1"
        options["port"] = address.port
    return options
