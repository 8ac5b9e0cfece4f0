"""The client side of the gateway: one connection, its requests in order, their answers.

Requests are read whole (so one can be retried on another replica) and handled one at a time
per connection, in order, as HTTP/1.1 pipelining requires. Answers are written as they come;
when the client reads slower than the replica writes, reading from the replica pauses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from ebbtide.gateway.http1 import (
    CRLF,
    LAST_CHUNK,
    RESPONSE_DROP,
    MalformedMessageError,
    Parser,
    RequestHead,
    ResponseHead,
    Signal,
    chunk,
    forwarded_headers,
    simple_response,
)
from ebbtide.gateway.upstream import UpstreamConnection

log = logging.getLogger("ebbtide.gateway")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_PIPELINED = 16
CLIENT_GONE = 499  # nginx's status for a request whose client left before its answer


@dataclass(slots=True)
class Request:
    """A whole request as received."""

    head: RequestHead
    body: bytes


Handler = Callable[["ClientConnection", Request], Coroutine[Any, Any, None]]


def error_body(message: str) -> bytes:
    """The JSON body of every error the gateway answers itself."""
    return json.dumps({"error": message}).encode()


class ClientConnection(asyncio.Protocol):
    """One client's connection: parse requests, run `handler` on each in turn, relay answers."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_head_bytes: int,
        max_request_bytes: int,
        on_close: Callable[[ClientConnection], None],
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.response_status: int | None = None
        self._handler = handler
        self._on_close = on_close
        self._max_body = max_request_bytes
        self._parser = Parser(requests=True, max_head_bytes=max_head_bytes)
        self._head: RequestHead | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._pending: deque[Request | MalformedMessageError] = deque()
        self._current: Request | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = True
        self._lost = False
        self._out: list[bytes] = []
        self._chunked = False
        self._response_done = False
        self._answered = False
        self._keep_alive = True
        self._upstream: UpstreamConnection | None = None
        self._write_paused = False

    @property
    def busy(self) -> bool:
        return self._task is not None or bool(self._pending)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        while self._reading:
            try:
                event = parser.next_event()
            except MalformedMessageError as error:
                self._stop_reading_with(error)
                return
            if event is Signal.NEED_DATA:
                break
            if type(event) is bytes:
                self._body_size += len(event)
                if self._body_size > self._max_body:
                    self._stop_reading_with(self._too_large())
                    return
                self._body.append(event)
            elif event is Signal.END:
                head = self._head
                assert head is not None
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._head, self._body, self._body_size = None, [], 0
                self._enqueue(Request(head, body))
            elif isinstance(event, RequestHead):
                self._begin(event)
        if len(self._pending) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()

    def _begin(self, head: RequestHead) -> None:
        if head.content_length is not None and head.content_length > self._max_body:
            self._stop_reading_with(self._too_large())
            return
        self._head = head
        idle = self._task is None and not self._pending
        if head.expect_continue and head.has_body and idle and self.transport is not None:
            self.transport.write(CONTINUE)

    def _too_large(self) -> MalformedMessageError:
        return MalformedMessageError(
            f"the request body is larger than the gateway's limit of {self._max_body} bytes", 413
        )

    def _stop_reading_with(self, error: MalformedMessageError) -> None:
        self._reading = False
        if self.transport is not None:
            self.transport.pause_reading()
        self._enqueue(error)

    def eof_received(self) -> bool:
        # As nginx does: a client that stops sending has given up on its answer (a client
        # half-closing after a request and still reading is rare; a timed-out one is not).
        # Returning False closes the connection, which cancels the request in progress.
        return False

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._upstream is not None:
            self._upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._pending.clear()
        # A request whose whole answer is already written is not cancelled: its handler only
        # has its books left to close (the status, the replica's connection back to the pool).
        if self._task is not None and not self._answered:
            self._task.cancel()
        self._on_close(self)

    def status_seen(self, status: int) -> int:
        """What the client of the current request saw, given the status its handler ended with.

        The status of the answer if it was written whole to a live connection; 499 if the
        client left before that; else `status` (an answer cut short by a failing replica).
        Counted this way, metrics match what clients received whatever order the handler,
        the replica and the client finish in.
        """
        if self._answered and self.response_status is not None:
            return self.response_status
        if self._lost:
            return CLIENT_GONE
        return status

    # the requests, one at a time

    def _enqueue(self, item: Request | MalformedMessageError) -> None:
        self._pending.append(item)
        if self._task is None:
            self._next()

    def _next(self) -> None:
        if self._lost or self.transport is None:
            return
        if not self._pending:
            if self.closing:
                self.transport.close()
            return
        item = self._pending.popleft()
        if isinstance(item, MalformedMessageError):
            self.transport.write(
                simple_response(item.status, error_body(str(item)), keep_alive=False)
            )
            self.transport.close()
            return
        if self._reading and len(self._pending) < MAX_PIPELINED:
            self.transport.resume_reading()
        self._current = item
        self.response_status = None
        self._response_done = False
        self._answered = False
        self._chunked = False
        self._keep_alive = item.head.keep_alive and not self.closing
        self._task = asyncio.get_running_loop().create_task(self._handler(self, item))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._task = None
        self._current = None
        if self._lost or self.transport is None or task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            log.error("the gateway failed on a request", exc_info=failure)
            if self.response_status is None:
                self.respond_error(500, f"the gateway failed: {type(failure).__name__}")
        if not self._response_done or not self._keep_alive or self.closing:
            self.transport.close()
            return
        self._next()

    def shut_down(self) -> None:
        """Finish the request in progress, then close; close now if idle."""
        self.closing = True
        if not self.busy and self.transport is not None and not self._lost:
            self.transport.close()

    # answers the gateway writes itself

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = b"application/json",
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.response_status = status
        self._response_done = True
        if self._lost or self.transport is None:
            return
        self._answered = True
        self.transport.write(
            simple_response(
                status,
                body,
                content_type=content_type,
                keep_alive=self._keep_alive and not self.closing,
                extra_headers=extra_headers,
            )
        )

    def respond_error(self, status: int, message: str, retry_after: int | None = None) -> None:
        extra = ((b"retry-after", b"%d" % retry_after),) if retry_after is not None else ()
        self.respond(status, error_body(message), extra_headers=extra)

    def abort(self) -> None:
        """Cut the connection: an answer already begun cannot be turned into an error."""
        self._keep_alive = False
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # relaying a replica's answer (the ResponseSink protocol)

    def attach(self, upstream: UpstreamConnection) -> None:
        self._upstream = upstream
        if self._write_paused:
            upstream.pause_reading()

    def detach(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None and self._write_paused:
            upstream.resume_reading()

    def response_head(self, head: ResponseHead) -> None:
        request = self._current
        assert request is not None
        self.response_status = head.status
        http10 = request.head.http10
        lines = [
            b"HTTP/1.1 %d %b\r\n" % (head.status, head.reason),
            forwarded_headers(head.headers, RESPONSE_DROP, head.connection_tokens),
        ]
        if not head.has_length:
            if http10:
                self._keep_alive = False  # an HTTP/1.0 client reads the body until close
            else:
                self._chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        if not self._keep_alive or self.closing:
            lines.append(b"connection: close\r\n")
        elif http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(CRLF)
        self._out.append(b"".join(lines))

    def response_data(self, data: bytes) -> None:
        self._out.append(chunk(data) if self._chunked else data)

    def response_end(self) -> None:
        if self._chunked:
            self._out.append(LAST_CHUNK)
        self._response_done = True

    def flush(self) -> None:
        out = self._out
        if not out:
            return
        if not self._lost and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            self._answered = self._response_done
        out.clear()
