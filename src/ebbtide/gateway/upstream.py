"""Keep-alive connections to one replica, and one request-response exchange on one of them.

A connection carries one exchange at a time. Response bytes go straight from the socket
callback to a `ResponseSink` (the client's connection) without waking a coroutine, so a small
answer is relayed in the same event-loop turn it arrives in.

Network timeouts here (connect, answer) run on the event loop's timer: they guard real
sockets, which a fake clock cannot speed up. Decisions (queue and hold timeouts) use the
gateway's injected clock instead.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from ebbtide.gateway.http1 import MalformedMessageError, Parser, ResponseHead, Signal
from ebbtide.gateway.routes import TCPAddress, UnixAddress


class ResponseSink(Protocol):
    """Where a replica's answer goes, as it arrives."""

    def response_head(self, head: ResponseHead) -> None: ...

    def response_data(self, data: bytes) -> None: ...

    def response_end(self) -> None: ...

    def flush(self) -> None:
        """Write what the calls above produced (once per socket read, to save syscalls)."""
        ...


class ConnectFailedError(Exception):
    """The replica did not accept a connection: the request never reached it."""


class UpstreamClosedError(Exception):
    """The replica closed the connection before the end of its answer."""

    def __init__(self, answered: bool) -> None:
        super().__init__(
            "the replica closed the connection "
            + ("in the middle of its answer" if answered else "before answering")
        )
        self.answered = answered


class UpstreamTimeoutError(Exception):
    """The replica took longer than the upstream timeout to answer."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a replica."""

    def __init__(self, max_head_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.answered = False
        self._parser = Parser(requests=False, max_head_bytes=max_head_bytes)
        self._sink: ResponseSink | None = None
        self._done: asyncio.Future[bool] | None = None
        self._keep_alive = False
        self._interim = False

    def send(self, data: bytes, method: bytes, sink: ResponseSink) -> asyncio.Future[bool]:
        """Write one request; the future tells, at the answer's end, if this can be reused."""
        assert self.transport is not None
        assert self._done is None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._parser.expect_response_to(method)
        self._sink, self._done, self.answered = sink, done, False
        self.transport.write(data)
        return done

    def time_out(self) -> None:
        """Give up on the exchange in progress."""
        self._fail(UpstreamTimeoutError("the replica did not answer in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:  # bytes nobody asked for: this connection can no longer be trusted
            self.abort()
            return
        self.answered = True
        parser = self._parser
        parser.feed(data)
        try:
            while True:
                event = parser.next_event()
                if event is Signal.NEED_DATA:
                    break
                if type(event) is bytes:
                    sink.response_data(event)
                elif event is Signal.END:
                    if self._interim:  # the end of a 1xx answer; the real one follows
                        self._interim = False
                        continue
                    sink.response_end()
                    self._finish(self._keep_alive and parser.idle)
                    break
                elif isinstance(event, ResponseHead):
                    if event.status < 200:  # 100 Continue, 103 Early Hints: not forwarded
                        self._interim = True
                        continue
                    self._keep_alive = event.keep_alive
                    sink.response_head(event)
        except MalformedMessageError as error:
            self._fail(error)
        sink.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink = self._sink
        if sink is None:
            return
        if self._parser.reading_until_close:
            self._parser.feed_eof()
            sink.response_end()
            sink.flush()
            self._finish(False)
        else:
            self._fail(UpstreamClosedError(self.answered))

    def _finish(self, reusable: bool) -> None:
        done = self._done
        self._sink = self._done = None
        if done is not None and not done.done():
            done.set_result(reusable)

    def _fail(self, error: Exception) -> None:
        done = self._done
        self._sink = self._done = None
        self.abort()
        if done is not None and not done.done():
            done.set_exception(error)


class UpstreamPool:
    """Idle keep-alive connections to one replica, most recently used first."""

    def __init__(
        self,
        address: TCPAddress | UnixAddress,
        *,
        connect_timeout: float,
        idle_timeout: float,
        max_head_bytes: int,
    ) -> None:
        self.address = address
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_head = max_head_bytes
        self._idle: list[UpstreamConnection] = []
        self._closed = False

    def take_idle(self, now: float) -> UpstreamConnection | None:
        """A live connection idle for less than the idle timeout, if there is one."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_timeout:
                return connection
            connection.close()
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection; `ConnectFailedError` if the replica does not accept one."""
        loop = asyncio.get_running_loop()
        address = self.address
        try:
            async with asyncio.timeout(self._connect_timeout):
                if isinstance(address, str):
                    _, protocol = await loop.create_unix_connection(self._new, address)
                else:
                    _, protocol = await loop.create_connection(self._new, *address)
        except TimeoutError:
            raise ConnectFailedError(f"no connection within {self._connect_timeout:g} s") from None
        except OSError as error:
            raise ConnectFailedError(error.strerror or str(error)) from error
        return protocol

    def _new(self) -> UpstreamConnection:
        return UpstreamConnection(self._max_head)

    def give_back(self, connection: UpstreamConnection, reusable: bool, now: float) -> None:
        if reusable and not self._closed and not connection.closed:
            connection.idle_since = now
            self._idle.append(connection)
        else:
            connection.close()

    def expire(self, now: float) -> None:
        """Close connections idle for longer than the idle timeout (oldest are first)."""
        while self._idle and (
            self._idle[0].closed or now - self._idle[0].idle_since >= self._idle_timeout
        ):
            self._idle.pop(0).close()

    def close(self) -> None:
        """Close the idle connections; busy ones close when given back."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
