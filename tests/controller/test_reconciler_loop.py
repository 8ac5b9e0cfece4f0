"""An endpoint's loop in virtual time: every wait goes through the injected clock, so a test
moves time and asserts exact moments. The supervisor and the gateway are in-memory twins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from ebbtide.autoscaler.observation import Traffic
from ebbtide.controller.reconciler import DRAIN_POLL, Reconciler, ReconcilerSettings
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.spec import KIND, InferenceEndpoint
from ebbtide.store import ObjectKey, Write
from ebbtide.supervisor import Phase, Replica, ReplicaTemplate
from ebbtide.testing import FakeClock, memory_store

SEED = Path(__file__).parent.parent / "fixtures" / "inference_endpoint.yaml"
KEY = ObjectKey(KIND, "default", "my-model-endpoint")


class MemorySupervisor:
    """Replicas as records only: started at once, ready when the test says so."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.running: dict[str, Replica] = {}
        self.stopped: list[tuple[str, float]] = []

    def replicas(self, namespace: str | None = None, endpoint: str | None = None) -> list[Replica]:
        return sorted(self.running.values(), key=lambda r: (r.started_at, r.name))

    def start(self, template: ReplicaTemplate) -> Replica:
        name = f"{template.endpoint}-{template.hash}-{len(self.running) + len(self.stopped)}"
        replica = Replica(name, template, 9000, self.clock.wall(), self.clock.now())
        self.running[name] = replica
        return replica

    async def stop(self, name: str) -> None:
        self.running.pop(name, None)
        self.stopped.append((name, self.clock.now()))

    def make_ready(self) -> None:
        for replica in self.running.values():
            replica.ready, replica.phase, replica.ready_since = True, Phase.RUNNING, 0.0


class MemoryGateway:
    """`GatewayPort` keeping what it was told."""

    def __init__(self) -> None:
        self.published: list[tuple[float, list[str]]] = []
        self.busy: dict[str, int] = {}
        self.clock: FakeClock | None = None

    def publish(
        self, key: ObjectKey, endpoint: InferenceEndpoint, upstreams: list[tuple[str, str]]
    ) -> None:
        assert self.clock is not None
        names = [name for name, _ in upstreams]
        if not self.published or self.published[-1][1] != names:
            self.published.append((self.clock.now(), names))

    def withdraw(self, key: ObjectKey) -> None:
        self.published.append((-1.0, []))

    def in_flight(self, key: ObjectKey, upstream: str) -> int:
        return self.busy.get(upstream, 0)

    def traffic(self, key: ObjectKey) -> Traffic | None:
        return Traffic(in_flight=0.0, requests_total=0, in_flight_seconds=0.0)

    def url(self, key: ObjectKey) -> str:
        return "http://127.0.0.1:8080/endpoints/my-model-endpoint"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ensure_sample("fast", ModelRepository(root), name="my-ml-model", version="v1")
    return root


def manifest(**autoscaling: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    document["spec"]["autoscaling"].update(autoscaling)
    return document


async def settle() -> None:
    """Let every task run until it waits on the clock or an event."""
    for _ in range(50):
        await asyncio.sleep(0)


def scenario(
    repository: Path, **autoscaling: Any
) -> tuple[FakeClock, MemorySupervisor, MemoryGateway, Reconciler, list[float]]:
    clock = FakeClock()
    store = memory_store(clock)
    store.apply([Write(KEY, manifest(**autoscaling))])
    supervisor, gateway = MemorySupervisor(clock), MemoryGateway()
    gateway.clock = clock
    decisions: list[float] = []
    settings = ReconcilerSettings(
        repository=repository, count_decision=lambda key: decisions.append(clock.now())
    )
    reconciler = Reconciler(KEY, store, supervisor, gateway, clock, settings)
    return clock, supervisor, gateway, reconciler, decisions


def test_decisions_come_every_sync_period_of_virtual_time_and_wakes_do_not_add_any(
    repository: Path,
) -> None:
    async def run() -> None:
        clock, supervisor, gateway, reconciler, decisions = scenario(repository, minReplicas=2)
        loop = asyncio.create_task(reconciler.run())
        await settle()
        assert decisions == [0.0]
        assert len(supervisor.running) == 2  # started at once, nothing ready yet
        assert gateway.published == [(0.0, [])]
        clock.advance(0.2)
        await settle()
        assert decisions == [0.0]  # the local sync period is 0.25 s
        supervisor.make_ready()
        reconciler.wake.set()  # a replica became ready: publish now, decide on time
        await settle()
        assert gateway.published[-1] == (0.2, sorted(supervisor.running))
        assert decisions == [0.0]
        clock.advance(0.05)
        await settle()
        assert decisions == [0.0, 0.25]
        for _ in range(4):
            clock.advance(0.25)
            await settle()
        assert decisions == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
        loop.cancel()

    asyncio.run(run())


def test_a_scale_down_drains_in_virtual_time_before_it_stops(repository: Path) -> None:
    async def run() -> None:
        clock, supervisor, gateway, reconciler, _ = scenario(
            repository, minReplicas=1, maxReplicas=3
        )
        reconciler.scale = 2
        loop = asyncio.create_task(reconciler.run())
        await settle()
        supervisor.make_ready()
        reconciler.wake.set()
        await settle()
        older, newer = sorted(supervisor.running)
        gateway.busy = {older: 1, newer: 1}
        reconciler.set_scale(1)
        await settle()
        leaving = next(name for name in (older, newer) if name in reconciler.draining)
        staying = older if leaving == newer else newer
        assert gateway.published[-1][1] == [staying]  # out of rotation first
        clock.advance(1.0)
        await settle()
        assert supervisor.stopped == []  # still answering one request
        gateway.busy[leaving] = 0
        clock.advance(DRAIN_POLL)
        await settle()
        assert supervisor.stopped == [(leaving, 1.0 + DRAIN_POLL)]
        loop.cancel()

    asyncio.run(run())


def test_a_request_at_zero_starts_a_replica_without_waiting_for_a_decision(
    repository: Path,
) -> None:
    async def run() -> None:
        clock, supervisor, _, reconciler, decisions = scenario(
            repository, minReplicas=0, scaleToZero={"idleSeconds": 30}
        )
        loop = asyncio.create_task(reconciler.run())
        await settle()
        assert supervisor.running == {}
        clock.advance(0.1)
        reconciler.demand()
        await settle()
        assert len(supervisor.running) == 1
        assert decisions == [0.0]  # woken by the demand, not by a decision
        loop.cancel()

    asyncio.run(run())


def test_a_loop_of_a_restarted_control_plane_keeps_the_autoscalers_history(
    repository: Path,
) -> None:
    async def run() -> None:
        clock, supervisor, gateway, first, _ = scenario(repository, minReplicas=2)
        loop = asyncio.create_task(first.run())
        await settle()
        for _ in range(3):
            clock.advance(0.25)
            await settle()
        loop.cancel()
        remembered = first.state
        assert remembered.recommendations
        assert remembered.samples  # readings of the last decisions
        successor = Reconciler(KEY, first.store, supervisor, gateway, clock, first.settings)
        assert successor.state.recommendations == remembered.recommendations
        assert successor.state.initialized
        assert successor.state.samples == ()  # counter readings start afresh

    asyncio.run(run())
