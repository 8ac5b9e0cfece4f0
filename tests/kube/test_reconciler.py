"""The reconcile loop against the in-memory cluster: idempotent, restartable, retrying."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from ebbtide.kube.reconcile import ObjectRef, child_refs
from ebbtide.kube.reconciler import Reconciler
from ebbtide.testing import FakeClock, InMemoryCluster
from tests.spec.cases import SEED, seed_with

NAME = "my-model-endpoint"
ENDPOINT = ObjectRef.endpoint("default", NAME)
DEPLOYMENT, SERVICE, HPA = child_refs("default", NAME)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def settle() -> None:
    """Let woken tasks run (retry timers enqueueing their keys)."""
    for _ in range(5):
        await asyncio.sleep(0)


def setup(document: dict[str, Any] = SEED) -> tuple[InMemoryCluster, Reconciler, FakeClock]:
    cluster = InMemoryCluster()
    cluster.put(copy.deepcopy(document))
    clock = FakeClock()
    return cluster, Reconciler(cluster, clock=clock), clock


def test_create_then_nothing_more_to_do() -> None:
    async def scenario() -> None:
        cluster, reconciler, _ = setup()
        outcome = await reconciler.reconcile("default", NAME)
        assert cluster.writes == [
            ("apply", DEPLOYMENT),
            ("apply", SERVICE),
            ("apply", HPA),
            ("status", ENDPOINT),
        ]
        assert outcome.wrote
        hpa = cluster.objects[HPA]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
        owner = cluster.objects[DEPLOYMENT]["metadata"]["ownerReferences"][0]
        assert owner["uid"] == cluster.objects[ENDPOINT]["metadata"]["uid"]
        status = cluster.objects[ENDPOINT]["status"]
        assert status["observedGeneration"] == 1
        assert status["conditions"][0]["reason"] == "NoReplicaReady"

        cluster.writes.clear()
        again = await reconciler.reconcile("default", NAME)
        assert not again.wrote
        assert cluster.writes == []

    run(scenario)


def test_a_restarted_operator_writes_nothing_on_a_converged_cluster() -> None:
    async def scenario() -> None:
        cluster, reconciler, clock = setup()
        await reconciler.reconcile("default", NAME)
        cluster.writes.clear()
        restarted = Reconciler(cluster, clock=clock)
        restarted.enqueue("default", NAME)
        outcomes = await restarted.process_pending()
        assert [o.wrote for o in outcomes if o] == [False]
        assert cluster.writes == []

    run(scenario)


def test_status_follows_the_deployment() -> None:
    async def scenario() -> None:
        cluster, reconciler, _ = setup()
        await reconciler.reconcile("default", NAME)
        cluster.writes.clear()
        cluster.set_status(DEPLOYMENT, {"replicas": 1, "readyReplicas": 1})
        await reconciler.reconcile("default", NAME)
        assert cluster.writes == [("status", ENDPOINT)]
        ready = cluster.objects[ENDPOINT]["status"]["conditions"][0]
        assert (ready["status"], ready["message"]) == ("True", "1 of 1 replicas ready")

    run(scenario)


def test_user_update_changes_only_what_it_must() -> None:
    async def scenario() -> None:
        cluster, reconciler, _ = setup()
        await reconciler.reconcile("default", NAME)
        deployment_version = cluster.objects[DEPLOYMENT]["metadata"]["resourceVersion"]
        cluster.put(seed_with("spec.autoscaling.maxReplicas", 10))
        cluster.writes.clear()
        await reconciler.reconcile("default", NAME)
        assert cluster.writes == [("apply", HPA), ("status", ENDPOINT)]
        assert cluster.objects[HPA]["spec"]["maxReplicas"] == 10
        assert cluster.objects[DEPLOYMENT]["metadata"]["resourceVersion"] == deployment_version
        assert cluster.objects[ENDPOINT]["status"]["observedGeneration"] == 2

    run(scenario)


def test_deleting_the_endpoint_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        cluster, reconciler, _ = setup()
        await reconciler.reconcile("default", NAME)
        # As if the garbage collector were off: the loop deletes the children itself.
        for ref in (DEPLOYMENT, SERVICE, HPA):
            del cluster.objects[ref]["metadata"]["ownerReferences"]
        cluster.remove(ENDPOINT)
        cluster.writes.clear()
        await reconciler.reconcile("default", NAME)
        assert cluster.writes == [("delete", DEPLOYMENT), ("delete", SERVICE), ("delete", HPA)]
        assert cluster.objects == {}

    run(scenario)


def test_failures_retry_after_doubling_delays_on_the_clock() -> None:
    async def scenario() -> None:
        cluster, reconciler, clock = setup()
        cluster.fail_next(2)
        reconciler.enqueue("default", NAME)
        assert await reconciler.process_pending() == [None]
        clock.advance(0.999)
        await settle()
        assert await reconciler.process_pending() == []
        clock.advance(0.001)  # first retry at t=1
        await settle()
        assert await reconciler.process_pending() == [None]
        clock.advance(1.999)
        await settle()
        assert await reconciler.process_pending() == []
        clock.advance(0.001)  # second retry two seconds later, at t=3
        await settle()
        (outcome,) = await reconciler.process_pending()
        assert outcome is not None
        assert outcome.wrote
        assert DEPLOYMENT in cluster.objects
        await reconciler.stop()

    run(scenario)


def test_retry_delay_doubles_up_to_the_ceiling() -> None:
    reconciler = Reconciler(InMemoryCluster(), first_retry_seconds=1, max_retry_seconds=60)
    assert [reconciler.retry_delay(n) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 32, 60, 60]


def test_resync_requeues_known_endpoints_every_interval() -> None:
    async def scenario() -> None:
        cluster, reconciler, clock = setup()
        await reconciler.reconcile("default", NAME)
        resync = asyncio.create_task(reconciler.resync_forever(300))
        await settle()
        cluster.remove(DEPLOYMENT)  # a missed watch event
        clock.advance(299)
        await settle()
        assert await reconciler.process_pending() == []
        clock.advance(1)
        await settle()
        await reconciler.process_pending()
        assert DEPLOYMENT in cluster.objects
        resync.cancel()

    run(scenario)


def test_duplicate_events_are_one_pass() -> None:
    async def scenario() -> None:
        _, reconciler, _ = setup()
        for _ in range(3):
            reconciler.enqueue("default", NAME)
        assert len(await reconciler.process_pending()) == 1

    run(scenario)
