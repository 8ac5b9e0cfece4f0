"""`ebbtide kube operator`: kopf watches, the `Reconciler` decides and acts.

kopf supplies what is hard to get right about watching (list then watch, reconnects, signal
handling, a liveness endpoint); its handlers do nothing but queue the endpoint's key. Changes
to an endpoint, and to any Deployment, Service or HPA labelled as managed by ebbtide, queue
the owning endpoint; the reconciler's own resync queues every endpoint now and then. No
handler keeps state on the endpoint (no kopf annotations, no finalizers), so deleting an
endpoint never waits for the operator, and a restart just starts over from the cluster's state.

kopf is imported here and only here, when the operator starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ebbtide.core.errors import KubernetesError
from ebbtide.kube.cluster import KubernetesCluster
from ebbtide.kube.crd import VERSION
from ebbtide.kube.manifests import ENDPOINT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, RenderOptions
from ebbtide.kube.reconciler import Reconciler
from ebbtide.spec.models import API_GROUP, PLURAL

RESYNC_SECONDS = 300.0
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
)


def run_operator(
    options: RenderOptions, namespaces: Sequence[str] = (), liveness_port: int | None = None
) -> None:
    """Run until interrupted, watching `namespaces` (all namespaces when empty)."""
    try:
        import kopf
    except ImportError as error:
        raise KubernetesError(
            "the operator needs the kube extra: pip install 'ebbtide[kube]'"
        ) from error
    asyncio.run(preflight())
    registry = build_registry(options)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    logging.getLogger("ebbtide.kube").setLevel(logging.INFO)
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
    )


async def preflight() -> None:
    """Fail with one clear line, before kopf starts, when the cluster or the CRD is missing."""
    cluster = KubernetesCluster.from_environment()
    try:
        await cluster.check_resource_served()
    finally:
        await cluster.aclose()


def build_registry(options: RenderOptions) -> Any:
    """kopf handlers that feed one `Reconciler`, which a startup handler creates."""
    import kopf

    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {}

    @kopf.on.startup(registry=registry)
    async def start(settings: Any, **_: Any) -> None:
        # Least privilege: no watching of CRDs or namespaces, so no RBAC for them.
        settings.scanning.disabled = True
        try:
            cluster = KubernetesCluster.from_environment()
            await cluster.check_resource_served()
        except KubernetesError as error:
            # Exit (the Deployment restarts it with backoff) rather than retry forever inside.
            raise kopf.PermanentError(str(error)) from error
        reconciler = Reconciler(cluster, options)
        state.update(cluster=cluster, reconciler=reconciler)
        state["tasks"] = [
            asyncio.create_task(reconciler.run()),
            asyncio.create_task(reconciler.resync_forever(RESYNC_SECONDS)),
        ]

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for task in state.get("tasks", []):
            task.cancel()
        if "reconciler" in state:
            await state["reconciler"].stop()
            await state["cluster"].aclose()

    @kopf.on.event(API_GROUP, VERSION, PLURAL, registry=registry)
    async def endpoint_event(name: str, namespace: str | None, **_: Any) -> None:
        if namespace:
            state["reconciler"].enqueue(namespace, name)

    async def child_event(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        owner = labels.get(ENDPOINT_LABEL)
        if owner and namespace:
            state["reconciler"].enqueue(namespace, owner)

    managed = {MANAGED_BY_LABEL: MANAGED_BY}
    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(
            group, version, plural, id=f"{plural}-event", labels=managed, registry=registry
        )(child_event)
    return registry
