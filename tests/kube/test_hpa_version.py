"""The HPA API version: chosen by discovery, rendered, planned and watched in either form."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import httpx
import kubernetes_validate
import pytest

from ebbtide.core.errors import KubernetesError, SpecError
from ebbtide.kube.cluster import KubernetesCluster
from ebbtide.kube.manifests import (
    HPA_V2,
    HPA_V2BETA2,
    RenderOptions,
    hpa_api_version_for,
    render,
)
from ebbtide.kube.reconcile import ObjectRef, Observed, child_refs, plan
from ebbtide.kube.reconciler import Reconciler
from ebbtide.spec import validate_document
from ebbtide.testing import InMemoryCluster
from tests.spec.cases import SEED, seed_with

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# autoscaling/v2beta2 was last served by 1.25; its schema is checked against that release.
LAST_WITH_V2BETA2 = "1.25.0"
V2BETA2 = RenderOptions(hpa_api_version=HPA_V2BETA2)


@pytest.mark.parametrize(
    ("served", "chosen"),
    [
        (["v1", "v2", "v2beta2"], HPA_V2),  # 1.23 to 1.25
        (["v2", "v1"], HPA_V2),  # 1.26 on
        (["v1", "v2beta1", "v2beta2"], HPA_V2BETA2),  # 1.20 to 1.22
    ],
)
def test_v2_where_served_else_v2beta2(served: list[str], chosen: str) -> None:
    assert hpa_api_version_for(served) == chosen


def test_a_server_with_neither_is_named_as_too_old() -> None:
    with pytest.raises(KubernetesError, match=r"serves: v1, v2beta1\); ebbtide needs Kubernetes"):
        hpa_api_version_for(["v2beta1", "v1"])


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(SpecError, match="use autoscaling/v2 or autoscaling/v2beta2"):
        RenderOptions(hpa_api_version="autoscaling/v1")


def _discovery(versions: list[str] | None) -> KubernetesCluster:
    def handle(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/apis/autoscaling")
        if versions is None:
            return httpx.Response(404, json={"kind": "Status", "code": 404})
        group = {
            "kind": "APIGroup",
            "name": "autoscaling",
            "versions": [{"groupVersion": f"autoscaling/{v}", "version": v} for v in versions],
        }
        return httpx.Response(200, json=group)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="https://k8s.test")
    return KubernetesCluster(client)


@pytest.mark.parametrize(
    ("versions", "chosen"),
    [(["v1", "v2beta1", "v2beta2"], HPA_V2BETA2), (["v2", "v1"], HPA_V2)],
)
def test_the_cluster_is_asked(versions: list[str], chosen: str) -> None:
    async def ask() -> str:
        cluster = _discovery(versions)
        try:
            return await cluster.hpa_api_version()
        finally:
            await cluster.aclose()

    assert asyncio.run(ask()) == chosen


def test_a_server_without_the_group_is_too_old() -> None:
    async def ask() -> str:
        cluster = _discovery(None)
        try:
            return await cluster.hpa_api_version()
        finally:
            await cluster.aclose()

    with pytest.raises(KubernetesError, match="serves: none"):
        asyncio.run(ask())


def test_both_renderings_differ_only_in_api_version() -> None:
    endpoint = validate_document(SEED).endpoint
    v2 = render(endpoint).autoscaler
    v2beta2 = render(endpoint, V2BETA2).autoscaler
    assert (v2["apiVersion"], v2beta2["apiVersion"]) == (HPA_V2, HPA_V2BETA2)
    assert v2beta2["spec"] == v2["spec"]
    assert kubernetes_validate.validate(v2beta2, LAST_WITH_V2BETA2, strict=True)
    assert kubernetes_validate.validate(v2, LAST_WITH_V2BETA2, strict=True)


def test_v2beta2_keeps_behavior_but_drops_tolerance_and_says_so() -> None:
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 0, "tolerance": 0.05},
        "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min"},
    }
    endpoint = validate_document(seed_with("spec.autoscaling.behavior", behavior)).endpoint
    rendered = render(endpoint, V2BETA2)
    assert rendered.autoscaler["spec"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min"},
    }
    assert kubernetes_validate.validate(rendered.autoscaler, LAST_WITH_V2BETA2, strict=True)
    assert any("behavior.scaleUp.tolerance needs autoscaling/v2" in n for n in rendered.notes)
    assert render(endpoint).autoscaler["spec"]["behavior"]["scaleUp"]["tolerance"] == "50m"


def _body() -> dict[str, Any]:
    body = copy.deepcopy(SEED)
    body["metadata"] = {**body["metadata"], "namespace": "default", "uid": "u-1", "generation": 1}
    return body


def test_the_plan_applies_and_deletes_the_hpa_in_the_version_in_use() -> None:
    decision = plan(Observed("default", "my-model-endpoint", _body()), V2BETA2, NOW)
    hpa = [a for a in decision.actions if a.ref.kind == "HorizontalPodAutoscaler"]
    assert [a.ref.api_version for a in hpa] == [HPA_V2BETA2]
    children = {"HorizontalPodAutoscaler": dict(hpa[0].manifest or {})}
    gone = plan(Observed("default", "my-model-endpoint", None, children), V2BETA2, NOW)
    assert [(a.verb, a.ref.api_version) for a in gone.actions] == [("delete", HPA_V2BETA2)]


def test_the_reconciler_reads_and_writes_the_v2beta2_hpa() -> None:
    cluster = InMemoryCluster()
    cluster.put(_body())
    reconciler = Reconciler(cluster, V2BETA2)

    async def twice() -> None:
        await reconciler.reconcile("default", "my-model-endpoint")
        cluster.writes.clear()
        second = await reconciler.reconcile("default", "my-model-endpoint")
        assert second.actions == ()

    asyncio.run(twice())
    hpa = child_refs("default", "my-model-endpoint", HPA_V2BETA2)[2]
    assert hpa == ObjectRef(HPA_V2BETA2, "HorizontalPodAutoscaler", "default", "my-model-endpoint")
    assert hpa in cluster.objects
    assert cluster.writes == []
