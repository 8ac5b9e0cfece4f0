"""The CLI's client of the control-plane API: HTTP over the unix socket in the state directory.

Failures come back as the domain errors they were on the server, so the CLI prints the same
message whether it validated a file itself or the server did.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx

from ebbtide.core.errors import (
    AlreadyExistsError,
    ConflictError,
    ControlPlaneUnavailableError,
    EbbtideError,
    NotFoundError,
    SpecError,
)
from ebbtide.spec import API_GROUP, PLURAL

SOCKET_NAME = "control-plane.sock"
ENDPOINTS = f"/apis/{API_GROUP}/v1/namespaces/{{namespace}}/{PLURAL}"


def socket_path(home: Path) -> Path:
    """Where the control plane of state directory `home` listens."""
    return home / SOCKET_NAME


class ControlPlaneClient:
    """Typed calls to a running control plane. Every method raises a domain error on failure."""

    def __init__(self, home: Path, timeout: float = 30.0) -> None:
        self.home = home
        self.socket = socket_path(home)
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://control-plane",
            timeout=timeout,
        )
        self._checked = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def apply(
        self, manifests: list[dict[str, Any]], dry_run: bool = False, source: str = "<request>"
    ) -> list[dict[str, Any]]:
        """Apply all manifests or none. Each is sent with the resourceVersion read just before,
        so a write that races with another gives a conflict, never a silent overwrite."""
        items = []
        for manifest in manifests:
            metadata = manifest["metadata"]
            namespace = metadata.get("namespace", "default")
            try:
                current = self.get_endpoint(namespace, metadata["name"])
                version = current["metadata"]["resourceVersion"]
            except NotFoundError:
                version = "0"
            items.append({**manifest, "metadata": {**metadata, "resourceVersion": version}})
        body = {"items": items, "dryRun": dry_run, "source": source}
        results: list[dict[str, Any]] = self._call(
            "POST", f"/apis/{API_GROUP}/v1/apply", json=body
        )["results"]
        return results

    def get_endpoint(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", ENDPOINTS.format(namespace=namespace) + f"/{name}")

    def list_endpoints(
        self, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        path = (
            f"/apis/{API_GROUP}/v1/{PLURAL}"
            if namespace is None
            else ENDPOINTS.format(namespace=namespace)
        )
        items: list[dict[str, Any]] = self._call("GET", path, params=_selector(selector))["items"]
        return items

    def delete_endpoint(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", ENDPOINTS.format(namespace=namespace) + f"/{name}")

    def put_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        path = ENDPOINTS.format(namespace=namespace) + f"/{name}/status"
        return self._call("PUT", path, json=body)

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        path = ENDPOINTS.format(namespace=namespace) + f"/{name}/scale"
        return self._call("PUT", path, json={"spec": {"replicas": replicas}})

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        params = {"fieldSelector": f"involvedObject.name={name}"} if name else {}
        path = f"/api/v1/namespaces/{namespace}/events"
        items: list[dict[str, Any]] = self._call("GET", path, params=params)["items"]
        return items

    def list_pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{namespace}/pods"
        items: list[dict[str, Any]] = self._call("GET", path, params=_selector(selector))["items"]
        return items

    def reachable(self) -> bool:
        """True when something listens on the socket (checked without an HTTP client, whose
        failed connects to a missing socket are noisier than they need to be)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self._checked:
            if not self.reachable():
                raise self._unavailable()
            self._checked = True
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError) as error:
            raise self._unavailable() from error
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise _error_from(body)
        return body

    def _unavailable(self) -> ControlPlaneUnavailableError:
        return ControlPlaneUnavailableError(
            f"no control plane is running for {self.home} (nothing answers on "
            f"{self.socket}): start one with `ebbtide up --detach`"
        )


def _selector(selector: str | None) -> dict[str, str]:
    return {"labelSelector": selector} if selector else {}


def _error_from(status: dict[str, Any]) -> EbbtideError:
    message = str(status.get("message", "the control plane refused the request"))
    reason = status.get("reason")
    if reason == "NotFound":
        return NotFoundError(message)
    if reason == "AlreadyExists":
        return AlreadyExistsError(message)
    if reason == "Conflict":
        return ConflictError(message)
    if reason == "Invalid":
        return SpecError(message, (status.get("details") or {}).get("problems"))
    return EbbtideError(message)
