"""Replicas forked from a warm per-model process: ready, same answers, watched, fallback, cleanup.

Real processes throughout: a warm `python -m ebbtide.runtime.zygote` holding the digits sample
(scikit-learn, fork-safe), replicas forked from it, and fresh replicas to compare with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sklearn.datasets import load_digits

from ebbtide.runtime.repository import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.supervisor import (
    CgroupLimits,
    ForkedReplica,
    Replica,
    ReplicaTemplate,
    SubprocessLauncher,
    Supervisor,
    WarmForkLauncher,
    WarmSettings,
    free_port,
)
from ebbtide.supervisor.warm import UNKNOWN_EXIT_CODE
from ebbtide.testing import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast digits sample, as scikit-learn (fork-safe) and as ONNX (not fork-safe)."""
    repository = ModelRepository(tmp_path_factory.mktemp("models"))
    ensure_sample("fast", repository)
    ensure_sample("fast-onnx", repository)
    return repository.root


def template(models: Path, name: str = "sample-fast") -> ReplicaTemplate:
    return ReplicaTemplate("default", "digits", name, "v1", models)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever adopted it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200
    except httpx.TransportError:
        return False


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async def check() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(check(), timeout)


@asynccontextmanager
async def supervising(launcher: Any, logs: Path) -> Any:
    supervisor = Supervisor(launcher, logs, limits=CgroupLimits(logs / "no-cgroups"))
    try:
        yield supervisor
    finally:
        await supervisor.stop_all()


async def infer(replica: Replica, rows: Any) -> Any:
    body = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
             "data": rows.ravel().tolist()}
        ]
    }  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"http://{replica.address}/v2/models/{replica.template.model_name}/infer"
        response = await client.post(url, json=body)
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


def test_a_forked_replica_is_ready_and_answers_as_a_fresh_one(models: Path, tmp_path: Path) -> None:
    rows = load_digits().data[:8]

    logs = tmp_path

    async def scenario() -> None:
        (logs / "warm").mkdir()
        (logs / "fresh").mkdir()
        warm = WarmForkLauncher()
        async with (
            supervising(warm, logs / "warm") as forking,
            supervising(SubprocessLauncher(), logs / "fresh") as fresh,
        ):
            forked, started = forking.start(template(models)), fresh.start(template(models))
            await until(lambda: forked.ready and started.ready)
            assert isinstance(forked.process, ForkedReplica)
            assert forked.pid is not None
            [warm_pid] = warm.warm_pids()
            assert psutil.Process(forked.pid).ppid() == warm_pid
            assert os.getsid(forked.pid) == forked.pid  # a session of its own
            assert psutil.Process(started.pid).ppid() == os.getpid()
            assert await infer(forked, rows) == await infer(started, rows)
            log = (logs / "warm" / f"{forked.name}.log").read_text()
            assert f"forked from warm process {warm_pid}" in log
            pids = [forked.pid, started.pid, warm_pid]
        assert not any(running(pid) for pid in pids)

    asyncio.run(scenario())


def test_a_killed_forked_replica_is_seen_and_forked_again(models: Path, tmp_path: Path) -> None:
    logs = tmp_path

    async def scenario() -> None:
        warm = WarmForkLauncher()
        async with supervising(warm, logs) as supervisor:
            replica = supervisor.start(template(models))
            await until(lambda: replica.ready)
            first = replica.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await until(lambda: replica.restarts == 1)
            assert replica.last_exit_code == -signal.SIGKILL
            await until(lambda: replica.ready and replica.pid != first)
            assert replica.pid is not None
            assert psutil.Process(replica.pid).ppid() in warm.warm_pids()
            assert not running(first)

    asyncio.run(scenario())


def test_an_onnx_model_starts_fresh_and_the_log_says_why(models: Path, tmp_path: Path) -> None:
    logs = tmp_path

    async def scenario() -> None:
        warm = WarmForkLauncher()
        async with supervising(warm, logs) as supervisor:
            first = supervisor.start(template(models, "sample-fast-onnx"))
            second = supervisor.start(template(models, "sample-fast-onnx"))
            await until(lambda: first.ready and second.ready)
            for replica in (first, second):
                assert not isinstance(replica.process, ForkedReplica)
                assert psutil.Process(replica.pid).ppid() == os.getpid()
                log = (logs / f"{replica.name}.log").read_text()
                assert "warm start not used: onnx models are not fork-safe" in log
                assert "starting a fresh process" in log
            assert warm.warm_pids() == []
            [warm_log] = logs.glob("warm-sample-fast-onnx-*.log")
            assert warm_log.read_text().count("not forking replicas") == 1  # asked once only

    asyncio.run(scenario())


