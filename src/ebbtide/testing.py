"""Fakes that tests and users share: a clock you move by hand, and in-memory twins.

These are real implementations of ebbtide's small protocols, not mocks: the same
contract tests run against them and against the real ones.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebbtide.kube.reconcile import ObjectRef

from ebbtide.core.clock import Clock
from ebbtide.store import SqliteStore


class FakeClock:
    """A clock that moves only when told to. `sleep` parks until `advance` passes its time."""

    def __init__(self, start: float = 0.0, wall_start: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = 0

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counter += 1
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), self._counter, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


def memory_store(clock: Clock | None = None) -> SqliteStore:
    """The store's in-memory twin: the same code on a private `:memory:` database."""
    return SqliteStore(":memory:", clock or FakeClock())


class InMemoryCluster:
    """`ebbtide.kube.cluster.Cluster` in memory: apply creates or updates (bumping
    `metadata.generation` when the spec changes), deleting an object deletes what it owns (as
    the garbage collector does), and every write is recorded in `writes`. `fail_next(n)` makes
    the next n calls raise, to exercise retries."""

    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        self.writes: list[tuple[str, ObjectRef]] = []
        self._failures = 0
        self._counter = 0

    def fail_next(self, count: int = 1) -> None:
        self._failures = count

    def _check(self) -> None:
        if self._failures > 0:
            from ebbtide.core.errors import KubernetesError

            self._failures -= 1
            raise KubernetesError("cannot reach the Kubernetes API: connection refused")

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self._check()
        found = self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        stored = self.put(manifest)
        self.writes.append(("apply", self._ref(manifest)))
        return copy.deepcopy(stored)

    async def delete(self, ref: ObjectRef) -> None:
        self._check()
        self.remove(ref)
        self.writes.append(("delete", ref))

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None:
        self._check()
        self.objects[ref]["status"] = {**self.objects[ref].get("status", {}), **status}
        self.writes.append(("status", ref))

    def put(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update an object as the API server would (not recorded as a write)."""
        ref = self._ref(manifest)
        incoming = copy.deepcopy(dict(manifest))
        incoming.pop("status", None)
        current = self.objects.get(ref)
        self._counter += 1
        if current is None:
            metadata = incoming.setdefault("metadata", {})
            metadata.setdefault("namespace", ref.namespace)
            metadata.update(
                uid=f"uid-{self._counter}", generation=1, resourceVersion=str(self._counter)
            )
            metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            self.objects[ref] = incoming
            return incoming
        metadata = current["metadata"]
        for key in ("labels", "annotations", "ownerReferences"):
            if key in incoming.get("metadata", {}):
                metadata[key] = incoming["metadata"][key]
        if incoming.get("spec") != current.get("spec"):
            metadata["generation"] += 1
            current["spec"] = incoming.get("spec")
        metadata["resourceVersion"] = str(self._counter)
        return current

    def remove(self, ref: ObjectRef) -> None:
        """Delete an object and, like the garbage collector, everything it owns."""
        removed = self.objects.pop(ref, None)
        if removed is None:
            return
        uid = removed["metadata"]["uid"]
        for other, body in list(self.objects.items()):
            owners = body["metadata"].get("ownerReferences") or []
            if any(owner.get("uid") == uid for owner in owners):
                self.remove(other)

    def set_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None:
        """What another controller (Deployment, HPA) reports; not recorded as a write."""
        self.objects[ref]["status"] = copy.deepcopy(dict(status))

    @staticmethod
    def _ref(manifest: Mapping[str, Any]) -> ObjectRef:
        from ebbtide.kube.reconcile import ObjectRef

        return ObjectRef.of(manifest)
