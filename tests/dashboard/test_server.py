"""The dashboard's web server in-process: the page, its vendored files, the feed, read-only."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ebbtide.core.errors import EbbtideError
from ebbtide.dashboard.recorder import Recorder
from ebbtide.dashboard.server import DEFAULT_PORT, FEED_PATH, bind_loopback, build_dashboard_app
from ebbtide.testing import FakeClock, memory_store


class Client:
    """Requests to the app in-process, through httpx's ASGI transport."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
                return await http.request(method, path, **options)

        return asyncio.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)


@pytest.fixture
def client() -> Client:
    clock = FakeClock()
    recorder = Recorder(memory_store(clock), lambda key: None, clock)
    recorder.sample()
    return Client(build_dashboard_app(recorder))


def test_the_page_and_the_chart_library_are_served_from_the_package(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/uPlot.iife.min.js" in page.text
    assert "http" not in page.text.replace('href="/api/v1/feed"', "").split("<body>")[0]
    for path in ("uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "dashboard.js"):
        assert client.get(f"/static/{path}").status_code == 200, path


def test_the_feed_is_documented_json(client: Client) -> None:
    feed = client.get(FEED_PATH).json()
    assert feed["kind"] == "DashboardFeed"
    assert feed["sequence"] == 1
    assert feed["endpoints"] == []


def test_a_bad_since_is_a_client_error_that_says_what_to_send(client: Client) -> None:
    response = client.get(FEED_PATH, params={"since": "yesterday"})
    assert response.status_code == 400
    assert "since must be a sample number" in response.json()["error"]


def test_nothing_can_be_changed_through_it(client: Client) -> None:
    for path in ("/", FEED_PATH):
        assert client.request("POST", path).status_code == 405
        assert client.request("DELETE", path).status_code == 405


def test_it_listens_on_loopback_only_and_yields_a_busy_default_port() -> None:
    with pytest.raises(EbbtideError, match="loopback addresses only"):
        bind_loopback("0.0.0.0", 0)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", DEFAULT_PORT))
        holder.listen()
    except OSError:
        pass  # something else already holds the default port: the same case
    try:
        listener = bind_loopback("127.0.0.1", None)
        assert listener.getsockname()[1] != DEFAULT_PORT
        listener.close()
        with pytest.raises(EbbtideError, match="--dashboard-port"):
            bind_loopback("127.0.0.1", DEFAULT_PORT)
    finally:
        holder.close()
