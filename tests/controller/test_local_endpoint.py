"""The seed walkthrough end to end on one machine: a real control plane, real replica
processes serving real models, real load through the gateway."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from typer.testing import CliRunner

from ebbtide.api.client import ControlPlaneClient
from ebbtide.cli.main import app
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from tests.conftest import start_control_plane, stop_process

pytestmark = pytest.mark.integration
SEED = Path(__file__).parent.parent / "fixtures" / "inference_endpoint.yaml"
NAME = "my-model-endpoint"
runner = CliRunner()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast sample as my-ml-model v1 and v2, the heavy one as heavy-model v1."""
    root = tmp_path_factory.mktemp("models")
    repo = ModelRepository(root)
    ensure_sample("fast", repo, name="my-ml-model", version="v1")
    ensure_sample("fast", repo, name="my-ml-model", version="v2")
    ensure_sample("heavy", repo, name="heavy-model", version="v1")
    return root


@pytest.fixture
def plane(ebbtide_home: Path, repository: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A control plane whose every process is gone after the test."""
    process = start_control_plane(ebbtide_home, "--repository", str(repository))
    daemon = psutil.Process(process.pid)
    yield process
    family = daemon.children(recursive=True)
    stop_process(process)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], f"processes outlived the control plane: {alive}"


def ebbtide(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def seed(tmp_path: Path, **changes: Any) -> Path:
    document = yaml.safe_load(SEED.read_text())
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / f"endpoint-{len(changes)}-{abs(hash(str(changes)))}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def status(home: Path) -> dict[str, Any]:
    with ControlPlaneClient(home) as client:
        return client.get_endpoint("default", NAME).get("status") or {}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.1)

    try:
        asyncio.run(asyncio.wait_for(poll(), timeout))
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def ready_count(home: Path) -> int:
    return int(status(home).get("readyReplicas", 0))


def infer_url(home: Path, version: str = "v1", model: str = "my-ml-model") -> str:
    return f"{status(home)['url']}/v2/models/{model}/versions/{version}/infer"


def request_body(home: Path, model: str = "my-ml-model", version: str = "v1") -> dict[str, Any]:
    url = f"{status(home)['url']}/v2/models/{model}/versions/{version}"
    metadata = httpx.get(url, timeout=10).json()
    shape = [1, *[abs(d) for d in metadata["inputs"][0]["shape"][1:]]]
    size = 1
    for dimension in shape:
        size *= dimension
    return {
        "inputs": [
            {
                "name": metadata["inputs"][0]["name"],
                "datatype": metadata["inputs"][0]["datatype"],
                "shape": shape,
                "data": [1.0] * size,
            }
        ]
    }


async def open_loop(
    url: str, body: dict[str, Any], rate: float, seconds: float, during: Callable[[], None] | None
) -> tuple[list[int | str], list[str]]:
    """Send at `rate` for `seconds`, calling `during` halfway; statuses and model versions."""
    outcomes: list[int | str] = []
    versions: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            try:
                response = await client.post(url, json=body)
                outcomes.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json().get("model_version", ""))
            except httpx.HTTPError as error:
                outcomes.append(type(error).__name__)

        tasks = []
        total = int(rate * seconds)
        for index in range(total):
            tasks.append(asyncio.create_task(one()))
            if during is not None and index == total // 2:
                await asyncio.to_thread(during)
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    return outcomes, versions


def test_the_seed_walkthrough(plane: object, ebbtide_home: Path) -> None:
    assert ebbtide("apply", "-f", str(SEED)) == (
        "inferenceendpoint.mlops.example.com/my-model-endpoint created\n"
    )
    wait_for(lambda: ready_count(ebbtide_home) == 1, 60, "the first replica")

    pods = ebbtide("get", "pods", "-l", f"app={NAME}").splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert re.fullmatch(
        rf"{NAME}-[a-z0-9]{{10}}-[a-z0-9]{{5}}\s+1/1\s+Running\s+0\s+\d+s", pods[1]
    ), pods[1]

    wait_for(lambda: bool(status(ebbtide_home).get("currentMetrics")), 30, "a CPU reading")
    top = ebbtide("top", "pods", "-l", f"app={NAME}").splitlines()
    assert top[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert re.fullmatch(rf"{NAME}-\S+\s+\d+m\s+\d+Mi", top[1]), top[1]

    hpa = ebbtide("get", "hpa", NAME).splitlines()
    assert hpa[0].split() == [
        "NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"
    ]  # fmt: skip
    row = hpa[1].split()
    assert row[:2] == [NAME, f"Deployment/{NAME}"]
    assert re.fullmatch(r"\d+%/60%", row[2]), row[2]
    assert row[3:6] == ["1", "5", "1"]

    described = ebbtide("describe", "ie", NAME)
    assert "Scaling:" in described
    assert "SuccessfulCreate" in described

    response = httpx.post(infer_url(ebbtide_home), json=request_body(ebbtide_home), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "my-ml-model"


def test_a_load_step_scales_up_within_bounds_and_back_down(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    endpoint = seed(
        tmp_path,
        spec__model__name="heavy-model",
        spec__autoscaling__maxReplicas=3,
        spec__autoscaling__behavior={"scaleDown": {"stabilizationWindowSeconds": 3}},
    )
    ebbtide("apply", "-f", str(endpoint))
    wait_for(lambda: ready_count(ebbtide_home) == 1, 60, "the first replica")
    body = request_body(ebbtide_home, "heavy-model")
    url = infer_url(ebbtide_home, model="heavy-model")
    outcomes, highest = asyncio.run(load_watching_desired(ebbtide_home, url, body, 80, 8))
    assert outcomes.count(200) == len(outcomes), set(outcomes)
    assert 2 <= highest <= 3
    wait_for(lambda: status(ebbtide_home).get("replicas") == 1, 40, "scale down to minReplicas")
    events = ebbtide("get", "events")
    assert "New size:" in events


def test_scale_down_follows_the_measured_start_of_a_forked_replica(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    # No scale-down window in the spec: the local profile's release timing applies. The first
    # replica takes seconds (it also warms the process the others are forked from); those
    # forked beside it start in hundredths of a second, so the windows sit at their 2 s floor,
    # not at 16 starts of the 0.5 s assumed before any start is measured (8 s, 16 s for a
    # burst), nor of the first replica's start (30 s and more).
    endpoint = seed(tmp_path, spec__model__name="heavy-model", spec__autoscaling__maxReplicas=2)
    ebbtide("apply", "-f", str(endpoint))
    wait_for(lambda: ready_count(ebbtide_home) == 1, 60, "the first replica")
    body = request_body(ebbtide_home, "heavy-model")
    url = infer_url(ebbtide_home, model="heavy-model")
    outcomes, highest = asyncio.run(load_watching_desired(ebbtide_home, url, body, 80, 8))
    assert outcomes.count(200) == len(outcomes), set(outcomes)
    assert highest == 2, "the load step scaled nothing"
    load_ended = time.monotonic()
    explanations: set[str] = set()

    def released() -> bool:
        current = status(ebbtide_home)
        explanations.add(str(current.get("explanation", "")))
        return current.get("replicas") == 1

    wait_for(released, 30, "scale down to minReplicas")
    took = time.monotonic() - load_ended
    assert took < 12, f"released {took:.1f} s after the load; explanations: {explanations}"
    assert not any("assumed until one is measured" in e for e in explanations), explanations
    # Only the explanations that give the window's length (burst mode's own "until a calm
    # stabilization window has passed" names none).
    held = [e for e in explanations if "the scale-down stabilization window" in e]
    assert all(_window_from_forked_starts(e) for e in held), held


async def load_watching_desired(
    home: Path, url: str, body: dict[str, Any], rate: float, seconds: float
) -> tuple[list[int | str], int]:
    """Open-loop load for `seconds`; returns its outcomes and the highest desired replica count
    the status showed meanwhile (a rescale seen while it happens, not only at the end)."""
    highest = 0

    async def watcher() -> None:
        nonlocal highest
        while True:
            current = await asyncio.to_thread(status, home)
            highest = max(highest, int(current.get("desiredReplicas", 0)))
            await asyncio.sleep(0.25)

    watching = asyncio.create_task(watcher())
    outcomes, _ = await open_loop(url, body, rate=rate, seconds=seconds, during=None)
    watching.cancel()
    return outcomes, highest


def _window_from_forked_starts(explanation: str) -> bool:
    """The window sits at its 2 s floor, or a little above it when a loaded machine slows the
    forked starts it is measured from: hundredths of a second each, never the first replica's
    seconds nor the 0.5 s assumed before a start is measured."""
    if "its 2 s floor" in explanation:
        return True
    measured = re.search(r"starts of ([0-9.]+) s, as measured", explanation)
    return measured is not None and float(measured.group(1)) < 0.25


def test_kill_9_of_a_replica_under_load_loses_no_request(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    ebbtide("apply", "-f", str(seed(tmp_path, spec__autoscaling__minReplicas=2)))
    wait_for(lambda: ready_count(ebbtide_home) == 2, 60, "two replicas")
    with ControlPlaneClient(ebbtide_home) as client:
        victim = client.list_pods("default", f"app={NAME}")[0]

    def kill() -> None:
        os.kill(victim["status"]["pid"], signal.SIGKILL)

    outcomes, _ = asyncio.run(
        open_loop(infer_url(ebbtide_home), request_body(ebbtide_home), 60, 6, kill)
    )
    assert outcomes.count(200) == len(outcomes), {o for o in outcomes if o != 200}

    def replaced() -> bool:
        with ControlPlaneClient(ebbtide_home) as client:
            pods = client.list_pods("default", f"app={NAME}")
        again = [p for p in pods if p["metadata"]["name"] == victim["metadata"]["name"]]
        return ready_count(ebbtide_home) == 2 and again[0]["status"]["restarts"] >= 1

    wait_for(replaced, 30, "the killed replica to restart")


def test_a_rolling_update_under_load_loses_no_request(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    ebbtide("apply", "-f", str(seed(tmp_path, spec__autoscaling__minReplicas=2)))
    wait_for(lambda: ready_count(ebbtide_home) == 2, 60, "two replicas of v1")
    v2 = seed(tmp_path, spec__autoscaling__minReplicas=2, spec__model__version="v2")
    body = request_body(ebbtide_home)

    def update() -> None:
        ebbtide("apply", "-f", str(v2))

    # The model path without a version follows the endpoint from v1 to v2.
    url = f"{status(ebbtide_home)['url']}/v2/models/my-ml-model/infer"
    outcomes, versions = asyncio.run(open_loop(url, body, 40, 16, update))
    assert outcomes.count(200) == len(outcomes), {o for o in outcomes if o != 200}
    assert versions[0] == "v1"
    assert "v2" in versions, f"no request reached v2 during the rollout: {set(versions)}"

    def rolled_out() -> bool:
        with ControlPlaneClient(ebbtide_home) as client:
            pods = client.list_pods("default", f"app={NAME}")
        return len(pods) == 2 and all(p["spec"]["model"].endswith(":v2") for p in pods)

    wait_for(rolled_out, 30, "only v2 replicas")
    assert status(ebbtide_home)["observedGeneration"] == 2


def test_at_zero_a_burst_is_held_and_served(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    endpoint = seed(
        tmp_path,
        spec__autoscaling__minReplicas=0,
        spec__autoscaling__scaleToZero={"idleSeconds": 2},
    )
    ebbtide("apply", "-f", str(endpoint))
    wait_for(lambda: status(ebbtide_home).get("url") is not None, 30, "the endpoint's URL")
    assert status(ebbtide_home).get("replicas", 0) == 0
    url = f"{status(ebbtide_home)['url']}/v2/models/my-ml-model/infer"
    body = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": [0.0] * 64}]
    }

    async def burst(count: int) -> list[tuple[int, float]]:
        async with httpx.AsyncClient(timeout=60) as client:

            async def one() -> tuple[int, float]:
                began = asyncio.get_running_loop().time()
                response = await client.post(url, json=body)
                return response.status_code, asyncio.get_running_loop().time() - began

            return await asyncio.gather(*(one() for _ in range(count)))

    # The first wake also starts the model's warm process; the second is a plain replica start.
    assert [code for code, _ in asyncio.run(burst(5))] == [200] * 5
    wait_for(lambda: status(ebbtide_home).get("replicas") == 0, 30, "scale back to zero")
    assert "idle" in ebbtide("describe", "ie", NAME)
    answers = asyncio.run(burst(20))
    assert [code for code, _ in answers] == [200] * 20
    first = min(latency for _, latency in answers)
    # A replica forked from the warm process answers in a few tenths of a second; a cold
    # start (a fresh interpreter importing scikit-learn) takes 1.4 s or more here. The bound
    # sits between the two with room for a shared, busy machine: the figure itself is
    # measured in bench/cold_start.py, not asserted here.
    assert first <= 1.0, f"first answer after {first:.2f} s"


def test_a_missing_model_is_reported_and_starts_once_added(
    plane: object, ebbtide_home: Path, tmp_path: Path, repository: Path
) -> None:
    ebbtide("apply", "-f", str(seed(tmp_path, spec__model__name="no-such-model")))
    wait_for(lambda: "FailedCreate" in ebbtide("describe", "ie", NAME), 30, "a FailedCreate event")
    described = ebbtide("describe", "ie", NAME)
    assert "model no-such-model:v1 not found" in described
    assert "ebbtide model add no-such-model v1 PATH" in described
    assert "ReplicaFailure" in described
    with ControlPlaneClient(ebbtide_home) as client:
        assert client.list_pods("default", f"app={NAME}") == []
        time.sleep(4)
        # Checked again with backoff (0.5, 1, 2, 4 s...), not at every half-second tick.
        failed = [e for e in client.events("default", NAME) if e["reason"] == "FailedCreate"]
        assert 2 <= failed[0]["count"] <= 6, failed
    ensure_sample("fast", ModelRepository(repository), name="no-such-model", version="v1")
    wait_for(lambda: "1/1" in ebbtide("get", "pods", "-l", f"app={NAME}"), 30, "a ready replica")
    assert "ReplicaFailure" not in ebbtide("describe", "ie", NAME)


def test_a_request_held_at_zero_gets_503_after_the_endpoints_hold_timeout(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    endpoint = seed(
        tmp_path,
        spec__model__name="never-added-model",
        spec__autoscaling__minReplicas=0,
        spec__autoscaling__scaleToZero={"holdTimeoutSeconds": 1},
    )
    ebbtide("apply", "-f", str(endpoint))
    wait_for(lambda: status(ebbtide_home).get("url") is not None, 30, "the endpoint's URL")
    response = httpx.post(
        f"{status(ebbtide_home)['url']}/v2/models/never-added-model/infer", json={}, timeout=30
    )
    assert response.status_code == 503, response.text
    assert "Retry-After" in response.headers
    assert "none became ready within 1 s" in response.json()["error"]
    assert response.elapsed.total_seconds() < 5  # the endpoint's 1 s, not the gateway's 30 s


async def load_watching_objective(
    home: Path, url: str, body: dict[str, Any], rate: float, seconds: float
) -> tuple[list[int | str], dict[str, Any] | None, str]:
    """Open-loop load for `seconds`; its outcomes, the first ObjectiveMet condition the status
    showed with a verdict (True or False), and what `describe` printed then."""
    seen: dict[str, Any] | None = None
    described = ""

    async def watcher() -> None:
        nonlocal seen, described
        while seen is None:
            current = await asyncio.to_thread(status, home)
            for condition in current.get("conditions", []):
                if condition["type"] == "ObjectiveMet" and condition["status"] != "Unknown":
                    seen = condition
                    described = await asyncio.to_thread(ebbtide, "describe", "ie", NAME)
            await asyncio.sleep(0.25)

    watching = asyncio.create_task(watcher())
    outcomes, _ = await open_loop(url, body, rate=rate, seconds=seconds, during=None)
    await asyncio.sleep(0.5)
    watching.cancel()
    return outcomes, seen, described


def test_an_endpoint_with_a_latency_objective_reports_whether_it_is_met(
    plane: object, ebbtide_home: Path, tmp_path: Path
) -> None:
    # A generous objective the fast sample meets: the local window (2 s) needs 100 answers
    # before it places a p99, so 80 requests/s for 6 s gives it several windows to judge.
    endpoint = seed(
        tmp_path, spec__autoscaling__objective={"percentile": 99, "latencyMilliseconds": 2000}
    )
    ebbtide("apply", "-f", str(endpoint))
    wait_for(lambda: ready_count(ebbtide_home) == 1, 60, "the first replica")

    def objective_condition() -> dict[str, Any] | None:
        conditions = status(ebbtide_home).get("conditions", [])
        return next((c for c in conditions if c["type"] == "ObjectiveMet"), None)

    # Idle, the window holds too few answers to judge.
    wait_for(lambda: objective_condition() is not None, 30, "an ObjectiveMet condition")
    before = objective_condition()
    assert before is not None
    assert (before["status"], before["reason"]) == ("Unknown", "ObjectiveNoData"), before
    body = request_body(ebbtide_home)
    outcomes, seen, described = asyncio.run(
        load_watching_objective(ebbtide_home, infer_url(ebbtide_home), body, 80, 6)
    )
    assert outcomes.count(200) == len(outcomes), set(outcomes)
    assert seen is not None, "no ObjectiveMet verdict while 100+ answers a window arrived"
    assert (seen["status"], seen["reason"]) == ("True", "ObjectiveMet"), seen
    assert re.fullmatch(r"p99 latency [\d.]+ ms is within the objective 2000 ms", seen["message"])
    assert "ObjectiveMet" in described
    assert "is within the objective 2000 ms" in described
    # The objective's own line, from status.objective: what it is, and where it stands now.
    assert re.search(r"Latency objective: +p99 within 2000 ms; now [\d.]+ ms", described), described
