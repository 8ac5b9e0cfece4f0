"""A replica's life: not ready while loading (an early request held until loaded), load
failures, unix sockets, serving after a fork from a warm parent, and a SIGTERM under load that
loses no accepted request."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ebbtide.runtime.repository import ModelRepository
from tests.runtime.replicas import Replica

pytestmark = pytest.mark.integration
SLOW_BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.5]}]}


def test_not_ready_until_loaded_and_an_early_request_waits_for_the_model(
    repository: ModelRepository, logs: Path
) -> None:
    replica = Replica(repository.root, "slow", logs).start()
    try:
        replica.wait_live()
        ready = replica.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        assert replica.get("/v2/models/slow/ready").status_code == 503
        # Sent while loading, held, and answered once the model is loaded.
        early = replica.post("/v2/models/slow/infer", json=SLOW_BODY)
        assert (early.status_code, early.json()["outputs"][0]["data"]) == (200, [2.5])
        assert replica.get("/v2/health/ready").status_code == 200
        # Recorded before the metrics registry existed (it is built once ready), not lost.
        samples = {
            (sample.name, sample.labels.get("route"), sample.labels.get("code")): sample.value
            for family in text_string_to_metric_families(replica.get("/metrics").text)
            for sample in family.samples
        }
        assert samples["ebbtide_requests_total", "health", "503"] == 2
        assert samples["ebbtide_requests_total", "infer", "200"] == 1
        assert samples["ebbtide_request_duration_seconds_count", "infer", None] == 1
        assert samples["ebbtide_model_ready", None, None] == 1
        assert samples["ebbtide_model_load_seconds", None, None] >= 0.9
    finally:
        replica.stop()
    assert replica.wait_exit() == 0


def test_early_requests_past_the_load_wait_or_the_queue_get_503(
    repository: ModelRepository, logs: Path
) -> None:
    replica = Replica(repository.root, "slower", logs, "--load-wait", "1", "--max-queue", "1")
    replica.start()
    try:
        replica.wait_live()
        answers: list[tuple[float, httpx.Response]] = []

        def send() -> None:
            sent = time.monotonic()
            answer = replica.post("/v2/models/slower/infer", json=SLOW_BODY)
            answers.append((time.monotonic() - sent, answer))

        held = threading.Thread(target=send)
        held.start()
        time.sleep(0.1)
        send()  # one is held already: the queue's bound refuses this one at once
        held.join()
        (refused_after, refused), (waited, timed_out) = answers
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "still loading and already holds --max-queue (1)" in refused.json()["error"]
        # Not held for the load wait (1 s): answered first, with room for a busy machine.
        assert refused_after < 0.7
        assert timed_out.status_code == 503
        assert waited >= 1.0
        assert "not ready yet (still loading after 1 s (--load-wait))" in timed_out.json()["error"]
        replica.wait_ready()
        assert replica.post("/v2/models/slower/infer", json=SLOW_BODY).status_code == 200
    finally:
        replica.stop()
    assert replica.wait_exit() == 0


def test_a_model_that_cannot_load_exits_with_the_reason(
    repository: ModelRepository, logs: Path
) -> None:
    repository.add("broken", "v1", Path(__file__).parent / "models" / "broken.py")
    replica = Replica(repository.root, "broken", logs).start()
    assert replica.wait_exit(30) == 3
    assert "FileNotFoundError: weights.bin is missing" in replica.log()


def test_a_request_held_for_a_model_that_then_fails_to_load_gets_the_reason(
    repository: ModelRepository, logs: Path
) -> None:
    repository.add("broken-late", "v1", Path(__file__).parent / "models" / "broken_late.py")
    replica = Replica(repository.root, "broken-late", logs).start()
    replica.wait_live()
    held = replica.post("/v2/models/broken-late/infer", json=SLOW_BODY)
    assert held.status_code == 503
    assert "cannot load broken-late:v1" in held.json()["error"]
    assert "FileNotFoundError: weights.bin is missing" in held.json()["error"]
    assert replica.wait_exit(30) == 3


def test_an_unknown_model_exits_before_listening(repository: ModelRepository, logs: Path) -> None:
    replica = Replica(repository.root, "absent:v1", logs).start()
    assert replica.wait_exit(30) == 2
    assert "model absent:v1 not found: no folder" in replica.log()


def test_serve_model_command_on_a_unix_socket(repository: ModelRepository, tmp_path: Path) -> None:
    socket_path = tmp_path / "replica.sock"
    command = [str(Path(sys.executable).parent / "ebbtide"), "serve-model", "echo:v1",
               "--repository", str(repository.root), "--unix", str(socket_path)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(socket_path.exists)  # (httpx leaks a socket when a unix connect fails)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), timeout=5) as client:
            _wait(lambda: client.get("http://replica/v2/health/ready").status_code == 200)
            body = {"inputs": [{"name": "v", "shape": [2], "datatype": "INT32", "data": [4, 5]}]}
            response = client.post("http://replica/v2/models/echo/versions/v1/infer", json=body)
            assert response.json()["outputs"] == [
                {"name": "v", "datatype": "INT32", "shape": [2], "data": [4, 5]}
            ]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_a_forked_child_serves_the_model_its_parent_loaded(
    repository: ModelRepository, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import os, socket, sys
        from ebbtide.runtime import ListenAddress, load_model, serve
        loaded = load_model("sample-fast:v1", {str(repository.root)!r})
        assert loaded.fork_safe
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        child = os.fork()
        if child == 0:
            os._exit(serve(loaded, ListenAddress.bound(sock)))
        print(sock.getsockname()[1], child, flush=True)
        _, status = os.waitpid(child, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    child = None
    try:
        assert parent.stdout is not None
        port, child = (int(part) for part in parent.stdout.readline().split())
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200)
        body = {"instances": [[0.0] * 64]}
        assert httpx.post(f"{url}/v1/models/sample-fast:predict", json=body).status_code == 200
    finally:
        if child is not None:
            os.kill(child, signal.SIGTERM)
        assert parent.wait(15) == 0
        assert parent.stdout is not None
        parent.stdout.close()


def test_sigterm_under_load_loses_no_accepted_request(
    repository: ModelRepository, logs: Path
) -> None:
    replica = Replica(repository.root, "slow", logs, "--drain-seconds", "1").start().wait_ready()
    stop = threading.Event()
    results: list[tuple[float, int, Any]] = []
    lost: list[BaseException] = []
    refused: list[int] = []

    def client() -> None:
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
            try:
                connection.connect()
            except ConnectionRefusedError:
                refused.append(1)
                return
            try:
                connection.request("POST", "/v2/models/slow/infer", json.dumps(SLOW_BODY))
                response = connection.getresponse()
                results.append((time.monotonic(), response.status, json.loads(response.read())))
            except (OSError, http.client.HTTPException) as error:
                lost.append(error)
            finally:
                connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        signalled = time.monotonic()
        replica.terminate()
        _wait(lambda: replica.get("/v2/health/ready").status_code == 503)
        stop.set()  # as the gateway does once readiness is false
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert replica.wait_exit() == 0
    assert lost == []
    assert refused == []
    assert len(results) >= 16
    assert all(status == 200 for _, status, _ in results), results
    assert all(body["outputs"][0]["data"] == [2.5] for _, _, body in results)
    finished_after_signal = [at for at, _, _ in results if at > signalled]
    assert len(finished_after_signal) >= 8, "requests in flight at SIGTERM must still complete"
    assert "Shutting down" in replica.log()


def _wait(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
