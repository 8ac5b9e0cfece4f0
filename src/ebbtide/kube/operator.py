"""`ebbtide kube operator`: kopf watches, the `Reconciler` decides and acts.

kopf supplies what is hard to get right about watching (list then watch, reconnects, signal
handling); its handlers do nothing but queue the endpoint's key. Changes
to an endpoint, and to any Deployment, Service or HPA labelled as managed by ebbtide, queue
the owning endpoint; the reconciler's own resync queues every endpoint now and then. No
handler keeps state on the endpoint (no kopf annotations, no finalizers), so deleting an
endpoint never waits for the operator, and a restart just starts over from the cluster's state.

Class-ebbtide endpoints are scaled by the `Scaler` beside the reconciler: each pass tells it
the endpoint, and it runs ebbtide's policy at the policy's sync period (`kube.scaler`).

Beside the watches, the operator serves the validating admission webhook (`kube.webhook`) and
its health endpoints, and finds at start, by discovery, which HPA API version the server has.

kopf is imported here and only here, when the operator starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import KubernetesError
from ebbtide.kube.admission import WEBHOOK_PORT, WebhookTarget, webhook_configuration
from ebbtide.kube.cluster import KubernetesCluster
from ebbtide.kube.crd import VERSION
from ebbtide.kube.manifests import ENDPOINT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, RenderOptions
from ebbtide.kube.reconcile import ObjectRef
from ebbtide.kube.reconciler import Reconciler
from ebbtide.kube.scaler import Scaler
from ebbtide.kube.webhook import HealthServer, WebhookServer, make_identity
from ebbtide.spec.models import API_GROUP, PLURAL

logger = logging.getLogger("ebbtide.kube")

RESYNC_SECONDS = 300.0
CA_BUNDLE_RESYNC_SECONDS = 60.0


def child_resources(hpa_api_version: str) -> tuple[tuple[str, str, str], ...]:
    """(group, version, plural) of the children watched, the HPA in the version in use."""
    return (
        ("apps", "v1", "deployments"),
        ("", "v1", "services"),
        ("autoscaling", hpa_api_version.split("/")[1], "horizontalpodautoscalers"),
    )


@dataclass(frozen=True)
class OperatorConfig:
    """How one operator process runs."""

    options: RenderOptions = field(default_factory=RenderOptions)
    namespaces: Sequence[str] = ()
    """Watch only these namespaces; every namespace when empty."""
    host: str = "0.0.0.0"
    """The address the health and webhook ports listen on (in a pod: the pod's IP)."""
    health_port: int | None = None
    """Serve /healthz (liveness) and /readyz (readiness) on this port."""
    webhook_port: int = WEBHOOK_PORT
    webhook_target: WebhookTarget | None = None
    """Serve the validating webhook, and point its configuration here; no webhook when None."""
    gateway_urls: Sequence[str] = ()
    """The in-cluster gateways' admin URLs (http://HOST:9091) for class-ebbtide endpoints'
    traffic and demand; empty: the gateway pods found in ebbtide-system."""


def run_operator(config: OperatorConfig) -> None:
    """Run until interrupted."""
    try:
        import kopf
    except ImportError as error:
        raise KubernetesError(
            "the operator needs the kube extra: pip install 'ebbtide[kube]'"
        ) from error
    kopf.configure(verbose=False)  # kopf's log format and level, for ebbtide's lines too
    logging.getLogger("ebbtide.kube").setLevel(logging.INFO)
    options = asyncio.run(preflight(config.options))
    config = replace(config, options=options)
    kopf.run(
        registry=build_registry(config),
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
    )


async def preflight(options: RenderOptions) -> RenderOptions:
    """Fail with one clear line, before kopf starts, when the cluster or the CRD is missing;
    return `options` with the HPA API version the server serves, found by discovery."""
    cluster = KubernetesCluster.from_environment()
    try:
        await cluster.check_resource_served()
        hpa_api_version = await cluster.hpa_api_version()
    finally:
        await cluster.aclose()
    logger.info("the cluster serves HorizontalPodAutoscalers as %s", hpa_api_version)
    return replace(options, hpa_api_version=hpa_api_version)


def build_registry(config: OperatorConfig) -> Any:
    """kopf handlers that feed one `Reconciler`, which a startup handler creates, with the
    health and webhook servers beside it."""
    import kopf

    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {"tasks": [], "servers": [], "ready": False}

    def alive() -> bool:
        return all(not task.done() for task in state["tasks"])

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        # A registry of its own has none of kopf's default login handlers: use the same
        # credentials as `KubernetesCluster` (in-cluster service account, else kubeconfig).
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(settings: Any, **_: Any) -> None:
        # Least privilege: no watching of CRDs or namespaces, so no RBAC for them.
        settings.scanning.disabled = True
        if config.health_port is not None:
            health = HealthServer(alive, lambda: bool(state["ready"]) and alive())
            state["servers"].append(health)
            await health.start(config.host, config.health_port)
        try:
            cluster = KubernetesCluster.from_environment()
            state["cluster"] = cluster
            await cluster.check_resource_served()
            if config.webhook_target is not None:
                await start_webhook(cluster, config.webhook_target)
        except KubernetesError as error:
            # Exit (the Deployment restarts it with backoff) rather than retry forever inside.
            raise kopf.PermanentError(str(error)) from error
        scaler = Scaler(
            cluster, config.gateway_urls, hpa_api_version=config.options.hpa_api_version
        )
        state["scaler"] = scaler
        reconciler = Reconciler(cluster, config.options, on_endpoint=scaler.track)
        state["reconciler"] = reconciler
        state["tasks"] += [
            asyncio.create_task(scaler.run()),
            asyncio.create_task(reconciler.run()),
            asyncio.create_task(reconciler.resync_forever(RESYNC_SECONDS)),
        ]
        state["ready"] = True

    async def start_webhook(cluster: KubernetesCluster, target: WebhookTarget) -> None:
        identity = make_identity(*target.names(), SYSTEM_CLOCK.wall())

        async def lookup(namespace: str, name: str) -> dict[str, Any] | None:
            return await cluster.get(ObjectRef.endpoint(namespace, name))

        server = WebhookServer(identity, config.options, lookup)
        state["servers"].append(server)
        await server.start(config.host, config.webhook_port)
        manifest = webhook_configuration(target, identity.ca)
        try:
            await cluster.apply_webhook_configuration(manifest)
        except KubernetesError as error:
            where = "--webhook-url" if target.url else "--webhook-service"
            raise KubernetesError(
                f"{error}; the operator only writes its CA into the configuration that "
                f"`ebbtide kube install` creates, whose clientConfig must name the same target "
                f"as {where}"
            ) from error
        state["tasks"].append(asyncio.create_task(keep_ca_bundle(cluster, manifest)))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        state["ready"] = False
        for task in state["tasks"]:
            task.cancel()
        if "reconciler" in state:
            await state["reconciler"].stop()
        if "scaler" in state:
            await state["scaler"].stop()
        for server in reversed(state["servers"]):
            await server.stop()
        if "cluster" in state:
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
    for group, version, plural in child_resources(config.options.hpa_api_version):
        kopf.on.event(
            group, version, plural, id=f"{plural}-event", labels=managed, registry=registry
        )(child_event)
    return registry


async def keep_ca_bundle(
    cluster: KubernetesCluster, manifest: Mapping[str, Any], clock: Clock = SYSTEM_CLOCK
) -> None:
    """Apply the webhook configuration again now and then: a re-run of `kubectl apply` of the
    install manifests may have replaced its caBundle. Unchanged, the apply writes nothing."""
    while True:
        await clock.sleep(CA_BUNDLE_RESYNC_SECONDS)
        try:
            await cluster.apply_webhook_configuration(manifest)
        except KubernetesError as error:
            logger.warning("cannot refresh the webhook's caBundle: %s", error)
