"""Replica processes: readiness, crash restarts with backoff, stop; names; cgroup limits."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ebbtide.supervisor import (
    Backoff,
    CgroupLimits,
    Phase,
    ReplicaTemplate,
    Supervisor,
    SupervisorSettings,
)
from ebbtide.supervisor.naming import SAFE_ALPHABET, replica_name, template_hash

READY_SERVER = """
import sys, http.server
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


class ScriptLauncher:
    """Starts a tiny real HTTP server that answers the readiness probe."""

    async def launch(
        self, template: ReplicaTemplate, port: int, log: Path
    ) -> asyncio.subprocess.Process:
        with log.open("ab") as output:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-c", READY_SERVER, str(port), stdout=output, stderr=output
            )


def template(**changes: object) -> ReplicaTemplate:
    fields: dict[str, object] = {
        "namespace": "default",
        "endpoint": "demo",
        "model_name": "m",
        "model_version": "v1",
        "repository": Path("/models"),
    }
    fields.update(changes)
    return ReplicaTemplate(**fields)  # type: ignore[arg-type]


async def until(condition: object, timeout: float = 20.0) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


def test_names_look_like_deployment_pods() -> None:
    name = replica_name("my-model-endpoint", template(model_version="v1").hash, random.Random(1))
    prefix, hash_part, suffix = name.rsplit("-", 2)
    assert prefix == "my-model-endpoint"
    assert len(hash_part) == 10
    assert len(suffix) == 5
    assert set(hash_part + suffix) <= set(SAFE_ALPHABET)


def test_the_template_hash_changes_exactly_with_the_template() -> None:
    assert template().hash == template(endpoint="other", repository=Path("/x")).hash
    assert template().hash != template(model_version="v2").hash
    assert template().hash != template(cpu_limit=Decimal("1")).hash
    assert template_hash({"a": 1}) == template_hash({"a": 1})


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(initial=0.5, ceiling=4.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_limits_are_written_to_a_cgroup_v1_tree(tmp_path: Path) -> None:
    for controller in ("cpu", "memory"):
        (tmp_path / controller).mkdir()
    limits = CgroupLimits(tmp_path)
    outcome = limits.apply("demo-abc", 4242, Decimal("0.5"), 2 * 2**30)
    assert outcome.enforced
    assert outcome.note == "enforced with cgroup v1"
    cpu = tmp_path / "cpu" / "ebbtide" / "demo-abc"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cgroup.procs").read_text() == "4242"
    memory = tmp_path / "memory" / "ebbtide" / "demo-abc"
    assert (memory / "memory.limit_in_bytes").read_text() == str(2 * 2**30)


def test_limits_are_written_to_a_cgroup_v2_tree(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids")
    outcome = CgroupLimits(tmp_path).apply("demo-abc", 4242, Decimal("1"), None)
    assert outcome.enforced
    assert (tmp_path / "ebbtide" / "demo-abc" / "cpu.max").read_text() == "100000 100000"


def test_without_a_cgroup_tree_the_reason_is_kept(tmp_path: Path) -> None:
    outcome = CgroupLimits(tmp_path / "nothing").apply("demo-abc", 1, Decimal("1"), None)
    assert not outcome.enforced
    assert "no cgroup hierarchy" in outcome.note


@pytest.mark.integration
def test_a_replica_becomes_ready_restarts_after_a_crash_and_stops(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = SupervisorSettings(backoff=Backoff(initial=0.2, ceiling=1.0))
        supervisor = Supervisor(
            ScriptLauncher(),
            tmp_path,
            limits=CgroupLimits(tmp_path / "no-cgroups"),
            settings=settings,
        )
        changes: list[tuple[str, bool]] = []
        supervisor.subscribe(lambda r: changes.append((r.name, r.ready)))
        try:
            replica = supervisor.start(template())
            assert replica.phase is Phase.PENDING
            await until(lambda: replica.ready)
            assert replica.phase is Phase.RUNNING
            first_pid = replica.pid
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)
            await until(lambda: replica.restarts == 1)
            await until(lambda: replica.ready and replica.pid != first_pid)
            assert replica.phase is Phase.RUNNING
            assert changes[:3] == [
                (replica.name, True),
                (replica.name, False),
                (replica.name, True),
            ]
            pid = replica.pid
            await supervisor.stop(replica.name)
            assert supervisor.replicas() == []
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # type: ignore[arg-type]
        finally:
            await supervisor.stop_all()

    asyncio.run(scenario())
