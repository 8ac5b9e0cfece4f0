"""One replica's throughput and latency, side by side with the ceiling and a plain reference.

For each sample model (fast, heavy, fast-onnx), at concurrency 1, 8 and 32:

- in-process: `model.predict` called in a loop in this process (the ceiling; concurrency 1);
- starlette: a minimal Starlette + uvicorn app that parses the same v2 JSON, calls
  `model.predict` and answers (the plain-Python reference);
- ebbtide: `python -m ebbtide.runtime`, without and with adaptive batching.

Every server is a separate process with the same uvicorn settings (uvloop and httptools when
installed, no access log) and one BLAS/OpenMP thread; the load comes from a closed-loop
client in this process over keep-alive connections, one single-row request at a time per
connection. All the servers run at once and each cell is measured in rounds that alternate
between them, so the shared machine's slow spells hit every arm alike. Run:
`.venv/bin/python bench/replica.py [--seconds 6] [--rounds 6] [--before-src DIR]` (an
"ebbtide before" arm from another source tree, e.g. an older commit's `src/`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

CONCURRENCY = (1, 8, 32)
BATCHING = ("--max-batch-size", "32", "--max-latency-ms", "2")
MODELS = ("fast", "heavy", "fast-onnx")


@dataclass
class Cell:
    model: str
    server: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None = None
    rss_mib: float | None = None
    errors: int = 0


# -- the reference server ---------------------------------------------------------------------


def serve_reference(model_file: str, model_format: str, port: int) -> None:
    """A minimal Starlette app: parse v2 JSON, call predict, answer v2 JSON."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    if model_format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(model_file, options)

        def predict(rows: Any) -> Any:
            return session.run(["label"], {"input-0": rows.astype(np.float32)})[0]
    else:
        import joblib

        predict = joblib.load(model_file).predict

    async def infer(request: Request) -> JSONResponse:
        body = await request.json()
        tensor = body["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        labels = predict(rows)
        output = {"name": "predict", "datatype": "INT64", "shape": list(labels.shape),
                  "data": labels.tolist()}  # fmt: skip
        return JSONResponse({"model_name": request.path_params["name"], "outputs": [output]})

    app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools" if importlib.util.find_spec("httptools") else "h11")  # fmt: skip


# -- load -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_bytes(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def closed_loop(
    port: int, request: bytes, concurrency: int, seconds: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    warmup_end = time.perf_counter() + min(0.5, seconds / 4)
    end = warmup_end + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (now := time.perf_counter()) < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if now >= warmup_end:
                latencies.append(time.perf_counter() - now)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


@dataclass
class Tally:
    """What the rounds of one (server, concurrency) cell gathered."""

    latencies: list[float]
    errors: int = 0
    cpu_seconds: float = 0.0
    measured_seconds: float = 0.0

    def cell(self, model: str, server: str, concurrency: int) -> Cell:
        cpu_ms = self.cpu_seconds * 1000 / max(1, len(self.latencies))
        return _cell(model, server, concurrency, self.latencies, self.measured_seconds,
                     self.errors, cpu_ms)  # fmt: skip


def measure_round(
    tally: Tally, process: psutil.Process, port: int, request: bytes, concurrency: int,
    seconds: float,
) -> None:  # fmt: skip
    cpu_before = sum(process.cpu_times()[:2])
    started = time.perf_counter()
    latencies, errors = run_loop(closed_loop(port, request, concurrency, seconds))
    elapsed = time.perf_counter() - started
    # The server's CPU over the measured part of the round, leaving out the warm-up.
    tally.cpu_seconds += (sum(process.cpu_times()[:2]) - cpu_before) * (seconds / elapsed)
    tally.latencies += latencies
    tally.errors += errors
    tally.measured_seconds += seconds


def run_loop(coroutine: Any) -> Any:
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def _cell(
    model: str,
    server: str,
    concurrency: int,
    latencies: list[float],
    seconds: float,
    errors: int = 0,
    cpu_ms: float | None = None,
) -> Cell:
    ordered = np.sort(latencies)
    return Cell(
        model=model,
        server=server,
        concurrency=concurrency,
        throughput=len(latencies) / seconds,
        p50_ms=float(np.percentile(ordered, 50)) * 1000,
        p99_ms=float(np.percentile(ordered, 99)) * 1000,
        cpu_ms_per_request=cpu_ms,
        errors=errors,
    )


# -- the three arms -----------------------------------------------------------------------------


class InProcess:
    """`model.predict` in a loop in this process: the ceiling, at concurrency 1."""

    def __init__(self, model: str, location: Any, rows: Any) -> None:
        from ebbtide.runtime.server import load_model

        self.loaded = load_model(location).model
        name = self.loaded.signature.inputs[0].name
        self.outputs = self.loaded.default_outputs[:1]
        self.feed = {name: rows.astype(np.float32) if model == "fast-onnx" else rows}
        self.tally = Tally([])
        self.measure(0.5)
        self.tally = Tally([])  # the first half second was a warm-up

    def measure(self, seconds: float) -> None:
        async def loop() -> list[float]:
            latencies = []
            end = time.perf_counter() + seconds
            while (now := time.perf_counter()) < end:
                await self.loaded.predict(self.feed, self.outputs, {})
                latencies.append(time.perf_counter() - now)
            return latencies

        cpu_before = time.process_time()
        self.tally.latencies += asyncio.run(loop())
        self.tally.cpu_seconds += time.process_time() - cpu_before
        self.tally.measured_seconds += seconds


def start(
    command: list[str], port: int, has_health: bool, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 60
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
    raise RuntimeError(f"{command} did not become ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_model(
    model: str, repository: Any, seconds: float, rounds: int, before_src: str | None = None
) -> list[Cell]:
    from sklearn.datasets import load_digits

    from ebbtide.runtime.samples import ensure_sample

    location, _ = ensure_sample(model, repository)
    rows = load_digits().data[7:8]
    datatype = "FP32" if model == "fast-onnx" else "FP64"
    # One output, as the in-process arm and the reference compute: the ONNX model would
    # otherwise also encode ten probabilities per answer.
    output = "label" if model == "fast-onnx" else "predict"
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": datatype,
                                   "data": rows.ravel().tolist()}],
                       "outputs": [{"name": output}]}).encode()  # fmt: skip
    path = f"/v2/models/{location.name}/infer"
    ceiling = InProcess(model, location, rows)
    model_format = "onnx" if model == "fast-onnx" else "sklearn"
    arms = {
        "starlette": [sys.executable, __file__, "--reference", str(location.model_file),
                      model_format, "PORT"],
        "ebbtide": [sys.executable, "-m", "ebbtide.runtime", location.reference, "--repository",
                    str(repository.root), "--log-level", "warning", "--port", "PORT"],
        "ebbtide+batching": [sys.executable, "-m", "ebbtide.runtime", location.reference,
                             "--repository", str(repository.root), "--log-level", "warning",
                             *BATCHING, "--port", "PORT"],
    }  # fmt: skip
    envs: dict[str, dict[str, str] | None] = dict.fromkeys(arms)
    if before_src:
        arms["ebbtide before"] = arms["ebbtide"]
        envs["ebbtide before"] = {**os.environ, "PYTHONPATH": before_src}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    request = request_bytes(path, body)
    try:
        for server, command in arms.items():
            port = free_port()
            resolved = [str(port) if part == "PORT" else part for part in command]
            process = start(resolved, port, server != "starlette", envs[server])
            servers[server] = (process, port)
        tallies = {(server, c): Tally([]) for server in arms for c in CONCURRENCY}
        # Rounds alternate between the servers, so a slow spell of the shared machine hits
        # every arm alike instead of one arm's whole run.
        for concurrency in CONCURRENCY:
            for _ in range(rounds):
                if concurrency == 1:
                    ceiling.measure(seconds / rounds)
                for server, (process, port) in servers.items():
                    tally = tallies[server, concurrency]
                    measure_round(tally, psutil.Process(process.pid), port, request,
                                  concurrency, seconds / rounds)  # fmt: skip
        cells = [ceiling.tally.cell(model, "in-process", 1)]
        for server, (process, _) in servers.items():
            cells += [tallies[server, c].cell(model, server, c) for c in CONCURRENCY]
            cells[-1].rss_mib = psutil.Process(process.pid).memory_info().rss / 2**20
    finally:
        for process, _ in servers.values():
            stop(process)
    return cells


