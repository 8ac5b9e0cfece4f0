"""The dashboard in a real browser: headless Chromium, driven by Playwright, on a real control
plane serving a real model under real load through the gateway."""

from __future__ import annotations

import random
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from typer.testing import CliRunner

from ebbtide.api.client import ControlPlaneClient, socket_path
from ebbtide.cli.main import app
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.dashboard.server import url_file
from ebbtide.loadgen.requests import example_request
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from tests.conftest import start_control_plane, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NAME = "rps-endpoint"
ENDPOINT = {
    "apiVersion": "mlops.example.com/v1",
    "kind": "InferenceEndpoint",
    "metadata": {"name": NAME},
    "spec": {
        "model": {"name": "my-ml-model", "version": "v1"},
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 3,
            # 5 requests/s per replica: the ~40 requests/s below ask for all three.
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": 5},
                    },
                }
            ],
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    },
}


@pytest.fixture
def plane(ebbtide_home: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    repository = tmp_path / "models"
    ensure_sample("fast", ModelRepository(repository), name="my-ml-model", version="v1")
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    ModelRepository(repository).add("garbage", "v1", garbage)
    process = start_control_plane(
        ebbtide_home, "--repository", str(repository), "--dashboard-port", "0"
    )
    yield process
    stop_process(process)


@pytest.fixture
def page() -> Iterator[Page]:
    assert CHROMIUM.exists(), "Chromium is missing: `make browser` installs it"
    with tempfile.TemporaryDirectory(prefix="ebbtide-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = SYSTEM_CLOCK.now() + timeout
    while SYSTEM_CLOCK.now() < deadline:
        value = condition()
        if value:
            return value
        SYSTEM_CLOCK.blocking_sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def steady_load(
    url: str, body: dict[str, Any], rate: float, stop: threading.Event, counts: dict[str, int]
) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            began = SYSTEM_CLOCK.now()
            try:
                response = client.post(url, json=body)
                key = "ok" if response.status_code == 200 else f"status {response.status_code}"
            except httpx.HTTPError as error:
                key = type(error).__name__
            counts[key] = counts.get(key, 0) + 1
            SYSTEM_CLOCK.blocking_sleep(max(0.0, 1 / rate - (SYSTEM_CLOCK.now() - began)))


def feed_state(page: Page) -> dict[str, Any]:
    """What the page holds for the endpoint: points, the newest time, the highest offered."""
    result: dict[str, Any] = page.evaluate(
        """(key) => {
            const view = window.ebbtideDashboard.endpoints.get(key);
            if (!view || !view.columns) return {points: 0};
            const c = view.columns;
            return {points: c.time.length, newest: c.time[c.time.length - 1],
                    offered: Math.max(0, ...c.offered.filter((v) => v != null)),
                    updates: window.ebbtideDashboard.updates};
        }""",
        f"default/{NAME}",
    )
    return result


def test_the_page_follows_an_endpoint_scaling_under_load_and_shows_a_stopped_control_plane(
    ebbtide_home: Path, plane: subprocess.Popen[bytes], page: Page, tmp_path: Path
) -> None:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    missing = {
        **ENDPOINT,
        "metadata": {"name": "missing-model"},
        "spec": {**ENDPOINT["spec"], "model": {"name": "no-such-model", "version": "v1"}},
    }
    crashing = {
        **ENDPOINT,
        "metadata": {"name": "crashing-model"},
        "spec": {**ENDPOINT["spec"], "model": {"name": "garbage", "version": "v1"}},
    }
    with ControlPlaneClient(ebbtide_home) as client:
        client.apply([ENDPOINT, missing, crashing])
        url = url_file(ebbtide_home).read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        opened = CliRunner().invoke(app, ["dashboard", "--no-browser"])
        assert opened.exit_code == 0, opened.output
        assert opened.output == f"dashboard: {url} (read-only)\n"
        page.goto(url)
        section = page.locator(f'section[data-endpoint="default/{NAME}"]')
        section.wait_for(timeout=20_000)
        assert "my-ml-model:v1" in section.inner_text()
        # A model that cannot be found is shown as that, with the message that says so.
        broken = page.locator('section[data-endpoint="default/missing-model"]')
        badge_of_broken = broken.locator('[data-role="state"]')
        wait_for(lambda: badge_of_broken.inner_text() == "ModelUnavailable", 20, "the badge")
        assert "no-such-model" in broken.locator('[data-role="state-message"]').inner_text()
        # A model file that cannot be loaded: its replicas exit and restart with backoff.
        crash = page.locator('section[data-endpoint="default/crashing-model"]')
        badge_of_crash = crash.locator('[data-role="state"]')
        wait_for(lambda: badge_of_crash.inner_text() == "Failing", 60, "the Failing badge")
        assert "ebbtide logs" in crash.locator('[data-role="state-message"]').inner_text()
        client.delete_endpoint("default", "crashing-model")
        wait_for(
            lambda: "1/1" in section.locator('[data-role="replicas"]').inner_text(),
            60,
            "the first replica to show as ready",
        )
        for chart in ("traffic", "latency", "replicas", "metric-requests_per_second"):
            section.locator(f'[data-chart="{chart}"] canvas').wait_for(timeout=10_000)
        endpoint_url = client.get_endpoint("default", NAME)["status"]["url"]

        traffic_chart = section.locator('[data-chart="traffic"] canvas')
        before_image = traffic_chart.screenshot()
        before = feed_state(page)
        stop, counts = threading.Event(), {}
        model = f"{endpoint_url}/v2/models/my-ml-model/versions/v1"
        body = example_request(httpx.get(model, timeout=10).json(), random.Random(0))
        loaders = [
            threading.Thread(target=steady_load, args=(f"{model}/infer", body, 10.0, stop, counts))
            for _ in range(4)
        ]
        for loader in loaders:
            loader.start()
        try:
            # Newest first: the last row is the first rescale.
            rescale = section.locator('[data-role="trail"] tr[data-role="rescale"]').last
            wait_for(lambda: rescale.count() > 0, 60, "a rescale in the decision trail")
            wait_for(lambda: feed_state(page)["offered"] > 10, 30, "the load on the chart")
            # At least one update a second (one missed tick allowed on a loaded machine).
            updates, began = feed_state(page)["updates"], SYSTEM_CLOCK.now()
            SYSTEM_CLOCK.blocking_sleep(6.0)
            per_second = (feed_state(page)["updates"] - updates) / (SYSTEM_CLOCK.now() - began)
            assert per_second >= 5 / 6, per_second
        finally:
            stop.set()
            for loader in loaders:
                loader.join()
        _when, sizes, reason = rescale.locator("td").all_inner_texts()
        assert sizes in ("1 → 2", "1 → 3"), sizes
        # The reason the decision gave (burst mode or the metric above its target), the same
        # words as the SuccessfulRescale event's.
        assert "burst" in reason or "requests_per_second above target" in reason, reason
        events = section.locator('[data-role="events"]').inner_text()
        assert f"New size: {sizes[-1]}; reason: {reason}" in events, events
        after = feed_state(page)
        assert after["points"] > before["points"]
        assert after["newest"] > before["newest"]
        assert traffic_chart.screenshot() != before_image, "the traffic chart did not move"
        explanation = section.locator('[data-role="explanation"]').inner_text()
        assert explanation.startswith(("holding", "scaling", "not scaling")), explanation
        assert set(counts) == {"ok"}, counts
        assert counts["ok"] > 100, counts
        assert errors == [], errors

        # A reload keeps the history: the control plane holds it, not the page.
        page.reload()
        section.wait_for(timeout=20_000)
        wait_for(lambda: feed_state(page)["points"] >= after["points"], 10, "history on reload")
        assert feed_state(page)["offered"] > 10

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path(ebbtide_home)))) as cp:
        metrics = cp.get("http://cp/metrics").text
    labels = f'endpoint="{NAME}",namespace="default"'
    assert f"ebbtide_endpoint_desired_replicas{{{labels}}}" in metrics
    assert f"ebbtide_endpoint_rescales_total{{{labels},reason=" in metrics

    stop_process(plane)
    badge = page.locator("#connection")
    wait_for(
        lambda: badge.get_attribute("data-state") == "disconnected", 15, "the disconnected badge"
    )
    assert "no answer from the control plane" in badge.inner_text()
    assert page.evaluate("document.body.classList.contains('disconnected')")
    # The only errors after the stop are the browser's own notes of refused requests.
    assert all("ERR_CONNECTION_REFUSED" in e or "Failed to fetch" in e for e in errors), errors
    gone = CliRunner().invoke(app, ["dashboard", "--no-browser"])
    assert gone.exit_code == 1
    assert "no control plane is running" in gone.output
