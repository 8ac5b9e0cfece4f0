"""The gateway as a process of its own: a `Gateway` on a listening socket, fed routes over an
owner-only unix socket (`ebbtide.gateway.channel`) by whichever control plane is connected.

With no control plane connected it keeps serving the routes it was last given: the data plane
does not depend on the control plane being alive. Requests waiting at zero replicas are held
as usual (up to their hold timeout) and `demand` goes out again once a control plane connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.sockets import listen_owner_only
from ebbtide.gateway.channel import (
    PROTOCOL,
    REPORT_INTERVAL,
    SYNC_TIMEOUT,
    ChannelError,
    EndpointReport,
    RouteEntry,
    decode,
    encode,
    traffic_message,
)
from ebbtide.gateway.gateway import Gateway

log = logging.getLogger("ebbtide.gateway")


class GatewayService:
    """Serves one gateway worker's control channel until told to stop."""

    def __init__(
        self,
        gateway: Gateway,
        control: Path,
        worker: int = 0,
        clock: Clock = SYSTEM_CLOCK,
        report_interval: float = REPORT_INTERVAL,
        sync_timeout: float = SYNC_TIMEOUT,
    ) -> None:
        self.gateway = gateway
        self.control = control
        self.worker = worker
        self.clock = clock
        self.report_interval = report_interval
        self.stopped = asyncio.Event()
        self.synced = asyncio.Event()
        self.sync_timeout = sync_timeout
        self.grace = 5.0
        self._writer: asyncio.StreamWriter | None = None
        self._applied = 0
        self._listener: socket.socket | None = None
        self._pending_demand: set[tuple[str, str]] = set()
        self._readers: set[asyncio.Task[None]] = set()
        gateway.on_demand = self._demand

    async def serve(self, listener: socket.socket) -> None:
        """Serve HTTP on `listener` and the channel on `control` until a `stop` op or
        `stopped` is set; then finish in-flight requests (up to the grace) and return."""
        self._listener = listener
        channel = listen_owner_only(
            self.control,
            f"a gateway is already running on {self.control}; `ebbtide down` stops it",
        )
        channel.setblocking(False)
        tasks = [
            asyncio.create_task(self._accept(channel), name="gateway-channel"),
            asyncio.create_task(self._report(), name="gateway-reports"),
        ]
        try:
            # Accept HTTP only once a control plane has given every route (`synced`), so
            # that a restarted gateway answers no 404 for a route it was about to get;
            # meanwhile connections wait in the socket's queue.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.synced.wait(), self.sync_timeout)
            await self.gateway.start(sock=listener)
            log.info("gateway worker %d serving on %s:%d", self.worker, *self.gateway.address)
            await self.stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            channel.close()
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()
            await self.gateway.stop(grace=self.grace)
            if self._writer is not None:
                self._writer.close()

    # -- the channel --------------------------------------------------------------------

    async def _accept(self, channel: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(channel)
            try:
                self._greet(connection)
                reader, writer = await asyncio.open_unix_connection(sock=connection)
            except OSError as error:
                log.warning("a control plane connection failed at once: %s", error)
                connection.close()
                continue
            if self._writer is not None:
                log.info("a newer control plane connected; closing the older connection")
                self._writer.close()
            self._writer, self._applied = writer, 0
            log.info("control plane connected")
            reading = asyncio.create_task(self._read(reader, writer), name="gateway-channel")
            self._readers.add(reading)
            reading.add_done_callback(self._readers.discard)
            for namespace, endpoint in sorted(self._pending_demand):
                self._send({"event": "demand", "namespace": namespace, "endpoint": endpoint})

    def _greet(self, connection: socket.socket) -> None:
        """The hello line, with the listening socket attached: a control plane that restarts
        after this gateway was started holds it too, so a gateway restarted by it finds the
        port still bound and the connections that arrived meanwhile still queued."""
        assert self._listener is not None
        hello = {
            "event": "hello",
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "worker": self.worker,
            "address": list(self._listener.getsockname()[:2]),
            "routes": [self._entry(route).to_wire() for route in self.gateway.routes()],
        }
        connection.setblocking(True)
        try:
            socket.send_fds(connection, [encode(hello)], [self._listener.fileno()])
        finally:
            connection.setblocking(False)

    def _entry(self, route: Any) -> RouteEntry:
        return RouteEntry(route, tuple(self.gateway.upstreams(route.namespace, route.endpoint)))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if writer is not self._writer:
                    return  # replaced by a newer control plane
                try:
                    self._handle(decode(line))
                except ChannelError as error:
                    log.warning("dropped a channel line: %s", error)
                    self._send({"event": "error", "seq": None, "reason": str(error)})
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as error:
            log.warning("control channel broke: %s", error)
        finally:
            if writer is self._writer:
                self._writer = None
                log.info("control plane disconnected; serving the last routes it gave")
            writer.close()

    def _handle(self, message: dict[str, Any]) -> None:
        operation, seq = message.get("op"), message.get("seq")
        try:
            if operation == "set":
                entry = RouteEntry.from_wire(message.get("route") or {})
                self.gateway.set_upstreams(entry.route, entry.upstreams)
                self._pending_demand.discard(entry.route.key)
            elif operation == "remove":
                namespace, endpoint = str(message["namespace"]), str(message["endpoint"])
                self.gateway.remove_route(namespace, endpoint)
                self._pending_demand.discard((namespace, endpoint))
            elif operation == "synced":
                self.synced.set()
            elif operation == "stop":
                self.grace = float(message.get("grace", self.grace))
                self.stopped.set()
            else:
                raise ChannelError(f"unknown op {operation!r}; use set, remove, synced or stop")
        except (ChannelError, KeyError, ValueError) as error:
            self._send({"event": "error", "seq": seq, "reason": str(error)})
        if isinstance(seq, int):
            self._applied = seq
        self._send(traffic_message(self._applied, self._reports()))

    def _demand(self, namespace: str, endpoint: str) -> None:
        self._pending_demand.add((namespace, endpoint))
        self._send({"event": "demand", "namespace": namespace, "endpoint": endpoint})

    # -- traffic reports ----------------------------------------------------------------

    async def _report(self) -> None:
        while True:
            await self.clock.sleep(self.report_interval)
            self._send(traffic_message(self._applied, self._reports()))

    def _reports(self) -> list[EndpointReport]:
        return [
            EndpointReport.of(
                r.namespace, r.endpoint, self.gateway.traffic(r.namespace, r.endpoint)
            )
            for r in self.gateway.routes()
        ]

    def _send(self, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        transport = writer.transport
        if transport.get_write_buffer_size() > 1 << 20:
            return  # a control plane that does not read; its next report is as good
        writer.write(encode(message))
