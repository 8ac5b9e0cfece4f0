"""Real replica processes for tests: start on a free port, wait until ready, always stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    """`python -m ebbtide.runtime MODEL --repository ROOT --port N [args]` as a child process."""

    def __init__(self, repository: Path, model: str, log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{model.replace(':', '-')}-{self.port}.log"
        command = [sys.executable, "-m", "ebbtide.runtime", model, "--repository", str(repository)]
        command += ["--port", str(self.port), *args]
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)

    def wait_live(self, timeout: float = 30) -> None:
        self._wait(lambda: self.get("/v2/health/live").status_code == 200, timeout, "live")

    def wait_ready(self, timeout: float = 30) -> Replica:
        self._wait(lambda: self.get("/v2/health/ready").status_code == 200, timeout, "ready")
        return self

    def _wait(self, check: Any, timeout: float, what: str) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"replica exited ({self.process.returncode}):\n{self.log()}")
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"replica not {what} after {timeout} s:\n{self.log()}")

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> Replica:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
