"""One endpoint's control loop: observe, decide, plan, act, report.

Each sync period the reconciler gathers what it needs (`observe`: replica processes, their
CPU and memory, the gateway's counters), asks the autoscaler for a replica count (the pure
`decide`), asks the plan for the next step towards it (the pure `plan`), and acts: starts
replicas, drains and stops others, and tells the gateway which replicas are ready; then it
writes the status `report` builds. Between sync periods it also wakes on every replica change,
so a replica that becomes ready serves at once and a rollout moves as fast as replicas start.
Every wait is on the injected clock, so tests drive the loop in virtual time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import psutil

from ebbtide.autoscaler.decision import Decision, decide
from ebbtide.autoscaler.explain import explain
from ebbtide.autoscaler.observation import Traffic
from ebbtide.autoscaler.policy import Policy, policy_for
from ebbtide.autoscaler.profiles import LOCAL, Profile
from ebbtide.autoscaler.state import State
from ebbtide.controller.observe import observe
from ebbtide.controller.plan import ObservedReplica, RolloutSettings, plan
from ebbtide.controller.report import endpoint_status, pod_object
from ebbtide.core.clock import Clock
from ebbtide.core.errors import EbbtideError
from ebbtide.metrics import UsageWindow
from ebbtide.runtime.repository import ModelRepository
from ebbtide.spec import InferenceEndpoint
from ebbtide.store import ObjectKey, Store, rfc3339
from ebbtide.supervisor import Backoff, Replica, ReplicaTemplate

DRAIN_POLL = 0.01


class ReplicaSupervisor(Protocol):
    """What an endpoint's loop needs of the replica processes (`Supervisor` is the real one)."""

    def replicas(
        self, namespace: str | None = None, endpoint: str | None = None
    ) -> list[Replica]: ...

    def start(self, template: ReplicaTemplate) -> Replica: ...

    async def stop(self, name: str) -> None: ...


class GatewayPort(Protocol):
    """What the controller needs of the data plane (the daemon adapts the real gateway)."""

    def publish(
        self, key: ObjectKey, endpoint: InferenceEndpoint, upstreams: list[tuple[str, str]]
    ) -> None:
        """Route the endpoint to exactly these (replica name, address) pairs from now on."""
        ...

    def withdraw(self, key: ObjectKey) -> None:
        """Stop routing the endpoint."""
        ...

    def in_flight(self, key: ObjectKey, upstream: str) -> int:
        """Requests sent to one replica and not yet answered."""
        ...

    def traffic(self, key: ObjectKey) -> Traffic | None:
        """The endpoint's counters now."""
        ...

    def url(self, key: ObjectKey) -> str:
        """Where the endpoint's clients send requests."""
        ...


@dataclass
class ReconcilerSettings:
    """What every endpoint's loop shares."""

    repository: Path
    profile: Profile = LOCAL
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    drain_timeout: float = 30.0
    retry: Backoff = field(default_factory=lambda: Backoff(initial=0.5, ceiling=10.0))
    """Delays between attempts while a reconcile fails or the model is missing, doubling up to
    10 s: an endpoint waiting for `ebbtide model add` starts within seconds of it, and one
    that stays broken costs a check every 10 s, not two a second."""
    record_lateness: Callable[[float], None] | None = None
    """Told, at each decision, how many seconds after its due time it ran: the measure of a
    control loop that keeps time while the data plane is busy."""
    record_decision: Callable[[ObjectKey, Decision, str], None] | None = None
    """Told every decision with its one-line explanation (the dashboard's history)."""
    count_decision: Callable[[ObjectKey], None] | None = None
    """Told of each decision, by endpoint: how soon a restarted control plane decides again."""


