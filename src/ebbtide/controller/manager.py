"""All endpoints' loops: one reconciler per endpoint, started, woken and stopped by the store's
change feed, and the source of `get pods` and `scale` for the API."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ebbtide.controller.reconciler import GatewayPort, Reconciler, ReconcilerSettings
from ebbtide.core.clock import Clock
from ebbtide.core.errors import NotFoundError
from ebbtide.spec import KIND
from ebbtide.store import Change, ChangeType, ObjectKey, Selector, Store
from ebbtide.supervisor import Replica, Supervisor


class Controller:
    """Runs a reconciler per endpoint for as long as the endpoint exists."""

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        gateway: GatewayPort,
        clock: Clock,
        settings: ReconcilerSettings,
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.gateway = gateway
        self.clock = clock
        self.settings = settings
        self.reconcilers: dict[ObjectKey, Reconciler] = {}
        self._tasks: dict[ObjectKey, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Begin: a loop for every stored endpoint, then follow the change feed."""
        self.store.subscribe(self._on_change)
        self.supervisor.subscribe(self._on_replica)
        for record in self.store.list_objects(KIND):
            self._ensure(record.key)

    async def stop(self) -> None:
        """Stop every loop and every replica (the control plane is going down)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._closing, return_exceptions=True)
        for key in list(self.reconcilers):
            self.gateway.withdraw(key)
        await self.supervisor.stop_all()

    async def release(self) -> None:
        """Stop every loop and leave every replica and route serving (a hand-over to the next
        control plane, which adopts them)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.supervisor.release()

    def _on_change(self, change: Change) -> None:
        if change.key.kind != KIND:
            return
        if change.type is ChangeType.DELETED:
            self._remove(change.key)
        elif change.type is ChangeType.ADDED or change.key not in self.reconcilers:
            self._ensure(change.key)
        else:
            self.reconcilers[change.key].wake.set()

    def _on_replica(self, replica: Replica) -> None:
        key = ObjectKey(KIND, *replica.endpoint)
        reconciler = self.reconcilers.get(key)
        if reconciler is not None:
            reconciler.wake.set()

    def _ensure(self, key: ObjectKey) -> None:
        if key in self.reconcilers:
            self.reconcilers[key].wake.set()
            return
        reconciler = Reconciler(
            key, self.store, self.supervisor, self.gateway, self.clock, self.settings
        )
        self.reconcilers[key] = reconciler
        self._tasks[key] = asyncio.create_task(reconciler.run(), name=f"reconcile {key}")

    def _remove(self, key: ObjectKey) -> None:
        reconciler = self.reconcilers.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if reconciler is not None:
            closing = asyncio.create_task(reconciler.shutdown())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    # -- what the API asks ----------------------------------------------------------------

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        pods = [
            pod
            for key, reconciler in sorted(self.reconcilers.items(), key=lambda item: item[0].name)
            if key.namespace == namespace
            for pod in reconciler.pods()
        ]
        return [p for p in pods if selector.matches(p["metadata"]["labels"])]

    def scale(self, key: ObjectKey, replicas: int) -> None:
        reconciler = self.reconcilers.get(key)
        if reconciler is None:
            raise NotFoundError(f'inferenceendpoints "{key.name}" not found')
        reconciler.set_scale(replicas)

    def demand(self, namespace: str, name: str) -> None:
        """The gateway holds a request for an endpoint at zero replicas."""
        reconciler = self.reconcilers.get(ObjectKey(KIND, namespace, name))
        if reconciler is not None:
            reconciler.demand()
