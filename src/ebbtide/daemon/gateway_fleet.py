"""The gateway workers as the control plane runs them: adopted when they already run, started
when they do not, restarted the moment one dies, and fed routes over their channels.

Each worker is a `python -m ebbtide.gateway` process in a session of its own, so it outlives
the control plane. The control plane holds every worker's listening socket too (it created
it, or the worker handed it over in its hello), so a worker that dies leaves its port bound:
connections that arrive until its replacement runs wait in the socket's queue instead of
being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import EbbtideError
from ebbtide.core.processes import ProcessIdentity
from ebbtide.core.sockets import listen_tcp
from ebbtide.gateway.channel import (
    PROTOCOL,
    ChannelError,
    EndpointReport,
    RouteEntry,
    control_socket_name,
    decode,
    encode,
)
from ebbtide.store import Store

log = logging.getLogger("ebbtide.control_plane")

GATEWAY_ROLE = "gateway"
HELLO_LIMIT = 1 << 22


@dataclass(frozen=True)
class FleetSettings:
    """Where the gateway listens and how many workers share its port."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    start_timeout: float = 20.0
    connect_timeout: float = 2.0
    stop_timeout: float = 10.0
    retry_unanswered: bool = True


@dataclass
class WorkerLink:
    """One gateway worker: its process, its listening socket, its channel and its reports."""

    worker: int
    control: Path
    listener: socket.socket | None = None
    identity: ProcessIdentity | None = None
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    reports: dict[tuple[str, str], EndpointReport] = field(default_factory=dict)
    base: dict[tuple[str, str], EndpointReport] = field(default_factory=dict)
    """Counters of this worker's earlier processes, added to the current one's."""
    sent: int = 0
    applied: int = 0
    reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    def send(self, message: dict[str, Any]) -> None:
        if not self.connected:
            return
        assert self.writer is not None
        self.sent += 1
        self.writer.write(encode({**message, "seq": self.sent}))

    @property
    def confirmed(self) -> bool:
        """Whether the latest report reflects every op sent."""
        return self.applied >= self.sent