class Reconciler:
    """Keeps one endpoint's replicas where its spec and its load say they should be."""

    def __init__(
        self,
        key: ObjectKey,
        store: Store,
        supervisor: ReplicaSupervisor,
        gateway: GatewayPort,
        clock: Clock,
        settings: ReconcilerSettings,
    ) -> None:
        self.key = key
        self.store = store
        self.supervisor = supervisor
        self.gateway = gateway
        self.clock = clock
        self.settings = settings
        self.state = self._restored_state()
        self.scale: int | None = None
        """The count the endpoint is scaled to (a Deployment's spec.replicas)."""
        self.decision: Decision | None = None
        self.explanation: str | None = None
        self.draining: set[str] = set()
        self.usage: dict[str, UsageWindow] = {}
        self.conditions: dict[str, dict[str, Any]] = {}
        self.last_scale_time: str | None = None
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_decision = 0.0
        self._stopped = False
        self._model_failures = 0
        self._model_retry_at = 0.0

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while not self._stopped:
            try:
                await self.reconcile()
                failures = 0
                timeout = max(0.0, self._next_decision - self.clock.now())
            except EbbtideError as error:
                self.store.record_event(self.key, "Warning", "ReconcileFailed", str(error))
                failures += 1
                timeout = self.settings.retry.delay(failures)
            await self._until_woken(timeout)
            self.wake.clear()

    async def _until_woken(self, timeout: float) -> None:
        """Until `wake` is set or `timeout` seconds of the injected clock have passed (a
        test drives the loop in virtual time)."""
        woken = asyncio.ensure_future(self.wake.wait())
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()

    async def reconcile(self) -> None:
        record = self.store.get(self.key)
        endpoint = InferenceEndpoint.model_validate(record.manifest)
        policy = policy_for(endpoint, self.settings.profile)
        template = ReplicaTemplate.of(endpoint, self.settings.repository)
        now = self.clock.now()
        if self.scale is None:
            self.scale = _starting_scale(record.status, policy)
        if now >= self._next_decision:
            if self._next_decision and self.settings.record_lateness:
                self.settings.record_lateness(now - self._next_decision)
            self._decide(policy, now)
            self._next_decision = now + policy.sync_period
            if self.settings.count_decision:
                self.settings.count_decision(self.key)
        self._act(template)
        self.publish(endpoint)
        self._report(record.generation, endpoint)

    def _decide(self, policy: Policy, now: float) -> None:
        assert self.scale is not None
        observation = observe(
            self.supervisor.replicas(*self._address),
            self.scale,
            self.gateway.traffic(self.key),
            self.usage,
            self.draining,
            self.settings.profile.metric_window,
            now,
        )
        decision = decide(observation, policy, self.state, now)
        self.state, self.decision = decision.state, decision
        self.store.save_loop_state(
            self.key, {"boot": psutil.boot_time(), "autoscaler": self.state.to_record()}
        )
        self.explanation = explain(decision, policy)
        if self.settings.record_decision:
            self.settings.record_decision(self.key, decision, self.explanation)
        if decision.rescale:
            self.scale = decision.desired
            self.last_scale_time = rfc3339(self.clock.wall())
            assert decision.event is not None
            self.store.record_event(self.key, "Normal", "SuccessfulRescale", decision.event)
        for condition in decision.conditions:
            self._set_condition(
                condition.type, condition.status, condition.reason, condition.message
            )

    def _restored_state(self) -> State:
        """The autoscaler's history as the previous control plane left it (its times are
        the monotonic clock's, which holds across processes until the machine restarts)."""
        saved = self.store.loop_state(self.key)
        if not saved or saved.get("boot") != psutil.boot_time():
            return State()
        try:
            return State.from_record(saved["autoscaler"])
        except (KeyError, ValueError):
            return State()

    def _act(self, template: ReplicaTemplate) -> None:
        assert self.scale is not None
        observed = [
            ObservedReplica(
                name=r.name,
                template_hash=r.template.hash,
                ready=r.ready,
                started_at=r.started_at,
                terminating=r.terminating or r.name in self.draining,
            )
            for r in self.supervisor.replicas(*self._address)
        ]
        step = plan(self.scale, template.hash, observed, self.settings.rollout)
        if step.start and not self._model_available(template):
            step = replace(step, start=0)
        for _ in range(step.start):
            replica = self.supervisor.start(template)
            self.store.record_event(
                self.key, "Normal", "SuccessfulCreate", f"Created pod: {replica.name}"
            )
        for name in step.stop:
            self.draining.add(name)
            self._spawn(self._drain_and_stop(name))

    def _model_available(self, template: ReplicaTemplate) -> bool:
        """Whether the model can be found; if not, say so where `describe` shows it, rather
        than start replicas that can only crash. Checked again with backoff while missing."""
        now = self.clock.now()
        if now < self._model_retry_at:
            return False
        repository = ModelRepository(template.repository)
        try:
            repository.resolve(template.model_name, template.model_version)
        except EbbtideError as error:
            self.store.record_event(self.key, "Warning", "FailedCreate", str(error))
            self._set_condition("ReplicaFailure", "True", "ModelNotFound", str(error))
            self._model_failures += 1
            self._model_retry_at = now + self.settings.retry.delay(self._model_failures)
            return False
        self._model_failures = 0
        self._model_retry_at = 0.0
        self.conditions.pop("ReplicaFailure", None)
        return True

    async def _drain_and_stop(self, name: str) -> None:
        """Out of rotation first, then wait for its in-flight requests, then stop it."""
        record = self.store.get(self.key)
        self.publish(InferenceEndpoint.model_validate(record.manifest))
        deadline = self.clock.now() + self.settings.drain_timeout
        while self.gateway.in_flight(self.key, name) > 0 and self.clock.now() < deadline:
            await self.clock.sleep(DRAIN_POLL)
        await self.supervisor.stop(name)
        self.draining.discard(name)
        self.usage.pop(name, None)
        self.store.record_event(self.key, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
        self.wake.set()

    def publish(self, endpoint: InferenceEndpoint) -> None:
        """Tell the gateway which replicas serve: ready ones, not draining."""
        upstreams = [
            (r.name, r.address)
            for r in self.supervisor.replicas(*self._address)
            if r.ready and not r.terminating and r.name not in self.draining
        ]
        self.gateway.publish(self.key, endpoint, upstreams)

    def _report(self, generation: int, endpoint: InferenceEndpoint) -> None:
        replicas = [r for r in self.supervisor.replicas(*self._address) if not r.terminating]
        status = endpoint_status(
            replicas,
            desired=self.scale,
            decision=self.decision,
            conditions=list(self.conditions.values()),
            generation=generation,
            url=self.gateway.url(self.key),
            explanation=self.explanation,
            last_scale_time=self.last_scale_time,
        )
        current = self.store.get(self.key).status
        if current != status:
            self.store.update_status(self.key, status)

    def _set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        previous = self.conditions.get(type_)
        changed = previous is None or previous["status"] != status
        self.conditions[type_] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(self.clock.wall())
            if changed
            else previous["lastTransitionTime"],  # type: ignore[index]
        }

    # -- commands from outside ----------------------------------------------------------

    def set_scale(self, replicas: int) -> None:
        """A manual scale: takes effect now; the next decision may move it again."""
        self.scale = replicas
        self.store.record_event(
            self.key, "Normal", "ScalingReplicaSet", f"Scaled to {replicas} by request"
        )
        self.wake.set()

    def demand(self) -> None:
        """A request is waiting at zero replicas: start one at once."""
        if self.scale == 0:
            self.scale = 1
            self.last_scale_time = rfc3339(self.clock.wall())
            self.store.record_event(
                self.key, "Normal", "SuccessfulRescale", "New size: 1; reason: request at zero"
            )
            self.wake.set()

    async def shutdown(self) -> None:
        """Drain and stop every replica and stop routing: the endpoint was deleted."""
        self._stopped = True
        self.wake.set()
        self.gateway.withdraw(self.key)
        for task in list(self._tasks):
            task.cancel()
        names = [r.name for r in self.supervisor.replicas(*self._address)]
        await asyncio.gather(*(self.supervisor.stop(name) for name in names))

    def pods(self) -> list[dict[str, Any]]:
        """The replicas as Pod-shaped objects for `get pods` and `top pods`."""
        return [
            pod_object(r, self.usage.get(r.name), r.name in self.draining)
            for r in self.supervisor.replicas(*self._address)
        ]

    @property
    def _address(self) -> tuple[str, str]:
        return self.key.namespace, self.key.name

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _starting_scale(status: dict[str, Any], policy: Policy) -> int:
    """Where a new loop starts: the last desired count if one was recorded, within bounds."""
    recorded = status.get("desiredReplicas")
    start = recorded if isinstance(recorded, int) else policy.min_replicas
    return max(policy.min_replicas, min(policy.max_replicas, start))
