"""The discrete-event simulation of one policy over one workload.

Events are arrivals (read in order from the workload), request completions, replicas becoming
ready, and the policy's ticks; time jumps from one to the next, so a simulated hour costs what
its events cost. Processor sharing keeps a virtual clock per replica (each of `n` requests gets
`1/n` of the core), so a completion is found in O(log n) and is rescheduled only when `n`
changes. Routing draws from a generator seeded per run: the same inputs give the same result.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.sim.platform import Platform
from ebbtide.sim.view import ReplicaView, ScalingPolicy, View
from ebbtide.sim.workload import Workload

DROPPED = -1.0
"""The latency recorded for a request the gateway refused (503)."""
TIMED_OUT = math.inf
"""The latency recorded for a request its client gave up on."""

_DONE, _READY, _TICK = 0, 1, 2


class _Replica:
    """A replica's state; slots keep the hot path fast."""

    __slots__ = (
        "active",
        "busy",
        "busy_since",
        "created",
        "draining",
        "fifo",
        "jobs",
        "name",
        "ready",
        "ready_at",
        "stopped_at",
        "updated",
        "version",
        "virtual",
    )

    def __init__(self, name: str, created: float, ready_at: float) -> None:
        self.name = name
        self.created = created
        self.ready_at = ready_at
        self.ready = False
        self.draining = False
        self.stopped_at: float | None = None
        self.active = 0
        self.busy = 0.0
        self.busy_since = 0.0
        self.version = 0
        self.virtual = 0.0
        self.updated = created
        self.jobs: list[tuple[float, int]] = []
        self.fifo: deque[int] = deque()

    def cpu_seconds(self, now: float) -> float:
        return self.busy + (now - self.busy_since if self.active else 0.0)


@dataclass(frozen=True)
class Trace:
    """What happened, for the report: per request, and the replica count over time."""

    latencies: tuple[float, ...]
    """Per request in arrival order: seconds, DROPPED or TIMED_OUT."""
    replica_changes: tuple[tuple[float, int], ...]
    """(time, replicas that cost) at every change."""
    replica_seconds: float
    actions: int
    """How many times the policy changed the count."""
    end: float