class GatewayFleet:
    """Every gateway worker of one state directory."""

    def __init__(
        self,
        home: Path,
        store: Store,
        settings: FleetSettings,
        logs: Path,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.home = home
        self.store = store
        self.settings = settings
        self.logs = logs
        self.clock = clock
        self.on_demand: Callable[[str, str], None] | None = None
        self.on_restart: Callable[[int, str], None] | None = None
        self.routes: dict[tuple[str, str], RouteEntry] = {}
        self.address: tuple[str, int] = (settings.host, settings.port)
        self.adopted = 0
        self._links = [
            WorkerLink(i, home / control_socket_name(i)) for i in range(settings.workers)
        ]
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()

    # -- start, adopt, restart ----------------------------------------------------------

    async def start(self) -> None:
        """Adopt the workers that answer on their channels; start the others."""
        for link in self._links:
            if await self._connect(link):
                self.adopted += 1
        known = [link for link in self._links if link.connected]
        if known:
            self.address = self._bound(known[0])
        for link in self._links:
            if not link.connected:
                await self._launch(link)
        wanted = {f"gateway-{link.worker}" for link in self._links}
        for name, record in self.store.processes(GATEWAY_ROLE).items():
            if name not in wanted:  # a worker beyond the count asked for now
                with contextlib.suppress(KeyError, ValueError):
                    ProcessIdentity.from_record(record).signal(signal.SIGTERM)
                self.store.forget_process(name)

    def _bound(self, link: WorkerLink) -> tuple[str, int]:
        assert link.listener is not None
        host, port = link.listener.getsockname()[:2]
        return str(host), int(port)

    async def _launch(self, link: WorkerLink) -> None:
        if link.listener is None:
            host, port = self.address
            try:
                link.listener = listen_tcp(host, port)
            except OSError as error:
                raise EbbtideError(
                    f"the gateway cannot listen on {host}:{port}: {error.strerror}; "
                    "choose another port with `ebbtide up --gateway-port N`"
                ) from None
            self.address = self._bound(link)
        command = [
            sys.executable,
            "-m",
            "ebbtide.gateway",
            "--control",
            str(link.control),
            "--listen-fd",
            str(link.listener.fileno()),
            "--worker",
            str(link.worker),
        ]
        if self.settings.retry_unanswered:
            command.append("--retry-unanswered")
        log_path = self.logs / f"gateway-{link.worker}.log"
        with log_path.open("ab") as output:
            link.process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(link.listener.fileno(),),
                start_new_session=True,  # outlives the control plane
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = self.clock.now() + self.settings.start_timeout
        while not await self._connect(link, owned=True):
            if link.process.returncode is not None:
                raise EbbtideError(
                    f"the gateway exited with code {link.process.returncode} at start; "
                    f"see {log_path}"
                )
            if self.clock.now() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    link.process.kill()
                raise EbbtideError(f"the gateway did not start within the timeout; see {log_path}")
            await self.clock.sleep(0.02)

    async def _connect(self, link: WorkerLink, owned: bool = False) -> bool:
        """Connect to the worker's channel and read its hello; False if nobody answers."""
        if not link.control.exists():
            return False
        try:
            connection, hello, fds = await asyncio.to_thread(
                _handshake, link.control, self.settings.connect_timeout
            )
        except (OSError, ChannelError) as error:
            if not owned:
                log.info("no gateway answers on %s (%s): starting one", link.control, error)
            return False
        for fd in fds:
            if link.listener is None:
                link.listener = socket.socket(fileno=fd)
            else:
                os.close(fd)  # the same socket we hold already
        link.identity = ProcessIdentity.of(int(hello["pid"]))
        self.store.record_process(
            f"gateway-{link.worker}",
            GATEWAY_ROLE,
            {**link.identity.to_record(), "worker": link.worker, "control": str(link.control)},
        )
        previous = link.reports
        for key, report in previous.items():
            link.base[key] = _added(link.base.get(key), report.counters_only())
        link.reports, link.sent, link.applied = {}, 0, 0
        reader, writer = await asyncio.open_unix_connection(sock=connection, limit=HELLO_LIMIT)
        link.writer = writer
        for wire in hello.get("routes", []):
            entry = RouteEntry.from_wire(wire)
            self.routes.setdefault(entry.route.key, entry)
        for entry in self.routes.values():
            link.send({"op": "set", "route": entry.to_wire()})
        link.send({"op": "synced"})
        link.reader = asyncio.create_task(self._read(link, reader), name=f"gateway {link.worker}")
        return True

    async def _read(self, link: WorkerLink, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    self._dispatch(link, decode(line))
                except ChannelError as error:
                    log.warning("gateway %d sent a bad line: %s", link.worker, error)
        except (ConnectionError, ValueError) as error:
            log.warning("the channel to gateway %d broke: %s", link.worker, error)
        finally:
            if link.writer is not None:
                link.writer.close()
                link.writer = None
            if not self._closing:
                restart = asyncio.create_task(self._restart(link))
                self._restarts.add(restart)
                restart.add_done_callback(self._restarts.discard)

    def _dispatch(self, link: WorkerLink, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "traffic":
            link.reports = {
                (r.namespace, r.endpoint): r
                for r in map(EndpointReport.from_wire, message.get("endpoints", []))
            }
            link.applied = int(message.get("applied", 0))
        elif event == "demand" and self.on_demand is not None:
            self.on_demand(str(message["namespace"]), str(message["endpoint"]))
        elif event == "error":
            log.warning("gateway %d refused op %s: %s", link.worker, message.get("seq"), message)

    async def _restart(self, link: WorkerLink) -> None:
        """The worker's channel closed: the worker died (or was killed). Start another on the
        same listening socket, and give it every route."""
        identity = link.identity
        if identity is not None and identity.alive() and await self._connect(link, owned=True):
            return  # the channel broke, the worker did not
        reason = "its channel closed"
        if link.process is not None:
            with contextlib.suppress(ProcessLookupError):
                link.process.kill()
            code = await link.process.wait()
            reason = f"it exited with code {code}" if code >= 0 else f"killed by signal {-code}"
        elif identity is not None:
            identity.signal(signal.SIGKILL)
            identity.reap()
        log.warning(
            "gateway worker %d (pid %s) is gone: %s; restarting it",
            link.worker,
            identity.pid if identity else "?",
            reason,
        )
        began = self.clock.now()
        try:
            await self._launch(link)
        except EbbtideError as error:
            log.error("gateway worker %d could not be restarted: %s", link.worker, error)
            return
        took = self.clock.now() - began
        log.warning("gateway worker %d restarted in %.2f s", link.worker, took)
        if self.on_restart is not None:
            self.on_restart(link.worker, f"{reason}; restarted in {took:.2f} s")

    # -- what the controller needs ------------------------------------------------------

    def publish(self, entry: RouteEntry) -> None:
        if self.routes.get(entry.route.key) == entry:
            return
        self.routes[entry.route.key] = entry
        for link in self._links:
            link.send({"op": "set", "route": entry.to_wire()})

    def withdraw(self, key: tuple[str, str]) -> None:
        if self.routes.pop(key, None) is None:
            return
        namespace, endpoint = key
        for link in self._links:
            link.send({"op": "remove", "namespace": namespace, "endpoint": endpoint})

    def in_flight(self, key: tuple[str, str], upstream: str) -> int:
        """Requests one replica has in flight through any worker. A worker that has not yet
        reported after the latest route change might still send it one, so it counts as
        busy until it has."""
        total = 0
        for link in self._links:
            if not link.connected:
                continue
            report = link.reports.get(key)
            count = report.upstream_in_flight.get(upstream, 0) if report else 0
            total += count if link.confirmed else max(count, 1)
        return total

    def traffic(self, key: tuple[str, str]) -> EndpointReport | None:
        """The endpoint's counters summed over workers (and their earlier processes)."""
        found = [
            part
            for link in self._links
            for part in (link.base.get(key), link.reports.get(key))
            if part is not None
        ]
        if not found:
            return None
        total = found[0]
        for part in found[1:]:
            total = _added(total, part)
        return total

    def workers(self) -> list[ProcessIdentity]:
        return [link.identity for link in self._links if link.identity is not None]

    # -- stop -----------------------------------------------------------------------------

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every worker (`ebbtide down`): in-flight requests finish within `grace`."""
        self._closing = True
        for link in self._links:
            link.send({"op": "stop", "grace": grace})
        for link in self._links:
            await self._until_gone(link, grace + self.settings.stop_timeout)
            self.store.forget_process(f"gateway-{link.worker}")
        self._close_links()

    async def release(self) -> None:
        """Leave every worker running (a hand-over to the next control plane)."""
        self._closing = True
        self._close_links()

    async def _until_gone(self, link: WorkerLink, timeout: float) -> None:
        if link.process is not None:
            try:
                await asyncio.wait_for(link.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    link.process.kill()
                await link.process.wait()
            return
        identity = link.identity
        if identity is None:
            return
        deadline = self.clock.now() + timeout
        while identity.alive() and self.clock.now() < deadline:
            await self.clock.sleep(0.02)
        identity.signal(signal.SIGKILL)
        identity.reap()

    def _close_links(self) -> None:
        for task in self._restarts:
            task.cancel()
        for link in self._links:
            if link.writer is not None:
                link.writer.close()
            if link.reader is not None:
                link.reader.cancel()
            if link.listener is not None:
                link.listener.close()
                link.listener = None


def _handshake(path: Path, timeout: float) -> tuple[socket.socket, dict[str, Any], list[int]]:
    """Connect and read the hello line with the listening socket it carries (blocking: run
    in a thread)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    fds: list[int] = []
    try:
        connection.connect(str(path))
        data = b""
        while b"\n" not in data:
            chunk, received, _, _ = socket.recv_fds(connection, 1 << 16, 4)
            fds += received
            if not chunk:
                raise ChannelError("the gateway closed the channel before its hello")
            data += chunk
            if len(data) > HELLO_LIMIT:
                raise ChannelError("the gateway's hello is too long")
        line, rest = data.split(b"\n", 1)
        if rest:
            raise ChannelError("the gateway sent more than its hello before being asked")
        hello = decode(line)
        if hello.get("event") != "hello" or hello.get("protocol") != PROTOCOL:
            raise ChannelError(f"not a hello of protocol {PROTOCOL}: {hello!r}")
    except BaseException:
        connection.close()
        for fd in fds:
            os.close(fd)
        raise
    connection.setblocking(False)
    return connection, hello, fds


def _added(earlier: EndpointReport | None, later: EndpointReport) -> EndpointReport:
    return later if earlier is None else earlier.plus(later)
