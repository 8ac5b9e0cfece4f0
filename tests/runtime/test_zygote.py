"""The warm process's line protocol, spoken by hand over a socket pair."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ebbtide.runtime.repository import ModelRepository
from tests.runtime.replicas import free_port

pytestmark = pytest.mark.integration
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Control:
    """Our end of the warm process's socket pair: send requests, read events line by line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, message: dict[str, Any] | bytes) -> None:
        line = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.sock.sendall(line + b"\n")

    def receive(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "the warm process closed the connection"
        event: dict[str, Any] = json.loads(line)
        return event

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def start_warm(repository: Path, model: str, log: Path) -> tuple[subprocess.Popen[bytes], Control]:
    ours, theirs = socket.socketpair()
    command = [sys.executable, "-m", "ebbtide.runtime.zygote", model, "--repository"]
    command += [str(repository), "--control-fd", str(theirs.fileno()), "--grace-seconds", "5"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            pass_fds=(theirs.fileno(),),
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SINGLE_THREADED},
        )
    theirs.close()
    ours.settimeout(60)
    return process, Control(ours)


def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no replica ready on port {port}")


def test_forks_on_request_reports_exits_and_leaves_its_children_serving_at_end_of_file(
    repository: ModelRepository, tmp_path: Path
) -> None:
    process, control = start_warm(repository.root, "sample-fast:v1", tmp_path / "warm.log")
    try:
        hello = control.receive()
        assert hello["event"] == "ready"
        assert hello["pid"] == process.pid
        assert hello["format"] == "sklearn"
        control.send(b"not json")
        assert control.receive()["event"] == "error"
        control.send({"op": "dance"})
        assert "unknown operation 'dance'" in control.receive()["reason"]

        first_port, second_port = free_port(), free_port()
        control.send({"op": "fork", "port": first_port, "log": str(tmp_path / "first.log")})
        first = control.receive()
        assert first["event"] == "forked"
        wait_ready(first_port)
        os.kill(first["pid"], signal.SIGKILL)
        assert control.receive() == {"event": "exited", "pid": first["pid"], "code": -9}

        control.send({"op": "fork", "port": second_port, "log": str(tmp_path / "second.log")})
        second = control.receive()["pid"]
        wait_ready(second_port)
        assert psutil.Process(second).ppid() == process.pid
        control.close()  # as if the control plane died: the warm one exits, the replica serves
        assert process.wait(timeout=20) == 0
        wait_ready(second_port)
        assert psutil.Process(second).status() != psutil.STATUS_ZOMBIE
        os.kill(second, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while "Finished server process" not in (tmp_path / "second.log").read_text():
            assert time.monotonic() < deadline, "the orphaned replica did not drain on SIGTERM"
            time.sleep(0.05)
    finally:
        control.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_says_unsafe_for_a_format_that_is_not_fork_safe_before_loading(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx graph")  # loading it would fail: unsafe proves it was not
    repository = ModelRepository(tmp_path / "models")
    repository.add("garbage", "v1", garbage)
    process, control = start_warm(repository.root, "garbage:v1", tmp_path / "warm.log")
    try:
        answer = control.receive()
        assert answer["event"] == "unsafe"
        assert answer["reason"].startswith("onnx models are not fork-safe")
        assert process.wait(timeout=20) == 4
    finally:
        control.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_says_failed_when_the_model_cannot_load(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    repository = ModelRepository(tmp_path / "models")
    repository.add("garbage", "v1", garbage)
    process, control = start_warm(repository.root, "garbage:v1", tmp_path / "warm.log")
    try:
        answer = control.receive()
        assert answer["event"] == "failed"
        assert "cannot load garbage:v1 (sklearn)" in answer["reason"]
        assert process.wait(timeout=20) == 4
    finally:
        control.close()
        if process.poll() is None:
            process.kill()
            process.wait()