def table(cells: list[Cell]) -> str:
    lines = [
        "| model | server | concurrency | req/s | p50 ms | p99 ms | server CPU ms/req | RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        cpu = f"{c.cpu_ms_per_request:.2f}" if c.cpu_ms_per_request is not None else ""
        rss = f"{c.rss_mib:.0f}" if c.rss_mib is not None else ""
        errors = f" ({c.errors} errors)" if c.errors else ""
        lines.append(
            f"| {c.model} | {c.server} | {c.concurrency} | {c.throughput:.0f}{errors} | "
            f"{c.p50_ms:.2f} | {c.p99_ms:.2f} | {cpu} | {rss} |"
        )
    return "\n".join(lines)


def verdicts(cells: list[Cell]) -> list[str]:
    def find(model: str, server: str, concurrency: int) -> Cell:
        return next(
            c for c in cells
            if (c.model, c.server, c.concurrency) == (model, server, concurrency)
        )  # fmt: skip

    ceiling, reference = find("fast", "in-process", 1), find("fast", "starlette", 1)
    ours, batched = find("fast", "ebbtide", 1), find("fast", "ebbtide+batching", 32)
    unbatched32 = find("fast", "ebbtide", 32)
    overhead = ours.p50_ms - ceiling.p50_ms
    rss_ref = find("fast", "starlette", 32).rss_mib or 1.0
    rss_ours = find("fast", "ebbtide", 32).rss_mib or 0.0
    heavy = find("heavy", "ebbtide", 1)
    return [
        f"- fast, concurrency 1: overhead over in-process predict {overhead:.3f} ms p50 "
        f"(target <= 0.3); throughput {ours.throughput / reference.throughput:.2f}x the "
        "Starlette reference (target >= 0.9)",
        f"- fast, concurrency 32: batching gives "
        f"{batched.throughput / unbatched32.throughput:.2f}x the unbatched throughput "
        f"(target >= 3) with p99 {batched.p99_ms:.1f} ms (target < 20)",
        f"- fast: resident memory {rss_ours / rss_ref:.2f}x the Starlette reference's "
        f"({rss_ours:.0f} vs {rss_ref:.0f} MiB; target <= 1.1)",
        f"- heavy: {heavy.cpu_ms_per_request or 0:.1f} ms of server CPU per single-row request, "
        f"so one core serves about {1000 / (heavy.cpu_ms_per_request or 1):.0f} requests/s",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per cell")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per cell")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--before-src", help="also run `ebbtide` from this source tree")
    parser.add_argument("--reference", nargs=3, metavar=("FILE", "FORMAT", "PORT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.reference:
        serve_reference(args.reference[0], args.reference[1], int(args.reference[2]))
        return
    from ebbtide.runtime.repository import ModelRepository

    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-") as root:
        repository = ModelRepository(Path(root))
        for model in args.models:
            cells += bench_model(model, repository, args.seconds, args.rounds, args.before_src)
    print(table(cells))
    if "fast" in args.models and "heavy" in args.models:
        print()
        print("\n".join(verdicts(cells)))


if __name__ == "__main__":
    main()
