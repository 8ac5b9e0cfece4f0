"""The control-plane HTTP API, served on a unix socket in the state directory.

Paths follow the Kubernetes API's (`/apis/mlops.example.com/v1/namespaces/NS/
inferenceendpoints/NAME`, `/api/v1/namespaces/NS/pods`), so the words a user knows carry over.
Failures are Kubernetes `Status` objects: `reason` (NotFound, Conflict, Invalid, ...), a
`message` for people and, for invalid resources, every problem in `details.problems`. This
module is the only place that turns domain errors into HTTP codes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ebbtide import __version__
from ebbtide.core.errors import (
    AlreadyExistsError,
    ConflictError,
    EbbtideError,
    NotFoundError,
    SelectorError,
    SpecError,
)
from ebbtide.spec import API_GROUP, KIND, PLURAL, EndpointStatus, validate_document
from ebbtide.spec.schema import endpoint_json_schema
from ebbtide.store import Change, ObjectKey, Selector, Store, Write

GROUP_PREFIX = f"/apis/{API_GROUP}/v1"
ENDPOINTS = f"{GROUP_PREFIX}/namespaces/{{namespace}}/{PLURAL}"
WATCH_TIMEOUT_LIMIT = 60.0


class Workloads(Protocol):
    """What the API asks of whoever runs replicas (the controller, in the daemon)."""

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        """The replicas in a namespace matching a selector, as Pod-shaped objects."""
        ...

    def scale(self, key: ObjectKey, replicas: int) -> None:
        """Set an endpoint's replica count now; the autoscaler may change it later."""
        ...


class NoWorkloads:
    """Workloads of a control plane that runs no replicas (tests of the API alone)."""

    def pods(self, namespace: str, selector: Selector) -> list[dict[str, Any]]:
        return []

    def scale(self, key: ObjectKey, replicas: int) -> None:
        raise EbbtideError("this control plane runs no replicas; nothing to scale")


@dataclass
class ChangeSignal:
    """Wakes watchers when the store commits a change (store writes happen on the loop)."""

    waiters: set[asyncio.Event] = field(default_factory=set)

    def __call__(self, change: Change) -> None:
        for waiter in self.waiters:
            waiter.set()


Handler = Callable[[Request], Awaitable[Response]]


def build_app(
    store: Store, workloads: Workloads | None = None, registry: CollectorRegistry | None = None
) -> Starlette:
    """The API as an ASGI app over `store`; `workloads` answers pods and scale; `registry`
    holds the control plane's own Prometheus metrics, served at /metrics."""
    api = _Api(store, workloads or NoWorkloads())
    metrics = registry or CollectorRegistry()

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    store.subscribe(api.signal)
    routes = [
        Route("/healthz", api.health),
        Route("/openapi.json", api.openapi),
        Route("/metrics", metrics_text),
        Route(f"{GROUP_PREFIX}/apply", _guard(api.apply), methods=["POST"]),
        Route(f"{GROUP_PREFIX}/{PLURAL}", _guard(api.list_all)),
        Route(f"{GROUP_PREFIX}/watch", _guard(api.watch)),
        Route(ENDPOINTS, _guard(api.list_endpoints)),
        Route(ENDPOINTS + "/{name}", _guard(api.get_endpoint)),
        Route(ENDPOINTS + "/{name}", _guard(api.delete_endpoint), methods=["DELETE"]),
        Route(ENDPOINTS + "/{name}/status", _guard(api.put_status), methods=["PUT"]),
        Route(ENDPOINTS + "/{name}/scale", _guard(api.put_scale), methods=["PUT"]),
        Route("/api/v1/namespaces/{namespace}/events", _guard(api.events)),
        Route("/api/v1/namespaces/{namespace}/pods", _guard(api.pods)),
    ]
    return Starlette(routes=routes)


def status_body(error: EbbtideError) -> tuple[int, dict[str, Any]]:
    """A domain error as a Kubernetes `Status` and its HTTP code."""
    code, reason = _code_and_reason(error)
    details = {"problems": error.problems} if isinstance(error, SpecError) else {}
    return code, {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": str(error),
        "reason": reason,
        "code": code,
        "details": details,
    }


def _code_and_reason(error: EbbtideError) -> tuple[int, str]:
    if isinstance(error, NotFoundError):
        return 404, "NotFound"
    if isinstance(error, AlreadyExistsError):
        return 409, "AlreadyExists"
    if isinstance(error, ConflictError):
        return 409, "Conflict"
    if isinstance(error, SelectorError):
        return 400, "BadRequest"
    if isinstance(error, SpecError):
        return 422, "Invalid"
    return 400, "BadRequest"


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except EbbtideError as error:
            code, body = status_body(error)
            return JSONResponse(body, status_code=code)

    return guarded


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"the request body is not valid JSON: {error}") from None


def _endpoint_key(request: Request) -> ObjectKey:
    return ObjectKey(KIND, request.path_params["namespace"], request.path_params["name"])


def _expected_version(manifest: dict[str, Any]) -> int | None:
    version = (manifest.get("metadata") or {}).get("resourceVersion")
    if version in (None, ""):
        return None
    try:
        return int(version)
    except (TypeError, ValueError):
        raise SpecError(f"metadata.resourceVersion {version!r} is not a version") from None


