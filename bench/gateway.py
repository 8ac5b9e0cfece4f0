"""Gateway overhead: added latency (p50/p99) over calling a replica directly, and throughput.

    .venv/bin/python bench/gateway.py [--requests 3000] [--seconds 3] [--concurrency 32]
                                      [--baseline DIR]

Starts, as separate processes, a minimal replica (uvicorn + Starlette answering a fixed Open
Inference Protocol v2 response) and the gateway in front of it (on uvloop when installed,
and again on the standard asyncio loop). A lean keep-alive client in this process then
measures, side by side in one run:

- latency at concurrency 1, direct and through the gateway, in interleaved rounds so that
  drift on a shared machine hits both alike; "added" is the difference of the percentiles;
- requests per second at `--concurrency` connections for `--seconds`, direct and through
  the gateway (closed loop: each connection sends its next request when answered), in
  interleaved rounds as well, reported as the median round.

It ends with what parsing one typical request costs the gateway's HTTP parser (best of
7 x 20,000 on a keep-alive connection, in a fresh process).

`--baseline DIR` adds gateways run from another source tree (DIR/src, say an older commit
unpacked with `git archive`), measured in the same rounds by the same client, so that a
change to the gateway is compared with what it replaces on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.gateway import Gateway, Route, Upstream
from ebbtide.gateway.http1 import Parser, Signal

REQUEST_BODY = json.dumps(
    {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
).encode()
RESPONSE = {
    "model_name": "bench",
    "model_version": "v1",
    "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [0]}],
}


ROUNDS = 10
"""Latency and throughput are measured in this many rounds, the paths taking turns."""


def build_request(path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(REQUEST_BODY)}\r\n\r\n"
    ).encode() + REQUEST_BODY


# the processes under test


def serve_upstream(fd: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route as Path_

    async def infer(request: Request) -> Response:
        await request.body()
        return JSONResponse(RESPONSE)

    app = Starlette(routes=[Path_("/v2/models/{model}/infer", infer, methods=["POST"])])
    # not uvicorn's fd=: it takes the socket for AF_UNIX and so never sets TCP_NODELAY
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[socket.socket(fileno=fd)])


def serve_gateway(fd: int, upstream: str, loop_kind: str) -> None:
    async def run() -> None:
        gateway = Gateway(rng=random.Random(1))
        gateway.set_upstreams(Route("default", "bench", "bench", "v1"), [Upstream("u", upstream)])
        listener = socket.socket(fileno=fd)
        await gateway.start(sock=listener)
        await asyncio.Event().wait()

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())


# the client


class Connection:
    """One keep-alive connection that sends a fixed request and reads whole answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser(requests=False)

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> int:
        self.writer.write(request)
        self.parser.expect_response_to(b"POST")
        status = 0
        while True:
            event = self.parser.next_event()
            if event is Signal.NEED_DATA:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed")
                self.parser.feed(data)
            elif event is Signal.END:
                return status
            elif not isinstance(event, bytes):
                status = getattr(event, "status", 0)

    def close(self) -> None:
        self.writer.close()


async def latencies(port: int, request: bytes, count: int) -> list[float]:
    connection = await Connection.open(port)
    try:
        for _ in range(50):  # warm up
            await connection.call(request)
        samples = []
        for _ in range(count):
            began = SYSTEM_CLOCK.now()
            status = await connection.call(request)
            samples.append(SYSTEM_CLOCK.now() - began)
            assert status == 200, status
        return samples
    finally:
        connection.close()


async def throughput(port: int, request: bytes, connections: int, seconds: float) -> float:
    opened = [await Connection.open(port) for _ in range(connections)]
    done = 0
    stop_at = SYSTEM_CLOCK.now() + seconds

    async def loop(connection: Connection) -> None:
        nonlocal done
        while SYSTEM_CLOCK.now() < stop_at:
            assert await connection.call(request) == 200
            done += 1

    began = SYSTEM_CLOCK.now()
    await asyncio.gather(*(loop(c) for c in opened))
    elapsed = SYSTEM_CLOCK.now() - began
    for connection in opened:
        connection.close()
    return done / elapsed


def percentile(samples: Sequence[float], percent: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(percent / 100 * len(ordered)))]


def parse_cost() -> float:
    """Seconds to parse one typical inference request on a keep-alive connection."""
    import timeit

    raw = (
        b"POST /endpoints/bench/v2/models/bench/infer HTTP/1.1\r\nHost: localhost:8080\r\n"
        b"User-Agent: python-httpx/0.27.0\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
        b"Connection: keep-alive\r\nContent-Type: application/json\r\nX-Request-Id: 1234\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(REQUEST_BODY), REQUEST_BODY)
    )
    parser = Parser(requests=True)

    def parse() -> None:
        parser.feed(raw)
        while parser.next_event() is not Signal.NEED_DATA:
            pass

    count = 20000
    return min(timeit.repeat(parse, number=count, repeat=7)) / count


