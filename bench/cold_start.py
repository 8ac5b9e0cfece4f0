"""Cold start of one fresh replica against the plain Starlette + uvicorn reference.

For the sklearn sample (`sample-fast`, a joblib pipeline) and the ONNX sample
(`sample-fast-onnx`), each arm is launched as a new process and timed from the launch to its
first HTTP 200 on the v2 inference endpoint (a request every 5 ms once the port accepts).
The arms alternate within each round (their order flips every round), so a slow spell of the
shared machine hits them alike; the table gives medians, the idle resident memory after the
first answer, and the ratio of each arm's median to the reference's.

- plain: `bench/servers/plain.py`, the reference (Starlette + uvicorn, the same model file);
- python -m ebbtide.runtime: the replica as the local supervisor starts it;
- ebbtide serve-model: the console script a Kubernetes pod runs.

`--phases` also prints where each arm's start goes: the interpreter (a bare `python -c pass`
in the same rounds), then the steps each server reports (imports, model resolution, model
load, listening) and the rest until the first answer. `--importtime MODEL` prints the
heaviest top-level imports of each arm (`python -X importtime`), once.

`--python` runs the arms with another environment's interpreter (one built without compiled
bytecode, say) while this script runs from the project's.

Run: `.venv/bin/python bench/cold_start.py [--rounds 7] [--phases]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ebbtide.runtime.repository import ModelLocation, ModelRepository
from ebbtide.runtime.samples import ensure_sample

MODELS = ("fast", "fast-onnx")
ARMS = ("plain", "python -m ebbtide.runtime", "ebbtide serve-model")
PLAIN_SERVER = Path(__file__).parent / "servers" / "plain.py"
ROW = [float(v % 17) for v in range(64)]
MIB = 2**20


@dataclass
class Start:
    seconds: float
    rss_mib: float
    phases: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(arm: str, python: str, location: ModelLocation, port: int) -> list[str]:
    if arm == "plain":
        return [python, str(PLAIN_SERVER), str(location.model_file), location.format, str(port)]
    replica = [location.reference, "--repository", str(location.directory.parent.parent),
               "--port", str(port)]  # fmt: skip
    if arm == "ebbtide serve-model":
        return [str(Path(python).parent / "ebbtide"), "serve-model", *replica]
    return [python, "-m", "ebbtide.runtime", *replica]


def infer_request(location: ModelLocation) -> bytes:
    datatype = "FP32" if location.format == "onnx" else "FP64"
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": datatype,
                                   "data": ROW}]}).encode()  # fmt: skip
    head = (f"POST /v2/models/{location.name}/infer HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def first_answer(port: int, request: bytes, process: subprocess.Popen[bytes]) -> None:
    """Return at the first 200 to the inference request; polls every 5 ms."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(request)
                if connection.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{process.args} gave no answer in 120 s")


PHASE_LINE = re.compile(rb"phases (.*)")


def reported_phases(output: bytes, launched: float, answered: float) -> dict[str, float]:
    """Durations of the steps a server printed (monotonic marks), in start order."""
    match = PHASE_LINE.search(output)
    if match is None:
        return {}
    marks = [(key, float(value)) for key, value in
             (item.split("=") for item in match.group(1).decode().split())]  # fmt: skip
    phases, previous = {}, launched
    for key, value in marks:
        phases[key] = value - previous
        previous = value
    phases["until first answer"] = answered - previous
    return phases


def launch(arm: str, python: str, location: ModelLocation, env: dict[str, str]) -> Start:
    port = free_port()
    request = infer_request(location)
    with tempfile.TemporaryFile() as output:
        launched = time.monotonic()
        process = subprocess.Popen(command(arm, python, location, port), env=env,
                                   stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            first_answer(port, request, process)
            answered = time.monotonic()
            rss = psutil.Process(process.pid).memory_info().rss / MIB
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.seek(0)
        phases = reported_phases(output.read(), launched, answered)
    return Start(answered - launched, rss, phases)


def bare_interpreter(python: str, env: dict[str, str]) -> float:
    launched = time.monotonic()
    subprocess.run([python, "-c", "pass"], env=env, check=True)
    return time.monotonic() - launched


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(starts: dict[tuple[str, str], list[Start]], interpreter: list[float],
           rounds: int, phases: bool) -> None:  # fmt: skip
    print(f"\nlaunch to the first 200 on /v2/models/NAME/infer, {rounds} alternating rounds\n")
    print("| model | server | median s | min s | max s | idle RSS MiB | ratio to plain |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in MODELS:
        reference = median([s.seconds for s in starts[model, "plain"]])
        for arm in ARMS:
            seconds = [s.seconds for s in starts[model, arm]]
            rss = median([s.rss_mib for s in starts[model, arm]])
            ratio = median(seconds) / reference
            print(f"| {model} | {arm} | {median(seconds):.3f} | {min(seconds):.3f} | "
                  f"{max(seconds):.3f} | {rss:.0f} | {ratio:.2f}x |")  # fmt: skip
    if not phases:
        return
    print(f"\nbare interpreter (`python -c pass`): median {median(interpreter):.3f} s\n")
    print("| model | server | phase | median s |")
    print("| --- | --- | --- | ---: |")
    for model in MODELS:
        for arm in ARMS:
            names = list(starts[model, arm][0].phases)
            for name in names:
                values = [s.phases[name] for s in starts[model, arm] if name in s.phases]
                print(f"| {model} | {arm} | {name} | {median(values):.3f} |")


def importtime(python: str, location: ModelLocation, env: dict[str, str], top: int) -> None:
    for arm in ARMS[:2]:
        port = free_port()
        argv = command(arm, python, location, port)
        argv = [argv[0], "-X", "importtime", *argv[1:]]
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=output)
            try:
                first_answer(port, infer_request(location), process)
            finally:
                process.terminate()
                process.wait(20)
            output.seek(0)
            totals: dict[str, int] = {}
            for line in output.read().decode(errors="replace").splitlines():
                found = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
                if found:
                    package = found.group(2).split(".")[0]
                    totals[package] = totals.get(package, 0) + int(found.group(1))
        print(f"\n{arm} ({location.reference}): {sum(totals.values()) / 1e6:.2f} s of imports "
              f"in {len(totals)} top-level packages; the heaviest (self time, ms):")  # fmt: skip
        heaviest = sorted(totals.items(), key=lambda item: -item[1])[:top]
        print(", ".join(f"{name} {micros / 1000:.0f}" for name, micros in heaviest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="starts per arm and model")
    parser.add_argument("--python", default=sys.executable, help="the arms' interpreter")
    parser.add_argument("--phases", action="store_true", help="print each arm's start phases")
    parser.add_argument("--importtime", choices=MODELS, help="print the heaviest imports")
    args = parser.parse_args()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-cold-") as scratch:
        repository = ModelRepository(Path(scratch) / "models")
        locations = {model: ensure_sample(model, repository)[0] for model in MODELS}
        if args.importtime:
            importtime(args.python, locations[args.importtime], env, top=14)
            return
        starts: dict[tuple[str, str], list[Start]] = {(m, a): [] for m in MODELS for a in ARMS}
        interpreter: list[float] = []
        for round_index in range(args.rounds):
            order = ARMS if round_index % 2 == 0 else ARMS[::-1]
            for model in MODELS:
                for arm in order:
                    starts[model, arm].append(launch(arm, args.python, locations[model], env))
            if args.phases:
                interpreter.append(bare_interpreter(args.python, env))
        report(starts, interpreter, args.rounds, args.phases)


if __name__ == "__main__":
    main()
