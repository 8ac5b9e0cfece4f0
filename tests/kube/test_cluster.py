"""The REST side of the operator: the requests it sends, through an in-process API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ebbtide.core.errors import KubernetesError
from ebbtide.kube.cluster import FIELD_MANAGER, KubernetesCluster, object_path
from ebbtide.kube.reconcile import ObjectRef, child_refs
from ebbtide.kube.reconciler import Reconciler
from tests.spec.cases import SEED

ENDPOINT = ObjectRef.endpoint("default", "my-model-endpoint")


class ApiServer:
    """Just enough of the Kubernetes REST API: objects by path, apply, status, delete."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.refuse: int | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse:
            return httpx.Response(self.refuse, json={"message": "forbidden by policy"})
        path = request.url.path
        if path == "/apis/mlops.example.com/v1":
            return httpx.Response(200, json={"kind": "APIResourceList"})
        if request.method == "GET":
            found = self.objects.get(path)
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={})
        if request.method == "DELETE":
            return httpx.Response(200 if self.objects.pop(path, None) else 404, json={})
        body = json.loads(request.content)
        if path.endswith("/status"):
            self.objects[path.removesuffix("/status")]["status"] = body["status"]
            return httpx.Response(200, json=self.objects[path.removesuffix("/status")])
        self.objects[path] = {**body, "metadata": {**body["metadata"], "uid": f"uid-{path}"}}
        return httpx.Response(200, json=self.objects[path])


def connect(server: ApiServer) -> KubernetesCluster:
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(server.handle), base_url="https://k8s.test"
    )
    return KubernetesCluster(client, lambda: {"authorization": "Bearer token-1"})


def test_paths_follow_the_api_groups() -> None:
    deployment, service, hpa = child_refs("ml", "iris")
    assert object_path(deployment) == "/apis/apps/v1/namespaces/ml/deployments/iris"
    assert object_path(service) == "/api/v1/namespaces/ml/services/iris"
    assert object_path(hpa) == "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/iris"
    assert object_path(ObjectRef.endpoint("ml", "iris")) == (
        "/apis/mlops.example.com/v1/namespaces/ml/inferenceendpoints/iris"
    )
    with pytest.raises(KubernetesError, match="does not manage objects of kind Pod"):
        object_path(ObjectRef("v1", "Pod", "ml", "iris"))


def test_reconcile_uses_server_side_apply_and_a_status_merge_patch() -> None:
    async def scenario() -> None:
        server = ApiServer()
        server.objects[object_path(ENDPOINT)] = {
            **SEED,
            "metadata": {"name": "my-model-endpoint", "namespace": "default", "uid": "u-1"},
        }
        cluster = connect(server)
        outcome = await Reconciler(cluster).reconcile("default", "my-model-endpoint")
        await cluster.aclose()
        assert len(outcome.actions) == 3
        writes = [r for r in server.requests if r.method != "GET"]
        assert [r.method for r in writes] == ["PATCH"] * 4
        for request in writes[:3]:
            assert request.headers["content-type"] == "application/apply-patch+yaml"
            assert request.url.params["fieldManager"] == FIELD_MANAGER
            assert request.url.params["force"] == "true"
        status = writes[3]
        assert status.url.path.endswith("/inferenceendpoints/my-model-endpoint/status")
        assert status.headers["content-type"] == "application/merge-patch+json"
        assert all(r.headers["authorization"] == "Bearer token-1" for r in server.requests)
        hpa = server.objects[object_path(child_refs("default", "my-model-endpoint")[2])]
        assert hpa["spec"]["maxReplicas"] == 5

    asyncio.run(scenario())


def test_refusals_become_clear_errors() -> None:
    async def scenario() -> None:
        server = ApiServer()
        server.refuse = 403
        cluster = connect(server)
        with pytest.raises(KubernetesError, match="cannot get inferenceendpoint/x: 403 forbidden"):
            await cluster.get(ObjectRef.endpoint("default", "x"))
        await cluster.aclose()

    asyncio.run(scenario())


def test_missing_crd_says_how_to_install_it() -> None:
    async def scenario() -> None:
        def no_such_group(request: httpx.Request) -> httpx.Response:
            return httpx.Response(404, json={"message": "the server could not find it"})

        client = httpx.AsyncClient(
            transport=httpx.MockTransport(no_such_group), base_url="https://k8s.test"
        )
        cluster = KubernetesCluster(client)
        with pytest.raises(KubernetesError, match="install the CRD first"):
            await cluster.check_resource_served()
        await cluster.aclose()

    asyncio.run(scenario())


def test_deleting_what_is_gone_is_fine() -> None:
    async def scenario() -> None:
        cluster = connect(ApiServer())
        await cluster.delete(child_refs("default", "gone")[0])
        await cluster.aclose()

    asyncio.run(scenario())
