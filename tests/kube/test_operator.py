"""The kopf wiring: which resources the operator watches, with which filters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ebbtide.kube.admission import WebhookTarget, webhook_configuration
from ebbtide.kube.cluster import KubernetesCluster
from ebbtide.kube.manifests import RenderOptions
from ebbtide.kube.operator import (
    CA_BUNDLE_RESYNC_SECONDS,
    OperatorConfig,
    build_registry,
    keep_ca_bundle,
)
from ebbtide.testing import FakeClock


@pytest.mark.parametrize("hpa_version", ["v2", "v2beta2"])
def test_operator_watches_endpoints_and_the_children_it_labels(hpa_version: str) -> None:
    options = RenderOptions(hpa_api_version=f"autoscaling/{hpa_version}")
    registry = build_registry(OperatorConfig(options))
    watched = {
        (h.selector.group, h.selector.version, h.selector.any_name): h.labels
        for h in registry._watching.get_all_handlers()
    }
    assert watched == {
        ("mlops.example.com", "v1", "inferenceendpoints"): None,
        ("apps", "v1", "deployments"): {"app.kubernetes.io/managed-by": "ebbtide"},
        ("", "v1", "services"): {"app.kubernetes.io/managed-by": "ebbtide"},
        ("autoscaling", hpa_version, "horizontalpodautoscalers"): {
            "app.kubernetes.io/managed-by": "ebbtide"
        },
    }


def test_operator_keeps_no_state_on_the_endpoint() -> None:
    registry = build_registry(OperatorConfig())
    # No change handlers (which store progress in annotations) and so no finalizers.
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    activities = {str(h.activity) for h in registry._activities.get_all_handlers()}
    assert activities == {"authentication", "startup", "cleanup"}


def test_the_ca_bundle_is_applied_again_every_minute_and_errors_do_not_stop_it() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(
            (request.url.path, str(request.url.query, "ascii"), json.loads(request.content))
        )
        if len(calls) == 2:
            return httpx.Response(500, json={"message": "etcd is slow"})
        return httpx.Response(200, json={})

    manifest = webhook_configuration(WebhookTarget("ebbtide-system", "ebbtide-operator"), b"CA")

    async def main() -> list[float]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="https://k")
        cluster = KubernetesCluster(client)
        clock = FakeClock()
        task = asyncio.create_task(keep_ca_bundle(cluster, manifest, clock))
        seen = []
        for _ in range(3):
            await asyncio.sleep(0)
            clock.advance(CA_BUNDLE_RESYNC_SECONDS)
            for _ in range(20):
                await asyncio.sleep(0)
            seen.append(len(calls))
        task.cancel()
        await client.aclose()
        return seen

    assert asyncio.run(main()) == [1, 2, 3]
    path, query, body = calls[0]
    assert (
        path
        == "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/ebbtide-operator"
    )
    assert query == "fieldManager=ebbtide-operator&force=true"
    assert body["webhooks"][0]["clientConfig"]["caBundle"] == "Q0E="
