"""One replica past its capacity: latency spread, throughput and shedding at saturation.

The heavy sample (a 100-tree random forest, several ms of CPU per row) behind one server,
driven by a closed-loop client at 32 keep-alive connections (one single-row request at a
time per connection), far more than one core serves. A fair server keeps p99 near p50: each
request waits about its turn (the requests ahead of it times one call). Arms, each a separate
process with one BLAS thread, started together and measured in alternating rounds:

- plain: `bench/servers/plain.py` (Starlette + uvicorn, the same model file);
- ebbtide: `python -m ebbtide.runtime`;
- ebbtide before: the same from another source tree (`--before-src DIR`, e.g. a checkout of
  an older commit's `src/`), to compare against today (`--other-src LABEL=DIR` adds more);
- kserve: `bench/servers/kserve.py` run by another environment's interpreter
  (`--kserve-python PATH`); KServe is no dependency of the project.

Besides latency percentiles (which move with the shared machine's slow spells as much as
with the server), each arm reports how many requests were overtaken: answered after a request
sent at least 2 ms later on another connection. A server that serves in arrival order
overtakes none, however slow the machine.

Run: `.venv/bin/python bench/overload.py [--seconds 30] [--rounds 6] [--connections 32]
[--before-src DIR] [--kserve-python PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebbtide.runtime.repository import ModelRepository
from ebbtide.runtime.samples import ensure_sample

sys.path.insert(0, str(Path(__file__).parent))
from replica import free_port, run_loop, stop

HERE = Path(__file__).parent
ROW = [float(v % 17) for v in range(64)]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    answered: list[tuple[float, float]] = field(default_factory=list)
    """(sent, answered) of every 200, to count overtakes."""
    shed: int = 0
    errors: int = 0
    seconds: float = 0.0


async def closed_loop(port: int, request: bytes, connections: int, seconds: float,
                      tally: Tally) -> None:  # fmt: skip
    warmup_end = time.perf_counter() + 1.0
    end = warmup_end + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (sent := time.perf_counter()) < end:
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError):
                tally.errors += 1  # closed by the server: count it and connect again
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if sent < warmup_end:
                continue
            if head.startswith(b"HTTP/1.1 200"):
                done = time.perf_counter()
                tally.latencies.append(done - sent)
                tally.answered.append((sent, done))
            elif head.startswith(b"HTTP/1.1 503"):
                tally.shed += 1
            else:
                tally.errors += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    tally.seconds += seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per arm")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--before-src", help="a source tree to run as 'ebbtide before'")
    parser.add_argument("--other-src", action="append", default=[], metavar="LABEL=DIR",
                        help="more source trees to run, each as its own arm")  # fmt: skip
    parser.add_argument("--kserve-python", help="an interpreter that has kserve installed")
    args = parser.parse_args()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-overload-") as scratch:
        repository = ModelRepository(Path(scratch) / "models")
        location, _ = ensure_sample("heavy", repository)
        body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64",
                                       "data": ROW}]}).encode()  # fmt: skip
        request = (f"POST /v2/models/{location.name}/infer HTTP/1.1\r\nHost: bench\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body  # fmt: skip
        replica = [sys.executable, "-m", "ebbtide.runtime", location.reference, "--repository",
                   str(repository.root), "--log-level", "warning", "--port", "PORT"]  # fmt: skip
        arms: dict[str, tuple[list[str], dict[str, str], bool]] = {
            "plain": ([sys.executable, str(HERE / "servers" / "plain.py"), str(location.model_file),
                       "sklearn", "PORT"], env, False),
            "ebbtide": (replica, env, True),
        }  # fmt: skip
        if args.before_src:
            arms["ebbtide before"] = (replica, {**env, "PYTHONPATH": args.before_src}, True)
        for other in args.other_src:
            label, _, directory = other.partition("=")
            arms[label] = (replica, {**env, "PYTHONPATH": directory}, True)
        if args.kserve_python:
            kserve = [args.kserve_python, str(HERE / "servers" / "kserve.py"),
                      str(location.model_file), location.name, "PORT"]  # fmt: skip
            arms["kserve"] = (kserve, env, False)
        servers = {}
        try:
            for name, (command, arm_env, has_health) in arms.items():
                port = free_port()
                argv = [str(port) if part == "PORT" else part for part in command]
                servers[name] = (start_with(argv, arm_env, port, has_health), port)
            tallies = {name: Tally() for name in arms}
            for round_index in range(args.rounds):
                order = list(servers) if round_index % 2 == 0 else list(servers)[::-1]
                for name in order:
                    run_loop(closed_loop(servers[name][1], request, args.connections,
                                         args.seconds / args.rounds, tallies[name]))  # fmt: skip
        finally:
            for process, _ in servers.values():
                stop(process)
    report(tallies, args)


def start_with(argv: list[str], env: dict[str, str], port: int,
               has_health: bool) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start a server and wait until it answers on its port (its readiness probe if any)."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: b\r\n\r\n")
                answer = probe.recv(64)
                if answer.startswith(b"HTTP/1.1 200" if has_health else b"HTTP/1.1"):
                    return process
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{argv} did not become ready")


OVERTAKE_MARGIN = 0.002
"""A request counts as overtaken by one sent at least this much later that was answered
first (the margin keeps requests that reached the server together out of it)."""


def overtaken(answered: list[tuple[float, float]]) -> tuple[float, int]:
    """The share of requests overtaken by a later one, and the most overtakes of one request.

    Unlike latency percentiles this does not move with the shared machine's slow spells:
    a server that serves in arrival order overtakes no one however slow it runs."""
    if not answered:
        return 0.0, 0
    pairs = np.asarray(sorted(answered))
    sent, done = pairs[:, 0], pairs[:, 1]
    counts = np.zeros(len(sent), dtype=int)
    for index in range(len(sent)):
        later = sent[index + 1 :] >= sent[index] + OVERTAKE_MARGIN
        counts[index] = int(np.count_nonzero(later & (done[index + 1 :] < done[index])))
    return float(np.count_nonzero(counts)) / len(counts), int(counts.max())


def report(tallies: dict[str, Tally], args: argparse.Namespace) -> None:
    print(
        f"\nheavy sample, {args.connections} connections, one server each, "
        f"{args.rounds} alternating rounds, {args.seconds:.0f} s measured per server\n"
    )
    print("| server | req/s | p50 ms | p90 ms | p99 ms | max ms | p99/p50 | overtaken | "
          "most overtakes | 503 | errors |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, tally in tallies.items():
        ms = np.asarray(tally.latencies) * 1000
        if not len(ms):
            print(f"| {name} | 0 | | | | | | | | {tally.shed} | {tally.errors} |")
            continue
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        share, most = overtaken(tally.answered)
        print(f"| {name} | {len(ms) / tally.seconds:.0f} | {p50:.0f} | {p90:.0f} | {p99:.0f} | "
              f"{ms.max():.0f} | {p99 / p50:.2f} | {share:.1%} | {most} | {tally.shed} | "
              f"{tally.errors} |")  # fmt: skip


if __name__ == "__main__":
    main()
