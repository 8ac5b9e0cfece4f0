"""The thin loop around `plan`: queue endpoint keys, gather, plan, act, retry with backoff.

Watch events (from kopf in the operator) only enqueue a key; one worker takes keys in turn,
reads the endpoint and its children, asks the pure `plan`, carries out its actions and writes
the status when it changed. A failure re-queues the key after a delay that doubles up to a
ceiling, measured on the injected clock. Because every pass starts from what the cluster
holds, a restarted operator simply reconciles every endpoint again and writes nothing where
nothing differs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import SpecError
from ebbtide.kube.cluster import Cluster
from ebbtide.kube.manifests import RenderOptions
from ebbtide.kube.reconcile import (
    Action,
    ObjectRef,
    Observed,
    child_refs,
    endpoint_from_object,
    endpoint_status,
    plan,
)
from ebbtide.spec.models import InferenceEndpoint

logger = logging.getLogger("ebbtide.kube")

Key = tuple[str, str]
"""(namespace, name) of an endpoint."""


@dataclass(frozen=True)
class Outcome:
    """What one pass over an endpoint did."""

    key: Key
    actions: tuple[Action, ...]
    status_written: bool
    problems: tuple[str, ...] = ()

    @property
    def wrote(self) -> bool:
        return bool(self.actions) or self.status_written


class Reconciler:
    """Brings each queued endpoint's objects and status in line with its spec."""

    def __init__(
        self,
        cluster: Cluster,
        options: RenderOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        first_retry_seconds: float = 1.0,
        max_retry_seconds: float = 60.0,
        on_endpoint: Callable[[Key, InferenceEndpoint | None, str | None], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.options = options or RenderOptions()
        self.clock = clock
        self.first_retry_seconds = first_retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._known: set[Key] = set()
        self._retries: set[asyncio.Task[None]] = set()
        self.on_endpoint = on_endpoint
        """Told after each pass the endpoint as declared (None once deleted) and its uid: the
        scaling loop of class-ebbtide endpoints follows it. An invalid spec tells nothing, so
        the last good one keeps scaling."""

    def enqueue(self, namespace: str, name: str) -> None:
        """Ask for a pass over one endpoint; a key already waiting is not queued twice."""
        key = (namespace, name)
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def retry_delay(self, failures: int) -> float:
        """Seconds before the next try after `failures` failures in a row: 1, 2, 4 … ceiling."""
        return float(min(self.first_retry_seconds * 2 ** (failures - 1), self.max_retry_seconds))

    async def run(self) -> None:
        """Work through the queue forever."""
        while True:
            await self._process(await self._queue.get())

    async def resync_forever(self, interval_seconds: float) -> None:
        """Every `interval_seconds`, queue every endpoint seen so far: a missed watch event
        costs at most one interval."""
        while True:
            await self.clock.sleep(interval_seconds)
            for key in sorted(self._known):
                self.enqueue(*key)

    async def process_pending(self) -> list[Outcome | None]:
        """Work through the keys queued now, then return (for tests and one-shot use)."""
        outcomes = []
        while not self._queue.empty():
            outcomes.append(await self._process(self._queue.get_nowait()))
        return outcomes

    async def stop(self) -> None:
        """Cancel pending retries."""
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        """One pass: gather what the cluster holds, plan, act, write the status if it changed."""
        observed = await self.observe(namespace, name)
        if observed.endpoint is None:
            self._known.discard((namespace, name))
        else:
            self._known.add((namespace, name))
        now = self.clock.wall()
        decision = plan(observed, self.options, now)
        for note in decision.notes:
            logger.info("%s/%s: %s", namespace, name, note)
        children = dict(observed.children)
        for action in decision.actions:
            logger.info("%s/%s: %s", namespace, name, action)
            if action.verb == "apply" and action.manifest is not None:
                children[action.ref.kind] = await self.cluster.apply(action.manifest)
            else:
                await self.cluster.delete(action.ref)
                children.pop(action.ref.kind, None)
        status = decision.status
        if status is not None and decision.actions:
            # Report on the objects as they are now, not as they were before this pass.
            after = replace(observed, children=children)
            status = endpoint_status(after, now, decision.problems)
        written = False
        if status is not None and status != decision.previous_status:
            await self.cluster.patch_status(ObjectRef.endpoint(namespace, name), status)
            written = True
        if decision.problems:
            logger.warning("%s/%s: invalid spec: %s", namespace, name, decision.problems)
        self._tell(namespace, name, observed)
        return Outcome((namespace, name), decision.actions, written, decision.problems)

    def _tell(self, namespace: str, name: str, observed: Observed) -> None:
        if self.on_endpoint is None:
            return
        body = observed.endpoint
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self.on_endpoint((namespace, name), None, None)
            return
        try:
            endpoint = endpoint_from_object(body)
        except SpecError:
            return
        self.on_endpoint((namespace, name), endpoint, body.get("metadata", {}).get("uid"))

    async def observe(self, namespace: str, name: str) -> Observed:
        """Read the endpoint and the three objects named after it."""
        endpoint = await self.cluster.get(ObjectRef.endpoint(namespace, name))
        children = {}
        for ref in child_refs(namespace, name, self.options.hpa_api_version):
            found = await self.cluster.get(ref)
            if found is not None:
                children[ref.kind] = found
        return Observed(namespace, name, endpoint, children)

    async def _process(self, key: Key) -> Outcome | None:
        self._queued.discard(key)
        try:
            outcome = await self.reconcile(*key)
        except Exception as error:  # one endpoint's failure must not stop the others
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = self.retry_delay(failures)
            logger.warning("%s/%s: %s; retrying in %gs", *key, error, delay)
            task = asyncio.create_task(self._retry_at(key, self.clock.now() + delay))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return None
        self._failures.pop(key, None)
        return outcome

    async def _retry_at(self, key: Key, deadline: float) -> None:
        # The deadline is fixed when the failure happens, however late this task starts.
        await self.clock.sleep(deadline - self.clock.now())
        self.enqueue(*key)