def test_close_stops_the_warm_process_and_replicas_still_running(
    models: Path, tmp_path: Path
) -> None:
    logs = tmp_path

    async def scenario() -> None:
        warm = WarmForkLauncher()
        assert await warm.prepare(template(models), logs) is None
        [warm_pid] = warm.warm_pids()
        ports = [free_port(), free_port()]
        replicas = [
            await warm.launch(template(models), port, logs / f"{port}.log") for port in ports
        ]
        assert all(isinstance(r, ForkedReplica) for r in replicas)
        await until(lambda: all(ready(port) for port in ports))
        await warm.close()
        # SIGTERM from the warm process: each drains and exits 0, and the code comes back.
        assert [await r.wait() for r in replicas] == [0, 0]
        assert not any(running(pid) for pid in [warm_pid, *(r.pid for r in replicas)])

    asyncio.run(scenario())


def test_a_dead_warm_process_is_replaced_and_its_orphans_are_stopped(
    models: Path, tmp_path: Path
) -> None:
    logs = tmp_path

    async def scenario() -> None:
        warm = WarmForkLauncher()
        orphan = await warm.launch(template(models), free_port(), logs / "orphan.log")
        [first_warm] = warm.warm_pids()
        os.kill(first_warm, signal.SIGKILL)
        await until(lambda: not running(first_warm))
        port = free_port()
        replica = await warm.launch(template(models), port, logs / "next.log")
        assert isinstance(replica, ForkedReplica)
        await until(lambda: ready(port))
        [second_warm] = warm.warm_pids()
        assert second_warm != first_warm
        assert psutil.Process(replica.pid).ppid() == second_warm
        assert running(orphan.pid)
        await warm.close()
        assert await orphan.wait() == UNKNOWN_EXIT_CODE  # nobody left to tell its exit code
        assert await replica.wait() == 0
        assert not any(running(pid) for pid in (orphan.pid, replica.pid, second_warm))

    asyncio.run(scenario())


CONTROL_PLANE = """
import asyncio, sys
from pathlib import Path
from ebbtide.supervisor import ReplicaTemplate, WarmForkLauncher, free_port

async def main():
    launcher = WarmForkLauncher()
    logs = Path(sys.argv[2])
    template = ReplicaTemplate("default", "digits", "sample-fast", "v1", Path(sys.argv[1]))
    replica = await launcher.launch(template, free_port(), logs / "replica.log")
    print(launcher.warm_pids()[0], replica.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_replicas_outlive_a_control_plane_killed_with_sigkill(models: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-c", CONTROL_PLANE, str(models), str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as control_plane:
        try:
            assert control_plane.stdout is not None
            warm_pid, replica_pid = map(int, control_plane.stdout.readline().split())
            assert running(warm_pid)
            assert running(replica_pid)
        finally:
            control_plane.kill()
    try:
        # End of file on its socket tells the warm process to exit; the replica, in a session
        # of its own, serves on for the next control plane to adopt.
        asyncio.run(until(lambda: not running(warm_pid)))
        assert running(replica_pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica_pid, signal.SIGKILL)
    asyncio.run(until(lambda: not running(replica_pid)))


def test_a_model_that_fails_in_the_warm_process_starts_fresh_until_retry(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    repository = ModelRepository(tmp_path / "models")
    repository.add("garbage", "v1", garbage)
    broken = template(repository.root, "garbage")
    clock = FakeClock()

    async def scenario() -> None:
        warm = WarmForkLauncher(settings=WarmSettings(retry_after=30.0), clock=clock)
        try:
            first = await warm.launch(broken, free_port(), tmp_path / "first.log")
            assert await first.wait() == 3  # the fresh process fails to load it too, and says so
            log = (tmp_path / "first.log").read_text()
            assert "warm start not used: the warm process could not load the model: " in log
            assert "cannot load garbage:v1 (sklearn)" in log
            [warm_log] = tmp_path.glob("warm-garbage-v1-*.log")
            await (await warm.launch(broken, free_port(), tmp_path / "second.log")).wait()
            assert warm_log.read_text().count("not forking replicas") == 1  # not tried again
            clock.advance(30.0)
            await (await warm.launch(broken, free_port(), tmp_path / "third.log")).wait()
            assert warm_log.read_text().count("not forking replicas") == 2
        finally:
            await warm.close()

    asyncio.run(scenario())
