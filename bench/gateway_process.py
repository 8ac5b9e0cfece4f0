"""The gateway as its own program against the gateway class alone, and one worker against two.

    .venv/bin/python bench/gateway_process.py [--requests 3000] [--seconds 3] [--concurrency 32]

Side by side in one run, with the minimal replica and the lean client of bench/gateway.py:

- direct: the replica itself;
- class: a `Gateway` alone in a process (what bench/gateway.py measures; the control plane
  ran it this way, on its own event loop);
- program, 1 worker: `python -m ebbtide.gateway` as the control plane runs it (started and fed
  routes over its channel by `GatewayFleet`, sending traffic reports every 50 ms);
- program, 2 workers: two such processes sharing the port with `SO_REUSEPORT`.

Latency is at concurrency 1 in interleaved rounds; "added" is over direct. Throughput is closed
loop at `--concurrency` connections, the mean of 5 interleaved rounds of `--seconds`/5. On a
machine with few cores the client, the replica and the workers compete for them, so a second
worker shows what it costs as much as what it gives.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import gateway as base  # bench/gateway.py: the replica, the client, the maths
from ebbtide.daemon.gateway_fleet import FleetSettings, GatewayFleet
from ebbtide.gateway import Route, Upstream
from ebbtide.gateway.channel import RouteEntry
from ebbtide.store import SqliteStore

THROUGHPUT_ROUNDS = 5


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    path = "/v2/models/bench/infer"
    direct_request = base.build_request(path)
    routed_request = base.build_request("/endpoints/bench" + path)
    home = Path(tempfile.mkdtemp(prefix="ebbtide-bench-"))
    store = SqliteStore(home / "state.db")
    processes, listeners, fleets = [], [], []
    try:
        upstream_listener = base.listening_socket()
        listeners.append(upstream_listener)
        processes.append(base.spawn(["--serve-upstream"], upstream_listener))
        upstream = f"127.0.0.1:{upstream_listener.getsockname()[1]}"
        targets = {"direct": (upstream_listener.getsockname()[1], direct_request)}
        loop_kind = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        listener = base.listening_socket()
        listeners.append(listener)
        command = ["--serve-gateway", "--upstream", upstream, "--loop", loop_kind]
        processes.append(base.spawn(command, listener))
        targets[f"class ({loop_kind})"] = (listener.getsockname()[1], routed_request)
        for workers in (1, 2):
            worker_home = home / f"workers-{workers}"
            worker_home.mkdir()
            fleet = GatewayFleet(worker_home, store, FleetSettings(port=0, workers=workers), home)
            fleets.append(fleet)
            await fleet.start()
            route = Route("default", "bench", "bench", "v1")
            fleet.publish(RouteEntry(route, (Upstream("u", upstream),)))
            name = f"program, {workers} worker{'s' if workers > 1 else ''}"
            targets[name] = (fleet.address[1], routed_request)
        for port, request in targets.values():
            await base.wait_answering(port, request)

        samples: dict[str, list[float]] = {name: [] for name in targets}
        rounds = 10
        for _ in range(rounds):
            for name, (port, request) in targets.items():
                samples[name] += await base.latencies(port, request, args.requests // rounds)
        # Throughput in interleaved rounds too: load from elsewhere on a shared machine then
        # falls on every path alike instead of on whichever ran during it.
        rates = dict.fromkeys(targets, 0.0)
        for _ in range(THROUGHPUT_ROUNDS):
            for name, (port, request) in targets.items():
                seconds = args.seconds / THROUGHPUT_ROUNDS
                rate = await base.throughput(port, request, args.concurrency, seconds)
                rates[name] += rate / THROUGHPUT_ROUNDS
        return [
            (
                name,
                base.percentile(samples[name], 50),
                base.percentile(samples[name], 99),
                rates[name],
            )
            for name in targets
        ]
    finally:
        for fleet in fleets:
            await fleet.stop(grace=1.0)
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        for listener in listeners:
            listener.close()
        store.close()


def report(rows: list[tuple[str, float, float, float]], args: argparse.Namespace) -> None:
    base.report(rows, args)
    by_name = {name: rate for name, _, _, rate in rows}
    classic = next(rate for name, rate in by_name.items() if name.startswith("class"))
    for name, rate in by_name.items():
        if name.startswith("program"):
            print(f"throughput {name} / class: {rate / classic:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    report(asyncio.run(measure(args)), args)


if __name__ == "__main__":
    main()
