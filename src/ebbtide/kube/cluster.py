"""The operator's only I/O: read, apply, delete and patch status of namespaced objects.

`Cluster` is the small protocol the reconcile loop uses; `KubernetesCluster` speaks it to a
real API server over HTTPS (server-side apply with one field manager, merge patches for
status), and `ebbtide.testing.InMemoryCluster` is its twin for tests. Credentials come from
the pod's service account in a cluster, else from `KUBECONFIG` / `~/.kube/config`, loaded by
the official `kubernetes` client (the `kube` extra), imported only when needed.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import httpx

from ebbtide.core.errors import KubernetesError
from ebbtide.kube.manifests import hpa_api_version_for
from ebbtide.kube.reconcile import ObjectRef
from ebbtide.spec.models import API_GROUP, API_VERSION, KIND, PLURAL

FIELD_MANAGER = "ebbtide-operator"
SCALE_FIELD_MANAGER = "ebbtide-autoscaler"
"""The scaling loop writes replicas under a manager of its own, so the operator's applies
(which never carry replicas) never own, and so never reset, the count."""
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    KIND: PLURAL,
}
REQUEST_TIMEOUT_SECONDS = 30.0


class Cluster(Protocol):
    """Namespaced objects as plain dicts, the way the API server returns them."""

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ...

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update by server-side apply; returns the object as stored."""
        ...

    async def delete(self, ref: ObjectRef) -> None:
        """Delete the object; deleting what is already gone is not an error."""
        ...

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None:
        """Replace the fields of the object's status subresource given in `status`."""
        ...


def object_path(ref: ObjectRef) -> str:
    """The REST path of a namespaced object: `/apis/apps/v1/namespaces/ns/deployments/x`."""
    if ref.kind not in PLURALS:
        raise KubernetesError(f"ebbtide does not manage objects of kind {ref.kind}")
    prefix = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
    return f"{prefix}/namespaces/{ref.namespace}/{PLURALS[ref.kind]}/{ref.name}"


