"""A fresh replica imports what serving its model needs and nothing else, by either command."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ebbtide.runtime.repository import ModelRepository
from tests.runtime.replicas import free_port

pytestmark = pytest.mark.integration

NEVER = (
    "typer",  # the command-line framework
    "pydantic",  # the spec models: the control plane's
    "httpx",
    "ebbtide.cli",
    "ebbtide.api",
    "ebbtide.controller",
    "ebbtide.gateway",
    "ebbtide.supervisor",
    "ebbtide.spec",
    "ebbtide.store",
    "ebbtide.kube",
    "ebbtide.daemon",
    "ebbtide.autoscaler",
    "xgboost",
    "lightgbm",
    "torch",
)
OTHER_FORMAT = {
    "sample-fast:v1": ("onnxruntime",),
    "sample-fast-onnx:v1": ("sklearn", "threadpoolctl"),
}
IMPORTED = re.compile(r"import time:\s+\d+ \|\s+\d+ \| *(\S+)")


def imports_of_a_start(command: list[str], port: int, log: Path) -> tuple[set[str], str]:
    """Start with `-X importtime`, wait for readiness, stop; the modules it imported."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"not ready in 60 s:\n{log.read_text()}")
    finally:
        process.terminate()
        process.wait(20)
    text = log.read_text()
    return {match.group(1) for match in IMPORTED.finditer(text)}, text


@pytest.mark.parametrize("model", sorted(OTHER_FORMAT))
@pytest.mark.parametrize("entry", ["python -m ebbtide.runtime", "ebbtide serve-model"])
def test_a_replica_imports_only_what_serving_its_model_needs(
    repository: ModelRepository, tmp_path: Path, model: str, entry: str
) -> None:
    port = free_port()
    arguments = [model, "--repository", str(repository.root), "--port", str(port)]
    if entry == "ebbtide serve-model":
        script = str(Path(sys.executable).parent / "ebbtide")
        command = [sys.executable, "-X", "importtime", script, "serve-model", *arguments]
    else:
        command = [sys.executable, "-X", "importtime", "-m", "ebbtide.runtime", *arguments]
    modules, log = imports_of_a_start(command, port, tmp_path / "replica.log")
    assert "uvicorn" in modules, log  # the parse worked: it did see the server's imports
    forbidden = [
        module
        for module in modules
        if any(module == never or module.startswith(f"{never}.") for never in NEVER)
        or module.split(".")[0] in OTHER_FORMAT[model]
    ]
    assert forbidden == []
    lines = log.splitlines()
    ready = [line for line in lines if "is ready" in line]
    assert len(ready) == 1
    # The metrics registry is built once the model is ready, not on the way there.
    prometheus = [i for i, line in enumerate(lines) if re.search(r"\| +prometheus_client$", line)]
    assert all(i > lines.index(ready[0]) for i in prometheus), log
    assert re.search(r"after the process began; phases began=\S+ imported=\S+ resolved=\S+ "
                     r"startup=\S+ loaded=\S+$", ready[0])  # fmt: skip


def test_serve_model_takes_the_name_as_pods_pass_it(
    repository: ModelRepository, tmp_path: Path
) -> None:
    port = free_port()
    script = str(Path(sys.executable).parent / "ebbtide")
    command = [script, "serve-model", "--name", "sample-fast", "--version", "v1",
               "--repository", str(repository.root), "--port", str(port)]  # fmt: skip
    imports_of_a_start(command, port, tmp_path / "replica.log")
    both = subprocess.run([script, "serve-model", "sample-fast", "--name", "sample-fast"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert both.returncode == 2
    assert "name the model once" in both.stderr