class Simulation:
    """One policy, one workload, one platform."""

    def __init__(
        self,
        workload: Workload,
        policy: ScalingPolicy,
        platform: Platform,
        initial_replicas: int,
        seed: int = 0,
    ) -> None:
        self.workload = workload
        self.policy = policy
        self.platform = platform
        self.rng = random.Random(seed)
        self.events: list[tuple[float, int, int, _Replica | None, int]] = []
        self.sequence = 0
        self.replicas: list[_Replica] = []
        self.serving: list[_Replica] = []
        self.queue: deque[int] = deque()
        self.latencies = [0.0] * len(workload.arrivals)
        self.finished = 0
        self.requests_total = 0
        self.in_flight = 0
        self.in_flight_seconds = 0.0
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.in_flight_updated = 0.0
        self.desired = 0
        self.actions = 0
        self.changes: list[tuple[float, int]] = []
        self.names = 0
        self._start(initial_replicas, 0.0, ready=True)
        self.desired = initial_replicas

    def run(self) -> Trace:
        """Simulate until every request is answered (or given up on) and return what happened."""
        arrivals = self.workload.arrivals
        count = len(arrivals)
        self._push(0.0, _TICK, None, 0)
        index = 0
        now = 0.0
        events = self.events
        while events or index < count:
            next_arrival = arrivals[index] if index < count else math.inf
            if events and events[0][0] <= next_arrival:
                now, _, kind, replica, version = heapq.heappop(events)
                if replica is None:
                    self._tick(now, index >= count)
                elif kind == _DONE:
                    self._complete(replica, version, now)
                else:
                    self._ready(replica, now)
            else:
                now = next_arrival
                self._arrive(index, now)
                index += 1
        for request in self.queue:
            self.latencies[request] = TIMED_OUT
        return self._trace(now)

    # Requests

    def _arrive(self, request: int, now: float) -> None:
        self.requests_total += 1
        self._count_in_flight(now, +1)
        replica = self._route()
        if replica is not None:
            self._assign(replica, request, now)
        elif len(self.queue) < self.platform.queue_capacity:
            self.queue.append(request)
        else:
            self.latencies[request] = DROPPED
            self._count_in_flight(now, -1)

    def _route(self) -> _Replica | None:
        cap = self.platform.concurrency
        free = [r for r in self.serving if r.active < cap]
        if len(free) <= 1:
            return free[0] if free else None
        first, second = self.rng.sample(free, 2)
        return first if first.active <= second.active else second

    def _assign(self, replica: _Replica, request: int, now: float) -> None:
        if replica.active == 0:
            replica.busy_since = now
        work = self.workload.cpu_seconds[request]
        if self.platform.discipline == "fifo":
            replica.active += 1
            replica.fifo.append(request)
            if replica.active == 1:
                replica.version += 1
                self._push(now + work, _DONE, replica, replica.version)
            return
        self._advance(replica, now)
        replica.active += 1
        heapq.heappush(replica.jobs, (replica.virtual + work, request))
        self._reschedule(replica, now)

    def _complete(self, replica: _Replica, version: int, now: float) -> None:
        if version != replica.version:
            return
        if self.platform.discipline == "fifo":
            request = replica.fifo.popleft()
            replica.active -= 1
            if replica.fifo:
                replica.version += 1
                work = self.workload.cpu_seconds[replica.fifo[0]]
                self._push(now + work, _DONE, replica, replica.version)
        else:
            self._advance(replica, now)
            finish, request = heapq.heappop(replica.jobs)
            replica.virtual = max(replica.virtual, finish)
            replica.active -= 1
            if replica.jobs:
                self._reschedule(replica, now)
        if replica.active == 0:
            replica.busy += now - replica.busy_since
        self._finish(request, now)
        if not replica.draining:
            self._pull(replica, now)
        elif replica.active == 0:
            self._stop(replica, now)

    def _finish(self, request: int, now: float) -> None:
        latency = now - self.workload.arrivals[request]
        self.latencies[request] = latency if latency <= self.platform.timeout else TIMED_OUT
        self.latency_counts[bisect_left(LATENCY_BOUNDS, latency)] += 1
        self.finished += 1
        self._count_in_flight(now, -1)

    def _pull(self, replica: _Replica, now: float) -> None:
        """Hand queued requests to a replica with room, dropping those whose client gave up."""
        cap, timeout, arrivals = (
            self.platform.concurrency,
            self.platform.timeout,
            self.workload.arrivals,
        )
        while self.queue and replica.active < cap:
            request = self.queue.popleft()
            if now - arrivals[request] > timeout:
                self.latencies[request] = TIMED_OUT
                self._count_in_flight(now, -1)
                continue
            self._assign(replica, request, now)

    def _advance(self, replica: _Replica, now: float) -> None:
        if replica.active:
            replica.virtual += (now - replica.updated) / replica.active
        replica.updated = now

    def _reschedule(self, replica: _Replica, now: float) -> None:
        replica.version += 1
        finish = replica.jobs[0][0]
        at = now + max(0.0, finish - replica.virtual) * replica.active
        self._push(at, _DONE, replica, replica.version)

    def _count_in_flight(self, now: float, change: int) -> None:
        self.in_flight_seconds += self.in_flight * (now - self.in_flight_updated)
        self.in_flight_updated = now
        self.in_flight += change

    # Replicas

    def _tick(self, now: float, arrivals_done: bool) -> None:
        desired = self.policy.decide(self._view(now), now)
        if desired != self.desired:
            self.actions += 1
            self._scale(desired, now)
        more = now < self.workload.duration or (not arrivals_done) or self.in_flight > 0
        if more and now < self.workload.duration + self.platform.timeout:
            self._push(now + self.policy.sync_period, _TICK, None, 0)

    def _view(self, now: float) -> View:
        self._count_in_flight(now, 0)
        replicas = tuple(
            ReplicaView(
                name=r.name,
                started_at=r.created,
                ready=r.ready,
                ready_since=r.ready_at,
                cpu_seconds=r.cpu_seconds(now),
                in_flight=r.active,
            )
            for r in self.replicas
            if r.stopped_at is None and not r.draining
        )
        return View(
            self.desired,
            replicas,
            self.in_flight,
            self.requests_total,
            self.in_flight_seconds,
            tuple(self.latency_counts),
        )

    def _scale(self, desired: int, now: float) -> None:
        live = [r for r in self.replicas if r.stopped_at is None and not r.draining]
        if desired > len(live):
            self._start(desired - len(live), now, ready=False)
        elif desired < len(live):
            # Replicas still starting go first (newest first), then the newest ready ones.
            order = sorted(live, key=lambda r: (r.ready, -r.created))
            for replica in order[: len(live) - desired]:
                self._drain(replica, now)
        self.desired = desired
        self._note(now)

    def _start(self, count: int, now: float, ready: bool) -> None:
        for _ in range(count):
            self.names += 1
            ready_at = now if ready else now + self.platform.start_time
            replica = _Replica(f"replica-{self.names}", now, ready_at)
            self.replicas.append(replica)
            if ready:
                replica.ready = True
                self.serving.append(replica)
            else:
                self._push(ready_at, _READY, replica, 0)
        self._note(now)

    def _ready(self, replica: _Replica, now: float) -> None:
        if replica.stopped_at is not None or replica.draining:
            return
        replica.ready = True
        self.serving.append(replica)
        self._pull(replica, now)

    def _drain(self, replica: _Replica, now: float) -> None:
        replica.draining = True
        if replica in self.serving:
            self.serving.remove(replica)
        if not replica.ready or replica.active == 0:
            self._stop(replica, now)

    def _stop(self, replica: _Replica, now: float) -> None:
        if replica.stopped_at is None:
            replica.stopped_at = now
            self._note(now)

    def _note(self, now: float) -> None:
        costing = sum(1 for r in self.replicas if r.stopped_at is None)
        if self.changes and self.changes[-1][0] == now:
            self.changes[-1] = (now, costing)
        elif not self.changes or self.changes[-1][1] != costing:
            self.changes.append((now, costing))

    def _push(self, at: float, kind: int, replica: _Replica | None, version: int) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at, self.sequence, kind, replica, version))

    def _trace(self, end: float) -> Trace:
        end = max(end, self.workload.duration)
        cost = sum(
            (r.stopped_at if r.stopped_at is not None else end) - r.created for r in self.replicas
        )
        return Trace(tuple(self.latencies), tuple(self.changes), cost, self.actions, end)