class _Api:
    def __init__(self, store: Store, workloads: Workloads) -> None:
        self.store = store
        self.workloads = workloads
        self.signal = ChangeSignal()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def apply(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SpecError('the apply body must be {"items": [...], "dryRun": false}')
        source = str(body.get("source") or "<request>")
        writes, problems, warnings = [], [], []
        for item in body["items"]:
            try:
                validated = validate_document(item, source)
            except SpecError as error:
                problems.extend(error.problems)
                continue
            endpoint = validated.endpoint
            warnings.extend(validated.warnings)
            writes.append(
                Write(
                    ObjectKey(KIND, endpoint.namespace, endpoint.name),
                    endpoint.manifest(),
                    _expected_version(item),
                )
            )
        if problems:
            raise SpecError(f"{source}: nothing was applied", problems)
        applied = self.store.apply(writes, dry_run=bool(body.get("dryRun")))
        results = [
            {
                "namespace": a.record.key.namespace,
                "name": a.record.key.name,
                "result": a.result.value,
                "object": a.record.to_object(),
            }
            for a in applied
        ]
        return JSONResponse({"results": results, "warnings": warnings})

    async def list_all(self, request: Request) -> Response:
        return self._list(None, request)

    async def list_endpoints(self, request: Request) -> Response:
        return self._list(request.path_params["namespace"], request)

    def _list(self, namespace: str | None, request: Request) -> Response:
        selector = Selector.parse(request.query_params.get("labelSelector"))
        records = self.store.list_objects(KIND, namespace, selector)
        return JSONResponse(
            {
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": str(self.store.latest_version())},
                "items": [r.to_object() for r in records],
            }
        )

    async def get_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.store.get(_endpoint_key(request)).to_object())

    async def delete_endpoint(self, request: Request) -> Response:
        record = self.store.delete(_endpoint_key(request))
        return JSONResponse(record.to_object())

    async def put_status(self, request: Request) -> Response:
        body = await _json_body(request)
        status = body.get("status") if isinstance(body, dict) else None
        try:
            checked = EndpointStatus.model_validate(status if status is not None else {})
        except ValidationError as error:
            raise SpecError(f"invalid status: {error.errors()[0]['msg']}") from None
        version = _expected_version(body) if isinstance(body, dict) else None
        record = self.store.update_status(
            _endpoint_key(request),
            checked.model_dump(by_alias=True, exclude_none=True, mode="json"),
            version,
        )
        return JSONResponse(record.to_object())

    async def put_scale(self, request: Request) -> Response:
        body = await _json_body(request)
        replicas = (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise SpecError('the scale body must be {"spec": {"replicas": N}} with N >= 0')
        key = _endpoint_key(request)
        self.store.get(key)
        self.workloads.scale(key, replicas)
        return JSONResponse({"kind": "Scale", "spec": {"replicas": replicas}})

    async def events(self, request: Request) -> Response:
        name = _involved_name(request.query_params.get("fieldSelector"))
        events = self.store.events(request.path_params["namespace"], name)
        return JSONResponse({"kind": "EventList", "items": [e.to_object() for e in events]})

    async def pods(self, request: Request) -> Response:
        selector = Selector.parse(request.query_params.get("labelSelector"))
        pods = self.workloads.pods(request.path_params["namespace"], selector)
        return JSONResponse({"kind": "PodList", "items": pods})

    async def watch(self, request: Request) -> Response:
        """Long poll: the changes after `resourceVersion`, waiting up to `timeoutSeconds`."""
        try:
            since = int(request.query_params.get("resourceVersion", "0"))
            timeout = min(float(request.query_params.get("timeoutSeconds", "30")), 60.0)
        except ValueError:
            raise SpecError("resourceVersion and timeoutSeconds must be numbers") from None
        changes = self.store.changes_since(since)
        if not changes and timeout > 0:
            waiter = asyncio.Event()
            self.signal.waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self.signal.waiters.discard(waiter)
            changes = self.store.changes_since(since)
        return JSONResponse(
            {
                "items": [
                    {
                        "type": c.type.value,
                        "resourceVersion": str(c.resource_version),
                        "object": {
                            "kind": c.key.kind,
                            "namespace": c.key.namespace,
                            "name": c.key.name,
                        },
                    }
                    for c in changes
                ]
            }
        )


def _change_object(change: Change) -> dict[str, Any]:
    key = change.key
    return {
        "type": change.type.value,
        "resourceVersion": str(change.resource_version),
        "object": {"kind": key.kind, "namespace": key.namespace, "name": key.name},
    }


def _involved_name(field_selector: str | None) -> str | None:
    for part in (field_selector or "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == "involvedObject.name":
            return value.strip()
    return None


def openapi_document() -> dict[str, Any]:
    """A short OpenAPI description of the API, with the resource's generated schema."""
    item = f"{ENDPOINTS}/{{name}}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "ebbtide control plane", "version": __version__},
        "components": {"schemas": {KIND: endpoint_json_schema()}},
        "paths": {
            "/healthz": {"get": {"summary": "Liveness of the control plane."}},
            "/metrics": {"get": {"summary": "The control plane's Prometheus metrics."}},
            f"{GROUP_PREFIX}/apply": {
                "post": {"summary": "Create or update endpoints: all items or none."}
            },
            f"{GROUP_PREFIX}/{PLURAL}": {"get": {"summary": "Endpoints in every namespace."}},
            f"{GROUP_PREFIX}/watch": {"get": {"summary": "Changes after a resourceVersion."}},
            ENDPOINTS: {"get": {"summary": "Endpoints in a namespace; labelSelector filters."}},
            item: {
                "get": {"summary": "One endpoint with its status."},
                "delete": {"summary": "Delete an endpoint; its replicas drain and stop."},
            },
            f"{item}/status": {"put": {"summary": "Replace an endpoint's status."}},
            f"{item}/scale": {"put": {"summary": "Set the replica count now."}},
            "/api/v1/namespaces/{namespace}/events": {"get": {"summary": "Events."}},
            "/api/v1/namespaces/{namespace}/pods": {"get": {"summary": "Replicas as pods."}},
        },
    }
