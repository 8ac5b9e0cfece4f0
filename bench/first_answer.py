"""First answers through the gateway: after `ebbtide up`, after a rollout, after scale from zero.

Each round starts a control plane in a fresh home (`ebbtide up --detach`, gateway on a free
port) with the fast digits sample as `my-ml-model` v1 and v2 in the repository, and times:

- up: from starting the control plane, through `apply` of the seed endpoint, to the first
  200 from the gateway (the first replica of a model is a fresh start: the warm process);
- rollout: from `apply` of `version: v2` to the first answer that v2 gave (`model_version`);
- from zero: the endpoint set to `minReplicas: 0` with a 1 s idle period; once it has scaled
  to zero, from sending one request (the gateway holds it) to its answer.

A bare `python -m ebbtide.runtime` fresh start of the same model is timed in the same round
(launch to the first 200), for the ratio `ebbtide up` / cold start. `--python` names one or
more interpreters (environments) to compare; rounds alternate between them.

Run: `.venv/bin/python bench/first_answer.py [--rounds 3] [--python A B]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "inference_endpoint.yaml"
NAME = "my-model-endpoint"
ROW = [float(v % 17) for v in range(64)]
BODY = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": ROW}]}
STEPS = ("replica cold start", "up to first answer", "rollout to first v2 answer",
         "from zero to first answer")  # fmt: skip


def one_round() -> dict[str, float]:
    """Runs in the interpreter under test; prints one JSON object."""
    import yaml

    from ebbtide.api.client import ControlPlaneClient
    from ebbtide.daemon import lifecycle
    from ebbtide.runtime.repository import ModelRepository
    from ebbtide.runtime.samples import ensure_sample

    sys.path.insert(0, str(Path(__file__).parent))
    from cold_start import first_answer, free_port, infer_request

    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-first-") as scratch:
        repository = ModelRepository(Path(scratch) / "models")
        location, _ = ensure_sample("fast", repository, "my-ml-model", "v1")
        ensure_sample("fast", repository, "my-ml-model", "v2")
        port = free_port()
        launched = time.monotonic()
        replica = subprocess.Popen(
            [sys.executable, "-m", "ebbtide.runtime", location.reference, "--repository",
             str(repository.root), "--port", str(port), "--log-level", "warning"]
        )  # fmt: skip
        try:
            first_answer(port, infer_request(location), replica)
            result[STEPS[0]] = time.monotonic() - launched
        finally:
            replica.terminate()
            replica.wait(20)

        home = Path(scratch) / "home"
        manifest: dict[str, Any] = yaml.safe_load(SEED.read_text())
        began = time.monotonic()
        lifecycle.start_detached(home, ["--gateway-port", "0", "--repository",
                                        str(repository.root)])  # fmt: skip
        try:
            client = ControlPlaneClient(home)
            client.apply([manifest])
            url = wait_for_url(client) + "/v2/models/my-ml-model/infer"
            answer_from(url, "v1")
            result[STEPS[1]] = time.monotonic() - began

            rolled = copy.deepcopy(manifest)
            rolled["spec"]["model"]["version"] = "v2"
            began = time.monotonic()
            client.apply([rolled])
            answer_from(url, "v2")
            result[STEPS[2]] = time.monotonic() - began

            idle = copy.deepcopy(rolled)
            idle["spec"]["autoscaling"]["minReplicas"] = 0
            idle["spec"]["autoscaling"]["scaleToZero"] = {"idleSeconds": 1}
            client.apply([idle])
            deadline = time.monotonic() + 120
            while ready_replicas(client) > 0 or replica_processes(client) > 0:
                assert time.monotonic() < deadline, "did not scale to zero in 120 s"
                time.sleep(0.1)
            began = time.monotonic()
            response = httpx.post(url, json=BODY, timeout=120)
            response.raise_for_status()
            result[STEPS[3]] = time.monotonic() - began
            client.close()
        finally:
            lifecycle.stop(home)
    return result


def wait_for_url(client: Any) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get_endpoint("default", NAME).get("status") or {}
        if status.get("url"):
            return str(status["url"])
        time.sleep(0.01)
    raise RuntimeError("the endpoint has no URL after 120 s")


def answer_from(url: str, version: str) -> None:
    """Return at the first 200 that `version` of the model gave (polls every 10 ms)."""
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < deadline:
            try:
                response = http.post(url, json=BODY)
                if response.status_code == 200 and response.json()["model_version"] == version:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"no answer from {version} in 120 s")


def ready_replicas(client: Any) -> int:
    status = client.get_endpoint("default", NAME).get("status") or {}
    return int(status.get("readyReplicas", 0))


def replica_processes(client: Any) -> int:
    status = client.get_endpoint("default", NAME).get("status") or {}
    return int(status.get("replicas", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", nargs="+", default=[sys.executable])
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_round:
        print(json.dumps(one_round()))
        return
    results: dict[str, list[dict[str, float]]] = {python: [] for python in args.python}
    for round_index in range(args.rounds):
        order = args.python if round_index % 2 == 0 else args.python[::-1]
        for python in order:
            done = subprocess.run([python, __file__, "--one-round"], check=True,
                                  capture_output=True, text=True)  # fmt: skip
            results[python].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\nmedians of {args.rounds} rounds, seconds\n")
    print("| interpreter | " + " | ".join(STEPS) + " | up / cold start |")
    print("| --- |" + " ---: |" * (len(STEPS) + 1))
    for python, rounds in results.items():
        medians = [statistics.median(r[step] for r in rounds) for step in STEPS]
        cells = " | ".join(f"{value:.2f}" for value in medians)
        print(f"| {python} | {cells} | {medians[1] / medians[0]:.2f}x |")


if __name__ == "__main__":
    main()
