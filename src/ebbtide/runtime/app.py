"""The replica's HTTP app: Open Inference Protocol v2 and KServe v1 over one model.

A plain ASGI callable rather than a Starlette router: the inference path is a dictionary
lookup, one body read, decode, predict, encode, and the few microseconds a router and
middleware stack would add per request are a visible share of a fast model's latency.
Domain errors become `{"error": "..."}` with the status codes below; nothing here is fatal
to the process except a model that fails to load.

| error                  | status |
| ---------------------- | ------ |
| BadInputError          | 400    |
| NotFoundError          | 404    |
| PayloadTooLargeError   | 413    |
| ModelFailedError       | 500    |
| NotReadyError          | 503    |
| OverloadedError        | 503 with `Retry-After` |

Inference requests reach the model through a bounded queue in arrival order
(`ebbtide.runtime.admission`); a slow model call runs in one worker thread so that the loop
keeps reading requests meanwhile. One that arrives while the model is still loading is held
until it is loaded (`ServerSettings.load_wait_seconds`) rather than refused, as Knative's
queue-proxy holds requests for a container that is starting: the health endpoints say
not-ready meanwhile, and the request is answered the moment the model is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

from ebbtide import __version__
from ebbtide.core.clock import Clock
from ebbtide.core.errors import (
    BadInputError,
    EbbtideError,
    ModelFailedError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
)
from ebbtide.runtime import protocol
from ebbtide.runtime.admission import ModelQueue
from ebbtide.runtime.batching import AdaptiveBatcher, Arrival
from ebbtide.runtime.loaders.base import Arrays, Model
from ebbtide.runtime.metrics import ServerMetrics
from ebbtide.runtime.settings import ServerSettings
from ebbtide.runtime.timeline import StartTimeline

log = logging.getLogger("ebbtide.runtime")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"
INFERENCE_ROUTES = ("infer", "predict")


class HttpError(Exception):
    """A response other than 200 decided while routing (unknown path, wrong method)."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class ClientGoneError(Exception):
    """The client disconnected before its request body arrived."""


def status_of(error: BaseException) -> int:
    """The HTTP status of an error; the one place domain errors meet status codes."""
    if isinstance(error, HttpError):
        return error.status
    if isinstance(error, PayloadTooLargeError):
        return 413
    if isinstance(error, BadInputError):
        return 400
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, NotReadyError | OverloadedError):
        return 503
    return 500