def parse_costs(args: argparse.Namespace) -> dict[str, float]:
    """The parse cost of this tree and of the baseline's, each in a fresh process, in turns."""
    trees: list[tuple[str, Path | None]] = [("gateway", None)]
    if args.baseline is not None:
        trees.append(("baseline gateway", Path(args.baseline).resolve()))
    costs: dict[str, list[float]] = {name: [] for name, _ in trees}
    for _ in range(3):
        for name, source in trees:
            env = None
            if source is not None:
                env = {**os.environ, "PYTHONPATH": str(source / "src")}
            command = [sys.executable, str(Path(__file__).resolve()), "--parse-cost"]
            output = subprocess.run(command, env=env, capture_output=True, check=True, text=True)
            costs[name].append(float(output.stdout))
    return {name: min(values) for name, values in costs.items()}


# orchestration


def listening_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    return listener


def spawn(
    args: list[str], listener: socket.socket, source: Path | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    command += ["--fd", str(listener.fileno())]
    env = None
    if source is not None:  # ebbtide from that tree, ahead of the installed one
        env = {**os.environ, "PYTHONPATH": str(source / "src")}
    # Each server in its own session, as ebbtide runs its gateway and replicas: with the kernel's
    # autogroup scheduling a session is a CPU group, and a server left in the benchmark's
    # session would share the client's group and its share of the cores.
    return subprocess.Popen(command, pass_fds=(listener.fileno(),), env=env, start_new_session=True)


async def wait_answering(port: int, request: bytes) -> None:
    for _ in range(500):
        try:
            connection = await Connection.open(port)
            try:
                if await connection.call(request) == 200:
                    return
            finally:
                connection.close()
        except (ConnectionError, OSError):
            pass
        await SYSTEM_CLOCK.sleep(0.02)
    raise RuntimeError(f"nothing answers on port {port}")


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    path = "/v2/models/bench/infer"
    direct_request = build_request(path)
    routed_request = build_request("/endpoints/bench" + path)
    processes: list[subprocess.Popen[bytes]] = []
    listeners: list[socket.socket] = []
    try:
        upstream_listener = listening_socket()
        listeners.append(upstream_listener)
        processes.append(spawn(["--serve-upstream"], upstream_listener))
        upstream_port = upstream_listener.getsockname()[1]
        targets: dict[str, tuple[int, bytes]] = {"direct": (upstream_port, direct_request)}
        loops = ["uvloop", "asyncio"] if _has("uvloop") else ["asyncio"]
        trees: list[tuple[str, Path | None]] = [("", None)]
        if args.baseline is not None:
            trees.append(("baseline ", Path(args.baseline).resolve()))
        for loop_kind in loops:
            for label, source in trees:
                listener = listening_socket()
                listeners.append(listener)
                processes.append(
                    spawn(
                        [
                            "--serve-gateway",
                            "--upstream",
                            f"127.0.0.1:{upstream_port}",
                            "--loop",
                            loop_kind,
                        ],
                        listener,
                        source,
                    )
                )
                name = f"{label}gateway ({loop_kind})"
                targets[name] = (listener.getsockname()[1], routed_request)
        for port, request in targets.values():
            await wait_answering(port, request)

        samples: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, (port, request) in targets.items():
                samples[name] += await latencies(port, request, args.requests // ROUNDS)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        order = list(targets)
        for _ in range(ROUNDS):
            for name in order:
                port, request = targets[name]
                seconds = args.seconds / ROUNDS
                rates[name].append(await throughput(port, request, args.concurrency, seconds))
            order = order[1:] + order[:1]  # no path always runs first, or after the same one
        return [
            (
                name,
                percentile(samples[name], 50),
                percentile(samples[name], 99),
                percentile(rates[name], 50),
            )
            for name in targets
        ]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for listener in listeners:
            listener.close()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def report(rows: list[tuple[str, float, float, float]], args: argparse.Namespace) -> None:
    direct_p50, direct_p99 = rows[0][1], rows[0][2]
    print(
        f"{args.requests} requests at concurrency 1 ({ROUNDS} interleaved rounds); "
        f"throughput at {args.concurrency} connections for {args.seconds:g} s "
        f"(median of {ROUNDS} interleaved rounds); "
        f"{os.cpu_count()} cores shared by client, gateway and replica"
    )
    print(f"{'path':<29}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}{'req/s':>9}")
    for name, p50, p99, rate in rows:
        added50 = "" if name == "direct" else f"{(p50 - direct_p50) * 1000:.3f}"
        added99 = "" if name == "direct" else f"{(p99 - direct_p99) * 1000:.3f}"
        print(
            f"{name:<29}{p50 * 1000:>9.3f}{p99 * 1000:>9.3f}{added50:>11}{added99:>11}{rate:>9.0f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--baseline", metavar="DIR", help="also run the gateway from the source tree DIR/src"
    )
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parse-cost", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.serve_upstream:
        serve_upstream(args.fd)
    elif args.serve_gateway:
        serve_gateway(args.fd, args.upstream, args.loop)
    elif args.parse_cost:
        print(parse_cost())
    else:
        if _has("uvloop"):
            import uvloop

            report(uvloop.run(measure(args)), args)
        else:
            report(asyncio.run(measure(args)), args)
        for name, cost in parse_costs(args).items():
            print(f"{name}: parsing a typical request costs {cost * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
