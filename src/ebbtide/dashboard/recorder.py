"""The dashboard's memory inside the control plane: a ring of samples per endpoint, fed once
per interval, and the decision trail, fed by the controller at each decision.

It reads only what the control plane already has: endpoints and their status from the store,
replicas from the controller (as `get pods` sees them), the gateway's traffic counters, and the
decisions the controller reports. A page reload reads the same ring again, so the charts keep
their history; a restarted control plane starts an empty one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ebbtide.autoscaler.decision import Decision
from ebbtide.core.clock import Clock
from ebbtide.dashboard.history import (
    EndpointHistory,
    MetricReading,
    Point,
    ReplicaCounts,
    Rescale,
    traffic_between,
    unexplained_rescale,
)
from ebbtide.gateway.traffic import TrafficSnapshot
from ebbtide.spec import KIND
from ebbtide.store import ObjectKey, Selector, Store

LOG = logging.getLogger(__name__)


class Workloads(Protocol):
    """The replicas, as the controller shows them to `get pods`."""

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]: ...


class NoReplicas:
    """Workloads before the controller is attached: none."""

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        return []


TrafficSource = Callable[[ObjectKey], TrafficSnapshot | None]
"""The gateway's counters of one endpoint now; None when the gateway has no route for it."""


@dataclass(frozen=True)
class RecorderSettings:
    """How often the dashboard samples and how much it keeps."""

    interval: float = 1.0
    """Seconds between samples: the charts' resolution and the page's refresh."""
    window: float = 600.0
    """Seconds of history the charts can show (ten minutes)."""
    latency_objective: float = 0.1
    """The p99 latency objective drawn on the latency chart, in seconds, unless an endpoint
    sets its own with the annotation `mlops.example.com/latency-objective-ms`."""

    @property
    def capacity(self) -> int:
        return max(1, round(self.window / self.interval))


@dataclass(frozen=True)
class LatestDecision:
    metrics: tuple[MetricReading, ...]
    explanation: str


class Recorder:
    """Samples every endpoint each interval and remembers its rescales."""

    def __init__(
        self,
        store: Store,
        traffic: TrafficSource,
        clock: Clock,
        settings: RecorderSettings | None = None,
        workloads: Workloads | None = None,
    ) -> None:
        """`workloads` may be attached later: the controller that feeds `record_decision` is
        built with this recorder's hook, and only then can be its source of replicas."""
        self.store = store
        self.workloads: Workloads = workloads or NoReplicas()
        self.traffic = traffic
        self.clock = clock
        self.settings = settings or RecorderSettings()
        self.histories: dict[ObjectKey, EndpointHistory] = {}
        self.decisions: dict[ObjectKey, LatestDecision] = {}
        self.sequence = 0
        self._rescales = 0

    # -- fed by the controller ----------------------------------------------------------

    def record_decision(self, key: ObjectKey, decision: Decision, explanation: str) -> None:
        """One decision of one endpoint (the reconciler's `record_decision` hook)."""
        metrics = tuple(MetricReading.of(p) for p in decision.proposals)
        self.decisions[key] = LatestDecision(metrics, explanation)
        if decision.rescale:
            reason = decision.rescale_reason
            self._rescale(key, decision.current, decision.desired, reason, explanation)

    def _rescale(self, key: ObjectKey, old: int, new: int, reason: str, explanation: str) -> None:
        self._rescales += 1
        rescale = Rescale(self._rescales, self._wall(), old, new, reason, explanation)
        self._history(key).add_rescale(rescale)

    # -- the sampling loop --------------------------------------------------------------

    async def run(self) -> None:
        """Sample every interval until cancelled; late ticks are skipped, not bunched."""
        due = self.clock.now()
        while True:
            try:
                self.sample()
            except Exception:  # a bad sample must not end the history of every endpoint
                LOG.exception("the dashboard could not take a sample")
            due += self.settings.interval
            now = self.clock.now()
            if due < now:
                due = now
            await self.clock.sleep(due - now)

    def sample(self) -> None:
        """One point for every endpoint that exists; histories of deleted ones are dropped."""
        self.sequence += 1
        now = self._wall()
        records = {record.key: record for record in self.store.list_objects(KIND)}
        for key in list(self.histories):
            if key not in records:
                del self.histories[key]
                self.decisions.pop(key, None)
        for key, record in records.items():
            history = self._history(key)
            status = record.status or {}
            desired = status.get("desiredReplicas")
            if not isinstance(desired, int):
                desired = 0
            reason = unexplained_rescale(history.desired, desired)
            if reason is not None:
                assert history.desired is not None
                self._rescale(key, history.desired, desired, reason, reason)
            history.desired = desired
            pods = self.workloads.pods(key.namespace, Selector.parse(f"app={key.name}"))
            snapshot = self.traffic(key)
            offered, served, failed, p50, p99 = traffic_between(history.last_snapshot, snapshot)
            history.last_snapshot = snapshot
            latest = self.decisions.get(key)
            point = Point(
                time=now,
                offered=offered,
                served=served,
                failed=failed,
                p50=p50,
                p99=p99,
                queued=snapshot.queued if snapshot else 0,
                replicas=ReplicaCounts.of(desired, pods),
                metrics=latest.metrics if latest else (),
            )
            history.add_point(self.sequence, point)

    def _history(self, key: ObjectKey) -> EndpointHistory:
        history = self.histories.get(key)
        if history is None:
            history = EndpointHistory(self.settings.capacity)
            self.histories[key] = history
        return history

    def _wall(self) -> float:
        return self.clock.wall().timestamp()