class ModelServerApp:
    """Serves one model. `loaded` says whether `model.load()` already ran (a warm process)."""

    def __init__(
        self,
        model: Model,
        settings: ServerSettings,
        clock: Clock,
        metrics: ServerMetrics | None = None,
        on_fatal: Callable[[BaseException], None] = lambda error: None,
        timeline: StartTimeline | None = None,
    ) -> None:
        self.model = model
        self.name = model.location.name
        self.version = model.location.version
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or ServerMetrics(self.name, self.version)
        self.on_fatal = on_fatal
        self.timeline = timeline
        self.draining = False
        self.in_flight = 0
        self.load_error: BaseException | None = None
        self.batcher: AdaptiveBatcher | None = None
        # One call at a time for a native library's model (it computes on one core anyway); a
        # Python class's async predict keeps its own concurrency, counted against the bound.
        self.queue = ModelQueue(
            settings.max_queue, exclusive=model.blocking and settings.batching is None
        )
        self._worker: ThreadPoolExecutor | None = None
        self._load_ended = asyncio.Event()
        self._held = 0
        """Inference requests waiting for the model to finish loading."""
        self._tasks: list[asyncio.Task[None]] = []
        self._routes = self._exact_routes()

    @property
    def ready(self) -> bool:
        return self.model.ready and not self.draining

    def begin_drain(self) -> None:
        """Report not-ready from now on; requests already accepted (and new ones, until the
        listener closes) are still served."""
        self.draining = True
        self.metrics.set_ready(False)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if self.timeline is not None:
            self.timeline.mark("startup")
        batching = self.settings.batching
        if batching is not None:
            self.batcher = AdaptiveBatcher(
                self._call_model,
                batching.max_batch_size,
                batching.max_latency_ms / 1000,
                self.clock,
                self.metrics.record_batch,
            )
            self._tasks.append(asyncio.create_task(self.batcher.run()))
        if self.model.ready:
            self._became_ready()
        else:
            self._tasks.append(asyncio.create_task(self._load()))

    async def shutdown(self) -> None:
        self._load_ended.set()  # a request still held for a load that will never end: 503
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
        if self.model.ready:
            await self.model.unload()

    async def _load(self) -> None:
        started = self.clock.now()
        log.info("loading %s (%s) from %s", self.model.location.reference, self.model.format,
                 self.model.location.model_file)  # fmt: skip
        try:
            await self.model.load()
        except Exception as error:
            self.load_error = error
            self._load_ended.set()
            log.error("cannot serve %s: %s", self.model.location.reference, error)
            self.on_fatal(error)
            return
        self.metrics.set_load_seconds(self.clock.now() - started)
        self._became_ready()

    def _became_ready(self) -> None:
        if self.batcher is not None and not self.model.signature.batchable:
            log.warning(
                "batching is off: %s has a tensor without a variable first dimension (-1)",
                self.model.location.reference,
            )
            self.batcher = None
            self.queue.exclusive = self.model.blocking
        self._load_ended.set()
        if not self.draining:
            self.metrics.set_ready(True)
        # After the requests held for the load have been woken: the registry's import then
        # runs beside serving instead of before readiness.
        asyncio.get_running_loop().call_soon(self.metrics.build_in_background)
        if self.timeline is None:
            log.info("model %s is ready", self.model.location.reference)
            return
        self.timeline.mark("loaded")
        log.info(
            "model %s is ready %.2f s after the process began; %s",
            self.model.location.reference,
            self.timeline.seconds(),
            self.timeline.describe(),
        )

    # -- HTTP -------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight += 1
        started = self.clock.now()
        route = "other"
        try:
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                route, respond = handler
                status = await respond(scope, receive, send)
            else:
                route, status = await self._slow_path(scope, receive, send)
        except ClientGoneError:
            status = 499
        except Exception as error:
            status = await self._error(send, error)
        finally:
            self.in_flight -= 1
        inference = route in INFERENCE_ROUTES
        self.metrics.record(route, status, self.clock.now() - started if inference else None)

    async def _error(self, send: Send, error: BaseException) -> int:
        status = status_of(error)
        if status == 500 and not isinstance(error, EbbtideError | HttpError):
            log.exception("unexpected error", exc_info=error)
            message = f"internal error: {type(error).__name__}: {error}"
        else:
            message = str(error)
        headers = error.headers if isinstance(error, HttpError) else []
        if isinstance(error, OverloadedError) and error.retry_after_seconds is not None:
            headers = [(b"retry-after", b"%d" % error.retry_after_seconds)]
        await self._send(send, status, json.dumps({"error": message}).encode(), JSON, headers)
        return status

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if self.draining:
            headers.append((b"connection", b"close"))
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(self, send: Send, payload: Any, status: int = 200) -> int:
        await self._send(send, status, json.dumps(payload, separators=(",", ":")).encode())
        return status

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLargeError(
                    f"the request body is {int(value)} bytes; this server accepts at most "
                    f"{limit} (--max-body-bytes)"
                )
            if key == b"inference-header-content-length":
                raise BadInputError(
                    "binary tensor data is not supported; send JSON tensors "
                    "(tritonclient: binary_data=False)"
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGoneError()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"the request body exceeds {limit} bytes, the most this server accepts "
                    "(--max-body-bytes)"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- routes -----------------------------------------------------------------------------

    Handler = Callable[[Scope, Receive, Send], Awaitable[int]]

    def _exact_routes(self) -> dict[tuple[str, str], tuple[str, ModelServerApp.Handler]]:
        model = f"/v2/models/{self.name}"
        versioned = f"{model}/versions/{self.version}"
        return {
            ("POST", f"{model}/infer"): ("infer", self._infer_v2),
            ("POST", f"{versioned}/infer"): ("infer", self._infer_v2),
            ("POST", f"/v1/models/{self.name}:predict"): ("predict", self._predict_v1),
            ("GET", "/v2/health/live"): ("health", self._live),
            ("GET", "/v2/health/ready"): ("health", self._server_ready),
            ("GET", f"{model}/ready"): ("health", self._model_ready),
            ("GET", f"{versioned}/ready"): ("health", self._model_ready),
            ("GET", "/v2"): ("metadata", self._server_metadata),
            ("GET", model): ("metadata", self._model_metadata),
            ("GET", versioned): ("metadata", self._model_metadata),
            ("GET", "/v1/models"): ("metadata", self._v1_models),
            ("GET", f"/v1/models/{self.name}"): ("metadata", self._v1_model),
            ("GET", "/metrics"): ("metrics", self._metrics),
        }

    async def _slow_path(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        """Everything that is not an exact route: wrong methods, unknown models and versions."""
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        for candidate in ("GET", "POST"):
            if candidate != method and (candidate, path) in self._routes:
                raise HttpError(
                    405, f"{path} takes {candidate}, not {method}", [(b"allow", candidate.encode())]
                )
        if (method, path) in self._routes:  # a trailing slash
            route, handler = self._routes[(method, path)]
            return route, await handler(scope, receive, send)
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            self._check_model(
                parts[2], parts[4] if len(parts) >= 5 and parts[3] == "versions" else None
            )
        if parts[:2] == ["v1", "models"] and len(parts) == 3:
            self._check_model(parts[2].split(":")[0], None)
        raise HttpError(404, f"no route {method} {path}; see docs/model-server.md for the API")

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.name:
            raise NotFoundError(
                f"unknown model {name!r}; this server serves {self.name} (version {self.version})"
            )
        if version is not None and version != self.version:
            raise NotFoundError(
                f"unknown version {version!r} of model {name!r}; this server serves "
                f"version {self.version}"
            )

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._json(send, {"live": True})

    async def _server_ready(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._json(send, {"ready": self.ready}, 200 if self.ready else 503)

    async def _model_ready(self, scope: Scope, receive: Receive, send: Send) -> int:
        body = {"name": self.name, "version": self.version, "ready": self.ready}
        return await self._json(send, body, 200 if self.ready else 503)

    async def _server_metadata(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._json(
            send, {"name": "ebbtide", "version": __version__, "extensions": ["kserve_v1"]}
        )

    async def _model_metadata(self, scope: Scope, receive: Receive, send: Send) -> int:
        metadata = protocol.model_metadata(
            self.name,
            self.version,
            self.model.format,
            self.model.signature,
            self.model.location.metadata.description,
        )
        return await self._json(send, metadata)

    async def _v1_models(self, scope: Scope, receive: Receive, send: Send) -> int:
        return await self._json(send, {"models": [self.name]})

    async def _v1_model(self, scope: Scope, receive: Receive, send: Send) -> int:
        if not self.ready:
            raise NotReadyError(f"model {self.name} is not ready")
        return await self._json(send, {"name": self.name, "ready": True})

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> int:
        exposition, content_type = self.metrics.render()
        await self._send(send, 200, exposition, content_type.encode())
        return 200

    # -- inference --------------------------------------------------------------------------

    async def _infer_v2(self, scope: Scope, receive: Receive, send: Send) -> int:
        request, outputs = await self._run(scope, receive, protocol.parse_v2)
        response = protocol.v2_response(self.name, self.version, request.id, outputs)
        return await self._json(send, response)

    async def _predict_v1(self, scope: Scope, receive: Receive, send: Send) -> int:
        _, outputs = await self._run(scope, receive, protocol.parse_v1)
        return await self._json(send, protocol.v1_response(outputs))

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        parse: Callable[[bytes, Any, Sequence[str]], protocol.InferRequest],
    ) -> tuple[protocol.InferRequest, Arrays]:
        if not self.model.ready:
            await self._wait_for_load()
        self.metrics.request_started()
        batcher = self.batcher
        try:
            with batcher.arrival() if batcher is not None else nullcontext() as ticket:
                body = await self._body(scope, receive)
                request = parse(body, self.model.signature, self.model.default_outputs)
                async with self.queue.turn():
                    if batcher is not None:
                        assert isinstance(ticket, Arrival)
                        outputs = await batcher.submit(
                            request.inputs, request.outputs, request.parameters, ticket
                        )
                    else:
                        outputs = await self._call_model(
                            request.inputs, request.outputs, request.parameters
                        )
        finally:
            self.metrics.request_ended()
        return request, outputs

    async def _wait_for_load(self) -> None:
        """Hold a request that came while the model loads until it is loaded; else raise."""
        reference = self.model.location.reference
        wait = self.settings.load_wait_seconds
        if self.load_error is None and wait > 0:
            if self._held >= self.settings.max_queue:
                raise OverloadedError(
                    f"model {reference} is still loading and already holds --max-queue "
                    f"({self.settings.max_queue}) requests for it; retry shortly",
                    retry_after_seconds=1,
                )
            self._held += 1
            try:
                await asyncio.wait_for(self._load_ended.wait(), wait)
            except TimeoutError:
                pass
            finally:
                self._held -= 1
        if self.model.ready:
            return
        if self.load_error is not None:
            raise NotReadyError(str(self.load_error))  # "cannot load NAME:VERSION ...: why"
        waited = f" after {wait:g} s (--load-wait)" if wait > 0 else ""
        raise NotReadyError(
            f"model {reference} is not ready yet (still loading{waited}); retry shortly"
        )

    async def _call_model(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        started = self.clock.now()
        try:
            if self.model.blocking and self.queue.slow_calls:
                if self._worker is None:
                    self._worker = ThreadPoolExecutor(1, thread_name_prefix="model")
                return await asyncio.get_running_loop().run_in_executor(
                    self._worker, self.model.predict_now, inputs, outputs, parameters
                )
            return await self.model.predict(inputs, outputs, parameters)
        except EbbtideError:
            raise
        except Exception as error:
            log.warning("%s raised: %r", self.model.location.reference, error)
            raise ModelFailedError(
                f"model {self.model.location.reference} failed: {type(error).__name__}: {error}"
            ) from error
        finally:
            self.queue.record(self.clock.now() - started)
