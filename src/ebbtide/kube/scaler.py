"""The operator's scaling loop for class-ebbtide endpoints: gather, `decide`, act. Thin.

Per endpoint, every sync period of its policy (ebbtide's own `local` profile: 0.25 s, the
same loop as on one machine; class hpa is the endpoint that wants the HPA's 15 s): read the
Deployment, the endpoint's pods and their PodMetrics, and every gateway's
`/ebbtide/v1/traffic`; build the `Observation` (`kube.scaling`), run the same `decide` and
`explain` as locally, then patch `deployments/<name>/scale` when the count changes and write
the status and Events. A long poll on each gateway's `/ebbtide/v1/demand` wakes the
endpoint's loop at once when a request waits at zero, so 0 → 1 does not wait for a tick.

PodMetrics are read at most every `METRICS_SECONDS`: metrics-server itself scrapes the
kubelet every 15 s by default, so reading faster only returns the same sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from ebbtide.autoscaler import LOCAL, Policy, Profile, State, decide, explain, policy_for
from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import KubernetesError
from ebbtide.kube.install import DEFAULT_OPERATOR_NAMESPACE, GATEWAY_ADMIN_PORT, GATEWAY_APP
from ebbtide.kube.manifests import HPA_V2
from ebbtide.kube.reconcile import ObjectRef
from ebbtide.kube.scaling import (
    STATUS_QUIET_SECONDS,
    GatewayReading,
    Key,
    PodUsage,
    TrafficBook,
    act,
    event_manifest,
    learned_limit,
    observation,
    usage_by_pod,
    waiting_at_zero,
)
from ebbtide.spec.models import InferenceEndpoint

logger = logging.getLogger("ebbtide.kube")

GATEWAY_NAMESPACE = DEFAULT_OPERATOR_NAMESPACE
GATEWAY_SELECTOR = f"app.kubernetes.io/name={GATEWAY_APP}"
DEMAND_POLL_SECONDS = 30.0
METRICS_SECONDS = 5.0
HTTP_TIMEOUT_SECONDS = 2.0


class ScaleCluster(Protocol):
    """What the scaling loop reads and writes (`KubernetesCluster` speaks it)."""

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None: ...

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def pod_metrics(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def scale(self, namespace: str, name: str, replicas: int) -> None: ...

    async def create_event(self, manifest: Mapping[str, Any]) -> None: ...

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None: ...


@dataclass
class _Tracked:
    endpoint: InferenceEndpoint
    uid: str | None
    policy: Policy
    state: State = field(default_factory=State)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    usage: dict[str, PodUsage] = field(default_factory=dict)
    usage_read: float | None = None
    status_written: float | None = None
    seeded: bool = False
    """Whether the state has taken what the endpoint's status kept from an earlier operator
    (the objective's learned limit)."""


class Scaler:
    """Runs ebbtide's policy for every class-ebbtide endpoint the reconciler reports."""

    def __init__(
        self,
        cluster: ScaleCluster,
        gateway_urls: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
        profile: Profile = LOCAL,
        client: httpx.AsyncClient | None = None,
        hpa_api_version: str = HPA_V2,
    ) -> None:
        self.cluster = cluster
        self.gateway_urls = tuple(gateway_urls)
        """Fixed gateway admin URLs; empty: find the gateway pods in ebbtide-system."""
        self.clock = clock
        self.profile = profile
        self._client = client or httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS)
        self._tracked: dict[Key, _Tracked] = {}
        self._book = TrafficBook()
        self._demand: dict[str, asyncio.Task[None]] = {}
        self._sources: dict[str, str] = {}
        """Gateway (pod) name → the admin URL it answered on."""
        self.hpa_api_version = hpa_api_version

    def track(self, key: Key, endpoint: InferenceEndpoint | None, uid: str | None) -> None:
        """After each reconcile pass: run the loop for a class-ebbtide endpoint, stop it for
        one that is gone or switched to class hpa."""
        current = self._tracked.get(key)
        if endpoint is None or endpoint.spec.autoscaling.resolved_class() != "ebbtide":
            if current is not None:
                self._tracked.pop(key)
                if current.task is not None:
                    current.task.cancel()
            return
        policy = policy_for(endpoint, self.profile)
        if current is not None:
            current.endpoint, current.uid, current.policy = endpoint, uid, policy
            return
        tracked = _Tracked(endpoint, uid, policy)
        self._tracked[key] = tracked
        tracked.task = asyncio.create_task(self._loop(key, tracked))

    async def run(self) -> None:
        """Keep a demand long poll open to every gateway."""
        while True:
            with contextlib.suppress(KubernetesError, httpx.HTTPError):
                for url in await self.gateways():
                    if url not in self._demand or self._demand[url].done():
                        self._demand[url] = asyncio.create_task(self._watch_demand(url))
            await self.clock.sleep(5.0)

    async def stop(self) -> None:
        tasks = [t.task for t in self._tracked.values() if t.task] + list(self._demand.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    async def gateways(self) -> list[str]:
        """The gateways' admin base URLs."""
        if self.gateway_urls:
            return list(self.gateway_urls)
        pods = await self.cluster.list_pods(GATEWAY_NAMESPACE, GATEWAY_SELECTOR)
        found = []
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if ip and not pod["metadata"].get("deletionTimestamp"):
                found.append(f"http://{ip}:{GATEWAY_ADMIN_PORT}")
        return found

    async def _watch_demand(self, url: str) -> None:
        while True:
            try:
                response = await self._client.get(
                    f"{url}/ebbtide/v1/demand",
                    params={"timeout": DEMAND_POLL_SECONDS},
                    timeout=DEMAND_POLL_SECONDS + HTTP_TIMEOUT_SECONDS,
                )
                response.raise_for_status()
                for key in waiting_at_zero(response.json()):
                    tracked = self._tracked.get(key)
                    if tracked is not None:
                        tracked.wake.set()
                if not waiting_at_zero(response.json()):
                    continue
                # The woken loop decides; do not spin on a wait that stays until it has.
                await self.clock.sleep(self.profile.sync_period)
            except (httpx.HTTPError, ValueError) as error:
                logger.debug("demand poll of %s: %s", url, error)
                await self.clock.sleep(1.0)

    async def _loop(self, key: Key, tracked: _Tracked) -> None:
        while True:
            try:
                await self.step(key, tracked)
            except (KubernetesError, httpx.HTTPError) as error:
                logger.warning("%s/%s: scaling: %s", *key, error)
            tracked.wake.clear()
            await self._until_tick_or_wake(tracked)

    async def _until_tick_or_wake(self, tracked: _Tracked) -> None:
        """The next sync period on the injected clock, or a demand wake-up, whichever first."""
        tick = asyncio.ensure_future(self.clock.sleep(tracked.policy.sync_period))
        woken = asyncio.ensure_future(tracked.wake.wait())
        try:
            await asyncio.wait({tick, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (tick, woken):
                waiter.cancel()

    async def read_traffic(self) -> None:
        """Poll every gateway's counters into the book."""
        urls = await self.gateways()
        readings, running = [], []
        for url in urls:
            try:
                response = await self._client.get(f"{url}/ebbtide/v1/traffic")
                response.raise_for_status()
                reading = GatewayReading.from_wire(response.json())
            except (httpx.HTTPError, ValueError, KeyError) as error:
                logger.debug("traffic of %s: %s", url, error)
                # Unanswered but still listed: keep its last reading.
                running += [g for g, source in self._sources.items() if source == url]
                continue
            readings.append(reading)
            running.append(reading.gateway)
            self._sources[reading.gateway] = url
        self._book = self._book.update(readings, running)

    async def step(self, key: Key, tracked: _Tracked) -> None:
        """One decision for one endpoint: gather, decide, explain, act."""
        namespace, name = key
        deployment = await self.cluster.get(ObjectRef("apps/v1", "Deployment", namespace, name))
        body = await self.cluster.get(ObjectRef.endpoint(namespace, name))
        if deployment is None or body is None:
            return
        selector = f"app={name}"
        pods = await self.cluster.list_pods(namespace, selector)
        now = self.clock.now()
        if tracked.usage_read is None or now - tracked.usage_read >= METRICS_SECONDS:
            tracked.usage = usage_by_pod(await self.cluster.pod_metrics(namespace, selector))
            tracked.usage_read = now
        await self.read_traffic()
        now, wall = self.clock.now(), self.clock.wall()
        seen = observation(deployment, pods, tracked.usage, self._book.traffic(key), now, wall)
        if not tracked.seeded:
            # Other state holds monotonic times of a process that is gone; the limit is a load.
            tracked.seeded = True
            kept = learned_limit(body.get("status"))
            if kept is not None and tracked.state.objective_load is None:
                tracked.state = replace(tracked.state, objective_load=kept)
        decision = decide(seen, tracked.policy, tracked.state, now)
        tracked.state = decision.state
        explanation = explain(decision, tracked.policy)
        hpa = await self.cluster.get(
            ObjectRef(self.hpa_api_version, "HorizontalPodAutoscaler", namespace, name)
        )
        quiet = (
            tracked.status_written is not None
            and now - tracked.status_written < STATUS_QUIET_SECONDS
        )
        writes = act(decision, explanation, body.get("status"), hpa is not None, wall, quiet)
        if writes.replicas is not None:
            await self.cluster.scale(namespace, name, writes.replicas)
            logger.info(
                "%s/%s: scaled %d → %d: %s",
                namespace,
                name,
                decision.current,
                writes.replicas,
                explanation,
            )
        if writes.status:
            await self.cluster.patch_status(ObjectRef.endpoint(namespace, name), writes.status)
            tracked.status_written = now
        for note in writes.events:
            await self.cluster.create_event(
                event_manifest(namespace, name, tracked.uid, note, wall)
            )
