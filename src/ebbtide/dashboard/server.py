"""The dashboard's web server: the page, its static files and the feed, on a loopback port.

It is read-only: every route is a GET, nothing it serves can change an endpoint or start a
process, so unlike the control socket it may listen on TCP (on 127.0.0.1 only), where a
browser can reach it. The page loads nothing from the network: uPlot ships in `static/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ebbtide import __version__
from ebbtide.core.errors import EbbtideError
from ebbtide.dashboard.feed import build_feed
from ebbtide.dashboard.recorder import Recorder

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8090
URL_FILE = "dashboard.url"
FEED_PATH = "/api/v1/feed"


def url_file(home: Path) -> Path:
    """Where a running control plane writes its dashboard's URL (`ebbtide dashboard` reads it)."""
    return home / URL_FILE


def build_dashboard_app(recorder: Recorder) -> Starlette:
    """The page at /, its files under /static, the feed at /api/v1/feed."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def feed(request: Request) -> Response:
        text = request.query_params.get("since", "0")
        try:
            since = int(text)
        except ValueError:
            return JSONResponse(
                {"error": f"since must be a sample number from an earlier feed, not {text!r}"},
                status_code=400,
            )
        return JSONResponse(build_feed(recorder, since), headers={"cache-control": "no-store"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    routes = [
        Route("/", page),
        Route(FEED_PATH, feed),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=1024)])


def bind_loopback(host: str, port: int | None) -> socket.socket:
    """A listening TCP socket on a loopback address. `port=None` means the usual port, or any
    free one when something else holds it: the dashboard never keeps a control plane from
    starting. An explicit port must be free."""
    if not host.startswith("127.") and host != "localhost":
        raise EbbtideError(
            f"the dashboard listens on loopback addresses only, not {host!r}; use 127.0.0.1"
        )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, DEFAULT_PORT if port is None else port))
    except OSError as error:
        if port is not None:
            listener.close()
            raise EbbtideError(
                f"the dashboard cannot listen on {host}:{port}: {error.strerror}; choose "
                "another port with `ebbtide up --dashboard-port N` (0 picks a free one)"
            ) from None
        listener.bind((host, 0))
    listener.listen(64)
    listener.setblocking(False)
    return listener


class _QuietServer(uvicorn.Server):
    """Leaves signals to the control plane, which stops its parts in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DashboardServer:
    """The recorder's sampling loop and the web server, started and stopped together."""

    def __init__(
        self, recorder: Recorder, home: Path, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.recorder = recorder
        self.home = home
        self.host = host
        self.port = port
        self.url: str | None = None
        self._server: _QuietServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> str:
        """Listen, start sampling, write the URL file; returns the URL."""
        listener = bind_loopback(self.host, self.port)
        host, port = listener.getsockname()[:2]
        config = uvicorn.Config(
            build_dashboard_app(self.recorder),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = _QuietServer(config)
        self._tasks = [
            asyncio.create_task(self._server.serve(sockets=[listener]), name="dashboard"),
            asyncio.create_task(self.recorder.run(), name="dashboard samples"),
        ]
        self.url = f"http://{host}:{port}/"
        url_file(self.home).write_text(self.url + "\n")
        return self.url

    async def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            url_file(self.home).unlink()
        if self._server is not None:
            self._server.should_exit = True
        serving, sampling = self._tasks or (None, None)
        if sampling is not None:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        if serving is not None:
            await serving
