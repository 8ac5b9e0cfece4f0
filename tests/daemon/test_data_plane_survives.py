"""The data plane outlives the control plane: real processes under steady load, each fault
counted in failed requests. The control plane runs as `ebbtide up --detach` does (a keeper
that starts it again after a crash); the gateway and the replicas are processes of their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.processes import ProcessIdentity
from ebbtide.daemon import lifecycle
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import Outcome, run_open_loop
from ebbtide.loadgen.schedule import constant
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.store import SqliteStore
from tests.conftest import start_control_plane, stop_process

pytestmark = pytest.mark.integration
SEED = Path(__file__).parent.parent / "fixtures" / "inference_endpoint.yaml"
NAME = "my-model-endpoint"
RATE = 30.0


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ensure_sample("heavy", ModelRepository(root), name="heavy-model", version="v1")
    return root


class Plane:
    """A kept control plane on one state directory, and every process seen in it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.seen: set[ProcessIdentity] = set()

    def client(self) -> ControlPlaneClient:
        return ControlPlaneClient(self.home, timeout=10.0)

    def status(self) -> dict[str, Any]:
        with self.client() as client:
            return client.get_endpoint("default", NAME).get("status") or {}

    def pods(self) -> dict[str, int]:
        """Pod name → pid of the endpoint's running pods."""
        with self.client() as client:
            pods = client.list_pods("default", f"app={NAME}")
        found = {p["metadata"]["name"]: p["status"]["pid"] for p in pods}
        for pid in found.values():
            if pid:
                self._see(pid)
        return found

    def pid(self) -> int:
        return int((self.home / "control-plane.pid").read_text())

    def gateways(self) -> list[ProcessIdentity]:
        store = SqliteStore(self.home / "state.db")
        try:
            found = [ProcessIdentity.from_record(r) for r in store.processes("gateway").values()]
        finally:
            store.close()
        self.seen.update(found)
        return found

    def log(self) -> str:
        return (self.home / "logs" / "control-plane.log").read_text()

    def _see(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.seen.add(ProcessIdentity.of(pid))


@pytest.fixture
def plane(ebbtide_home: Path, repository: Path) -> Iterator[Plane]:
    lifecycle.start_detached(ebbtide_home, ["--gateway-port", "0", "--repository", str(repository)])
    plane = Plane(ebbtide_home)
    plane.seen.add(ProcessIdentity.of(plane.pid()))
    try:
        yield plane
    finally:
        plane.gateways()
        lifecycle.stop(ebbtide_home)
    left = [identity.pid for identity in plane.seen if identity.alive()]
    assert left == [], f"processes outlived `ebbtide down`: {left}"


def apply(plane: Plane, tmp_path: Path, **spec: Any) -> None:
    document = yaml.safe_load(SEED.read_text())
    document["spec"]["model"]["name"] = "heavy-model"
    document["spec"]["autoscaling"].update(spec)
    path = tmp_path / "endpoint.yaml"
    path.write_text(yaml.safe_dump(document))
    with plane.client() as client:
        client.apply([document])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check` held; fails after `timeout`."""
    began = SYSTEM_CLOCK.now()
    while not check():
        if SYSTEM_CLOCK.now() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        SYSTEM_CLOCK.blocking_sleep(0.02)
    return SYSTEM_CLOCK.now() - began


def under_load(plane: Plane, seconds: float, fault: Callable[[], None], at: float) -> list[Outcome]:
    """`RATE` requests a second for `seconds` through the gateway; `fault` runs at `at` s."""
    url = f"{plane.status()['url']}/v2/models/heavy-model/infer"
    metadata = httpx.get(url.removesuffix("/infer"), timeout=10).json()
    body = example_request(metadata, random.Random(7))

    async def run() -> list[Outcome]:
        async with httpx.AsyncClient(timeout=30) as http:

            async def send() -> int:
                return (await http.post(url, json=body)).status_code

            async def inject() -> None:
                await asyncio.sleep(at)
                await asyncio.to_thread(fault)

            injecting = asyncio.create_task(inject())
            outcomes = await run_open_loop(send, constant(RATE, seconds), SYSTEM_CLOCK)
            await injecting
            return outcomes

    return asyncio.run(run())


def seconds_in(log: str, before: str, after: str) -> list[float]:
    """Every figure written between `before` and `after` in the log, in order."""
    return [
        float(line.split(before, 1)[1].split(after, 1)[0])
        for line in log.splitlines()
        if before in line and after in line
    ]


def failures(outcomes: list[Outcome]) -> list[str]:
    return [o.error or str(o.status) for o in outcomes if not o.ok]


def test_kill_9_of_the_control_plane_under_load_fails_no_request_and_adopts_every_pod(
    plane: Plane, tmp_path: Path
) -> None:
    # maxReplicas 2: the load must not be answered by a third pod, so that the pods after the
    # restart can be compared with those before it, one for one.
    apply(plane, tmp_path, minReplicas=2, maxReplicas=2)
    wait_for(lambda: plane.status().get("readyReplicas") == 2, 90, "two ready replicas")
    before = plane.pods()
    first = plane.pid()
    [gateway] = plane.gateways()

    def crash() -> None:
        os.kill(first, signal.SIGKILL)

    outcomes = under_load(plane, 8.0, crash, at=2.0)
    assert len(outcomes) == int(RATE * 8.0)
    assert failures(outcomes) == []

    wait_for(lambda: lifecycle.is_running(plane.home) and plane.pid() != first, 30, "a restart")
    assert plane.pods() == before, f"not adopted; the log ends:\n{plane.log()[-3000:]}"
    assert plane.gateways() == [gateway], "the gateway was restarted, not adopted"
    log = plane.log()
    assert "keeper: the control plane was killed by SIGKILL" in log
    assert "2 replicas adopted" in log
    # Decisions resume at once: the restarted control plane's first decision, in seconds
    # after its start, against when it was up (adopted everything and answering).
    up = seconds_in(log, "control plane up in ", " s:")
    decided = seconds_in(log, "first decision for default/my-model-endpoint ", " s after")
    assert len(up) == len(decided) == 2, log
    assert decided[-1] - up[-1] <= 1.0, (up, decided)
    assert decided[-1] <= 3.0, (up, decided)  # the whole restart, on a shared machine
    with plane.client() as client:
        reasons = [e["reason"] for e in client.events("default", NAME)]
        assert "ControlPlaneRestarted" in reasons
        assert "Adopted" in reasons
    apply(plane, tmp_path, minReplicas=3, maxReplicas=3)  # scaling works again
    wait_for(lambda: plane.status().get("readyReplicas") == 3, 60, "a third replica")
    assert before.items() <= plane.pods().items()


def test_an_upgrade_of_the_control_plane_under_load_fails_no_request(
    plane: Plane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, minReplicas=2, maxReplicas=2)
    wait_for(lambda: plane.status().get("readyReplicas") == 2, 90, "two ready replicas")
    before = plane.pods()
    first = plane.pid()

    def upgrade() -> None:
        lifecycle.restart(plane.home)

    outcomes = under_load(plane, 6.0, upgrade, at=1.5)
    assert failures(outcomes) == []
    assert plane.pid() != first
    assert plane.pods() == before
    assert "handing over: the gateway and 2 replicas keep serving" in plane.log()


def test_kill_9_of_the_gateway_under_load_restarts_it_within_a_second(
    plane: Plane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, minReplicas=1, maxReplicas=1)
    wait_for(lambda: plane.status().get("readyReplicas") == 1, 90, "a ready replica")
    [gateway] = plane.gateways()
    restarted_after: list[float] = []

    def crash() -> None:
        os.kill(gateway.pid, signal.SIGKILL)
        restarted_after.append(
            wait_for(lambda: plane.gateways() != [gateway], 5, "a new gateway process")
        )

    outcomes = under_load(plane, 6.0, crash, at=2.0)
    assert restarted_after[0] <= 1.0, restarted_after
    lost = [o for o in outcomes if not o.ok]
    in_flight = [o for o in outcomes if o.due <= 2.0 <= o.due + o.latency]
    print(
        f"kill -9 of the gateway: {len(lost)} of {len(outcomes)} failed, "
        f"{len(in_flight)} were in flight at the kill: {failures(outcomes)}"
    )
    # The listening socket outlives the gateway (the control plane holds it), so no new
    # connection is refused: only the requests the killed process had accepted fail with it.
    # How many that is depends on how long each takes (on a busy machine, a tenth of a second
    # or more, so a few at 30 a second); none sent after the kill may fail.
    late = [o for o in lost if o.due > 2.0 + 0.1]
    assert late == [], f"requests sent after the kill failed: {late}"
    assert all(o.ok for o in outcomes if o.due > 3.0), "requests after the restart failed"


def test_a_replica_that_dies_while_no_control_plane_runs_is_replaced(
    plane: Plane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, minReplicas=2, maxReplicas=2)
    wait_for(lambda: plane.status().get("readyReplicas") == 2, 90, "two ready replicas")
    before = plane.pods()
    survivor, victim = sorted(before)
    first = plane.pid()

    def crash_both() -> None:
        os.kill(first, signal.SIGKILL)
        os.kill(before[victim], signal.SIGKILL)  # before the keeper starts the next one

    outcomes = under_load(plane, 6.0, crash_both, at=2.0)
    assert failures(outcomes) == []  # the gateway sends the dead replica's share elsewhere

    def replaced() -> bool:
        pods = plane.pods()
        return plane.status().get("readyReplicas") == 2 and victim not in pods

    wait_for(replaced, 60, "a replacement for the replica that died")
    after = plane.pods()
    assert after[survivor] == before[survivor]  # adopted, not restarted
    assert "1 replicas adopted" in plane.log()


def test_down_stops_what_a_dead_control_plane_left_running(
    ebbtide_home: Path, repository: Path, tmp_path: Path
) -> None:
    # No keeper: a control plane in the foreground, killed, and nobody starts another.
    process = start_control_plane(ebbtide_home, "--repository", str(repository))
    plane = Plane(ebbtide_home)
    try:
        apply(plane, tmp_path, minReplicas=1, maxReplicas=1)
        wait_for(lambda: plane.status().get("readyReplicas") == 1, 90, "a ready replica")
        left = [ProcessIdentity.of(pid) for pid in plane.pods().values()] + plane.gateways()
        process.kill()
        process.wait()
        assert all(identity.alive() for identity in left)  # the data plane serves on
    finally:
        stop_process(process)
        outcome = lifecycle.stop(ebbtide_home)
    assert outcome == -1  # no control plane ran; what it left was stopped
    wait_for(lambda: not any(identity.alive() for identity in left), 10, "nothing left")
    store = SqliteStore(ebbtide_home / "state.db")
    try:
        assert store.processes() == {}
    finally:
        store.close()