class KubernetesCluster:
    """`Cluster` over the Kubernetes REST API."""

    def __init__(
        self, client: httpx.AsyncClient, headers: Callable[[], dict[str, str]] | None = None
    ) -> None:
        self._client = client
        self._headers = headers or dict

    @classmethod
    def from_environment(cls) -> KubernetesCluster:
        """Connect as the pod's service account, or with the current kubeconfig context."""
        configuration = load_configuration()
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

        def headers() -> dict[str, str]:
            # Evaluated per request: exec plugins and projected tokens rotate credentials.
            settings = configuration.auth_settings().values()
            return {item["key"]: item["value"] for item in settings if item.get("value")}

        client = httpx.AsyncClient(
            base_url=configuration.host, verify=context, timeout=REQUEST_TIMEOUT_SECONDS
        )
        return cls(client, headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        response = await self._request("GET", object_path(ref))
        if response.status_code == 404:
            return None
        return _json(response, f"get {ref}")

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        ref = ObjectRef.of(manifest)
        response = await self._request(
            "PATCH",
            object_path(ref),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        return _json(response, f"apply {ref}")

    async def apply_webhook_configuration(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply of the (cluster-scoped) ValidatingWebhookConfiguration."""
        name = manifest["metadata"]["name"]
        response = await self._request(
            "PATCH",
            f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        _json(response, f"apply validatingwebhookconfiguration/{name}")

    async def delete(self, ref: ObjectRef) -> None:
        response = await self._request(
            "DELETE", object_path(ref), params={"propagationPolicy": "Background"}
        )
        if response.status_code != 404:
            _json(response, f"delete {ref}")

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None:
        response = await self._request(
            "PATCH",
            object_path(ref) + "/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        _json(response, f"update the status of {ref}")

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching a label selector."""
        response = await self._request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        items: list[dict[str, Any]] = _json(response, f"list pods {selector}").get("items") or []
        return items

    async def pod_metrics(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """metrics.k8s.io PodMetrics of the matching pods; empty when no metrics API is
        served (the policy then scales on the gateway's traffic alone)."""
        response = await self._request(
            "GET",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
            params={"labelSelector": selector},
        )
        if response.status_code in (404, 503):
            return []
        items: list[dict[str, Any]] = _json(response, "read PodMetrics").get("items") or []
        return items

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource."""
        response = await self._request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            params={"fieldManager": SCALE_FIELD_MANAGER},
            content=json.dumps({"spec": {"replicas": replicas}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        _json(response, f"scale deployment/{name} to {replicas}")

    async def create_event(self, manifest: Mapping[str, Any]) -> None:
        """Record a core/v1 Event."""
        namespace = manifest["metadata"]["namespace"]
        response = await self._request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            content=json.dumps(manifest),
            headers={"Content-Type": "application/json"},
        )
        _json(response, "record an event")

    async def served_versions(self, group: str) -> list[str]:
        """The versions of an API group the server serves (`GET /apis/GROUP`, open to every
        authenticated client by the default `system:discovery` role); empty when it serves
        none."""
        response = await self._request("GET", f"/apis/{group}")
        if response.status_code == 404:
            return []
        data = _json(response, f"discover the {group} API group")
        return [str(entry.get("version")) for entry in data.get("versions") or []]

    async def hpa_api_version(self) -> str:
        """autoscaling/v2 where the server has it, else autoscaling/v2beta2 (Kubernetes < 1.23)."""
        return hpa_api_version_for(await self.served_versions("autoscaling"))

    async def check_resource_served(self) -> None:
        """Fail clearly when the InferenceEndpoint CRD is not installed."""
        response = await self._request("GET", f"/apis/{API_VERSION}")
        if response.status_code == 404:
            raise KubernetesError(
                f"the cluster does not serve {PLURAL}.{API_GROUP}: install the CRD first with "
                "`ebbtide kube crd | kubectl apply --server-side -f -`"
            )
        _json(response, f"discover {API_VERSION}")

    async def list_collection(self, path: str) -> dict[str, Any]:
        """A collection (`/api/v1/endpoints`, every namespace's), with its resourceVersion."""
        return _json(await self._request("GET", path), f"list {path}")

    async def watch_collection(
        self, path: str, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events (`{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`)
        of a collection from `resource_version` on, until the server ends the watch (after
        `timeout_seconds`). An `ERROR` event with code 410 means the version is too old: list
        again. Raises `KubernetesError` when the server cannot be reached."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        headers = {**self._headers(), "Accept": "application/json"}
        timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=timeout_seconds + 30.0)
        try:
            async with self._client.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _json(response, f"watch {path}")
                async for line in response.aiter_lines():
                    if line.strip():
                        event: dict[str, Any] = json.loads(line)
                        yield event
        except httpx.HTTPError as error:
            raise KubernetesError(f"the watch of {path} broke: {error}") from error

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), "Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            return await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise KubernetesError(f"cannot reach the Kubernetes API: {error}") from error


def _json(response: httpx.Response, doing: str) -> dict[str, Any]:
    if response.is_success:
        data: dict[str, Any] = response.json()
        return data
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    raise KubernetesError(f"cannot {doing}: {response.status_code} {message}")


def load_configuration() -> Any:
    """The `kubernetes` client's configuration: in-cluster when running in a pod, else the
    current kubeconfig context. Raises `KubernetesError` when neither is available."""
    try:
        from kubernetes import client
        from kubernetes import config as kube_config
    except ImportError as error:
        raise KubernetesError(
            "talking to a cluster needs the kube extra: pip install 'ebbtide[kube]'"
        ) from error
    configuration = client.Configuration()
    config: Any = kube_config  # its loaders are untyped
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            config.load_kube_config(client_configuration=configuration)
        except (config.ConfigException, OSError) as error:
            raise KubernetesError(
                f"no Kubernetes cluster configured ({error}); set KUBECONFIG or run in a pod"
            ) from error
    return configuration
