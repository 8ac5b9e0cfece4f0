"""Inference load through an in-cluster gateway, for the end-to-end tests that count outcomes."""

from __future__ import annotations

import json
import threading
from collections import Counter

import httpx

from tests.kube.test_cluster_e2e import digits, infer_body


class GatewayLoad:
    """`threads` clients posting one inference request after another to `url` until stopped.
    `outcomes` counts answers by status code ("200") and failures by error class; `failures`
    keeps the first ten that were not a 200, with what came back."""

    def __init__(
        self, url: str, threads: int = 3, pause: float = 0.02, timeout: float = 60.0
    ) -> None:
        rows, _ = digits(1)
        self.url, self.pause, self.timeout = url, pause, timeout
        self.body = json.dumps(infer_body(rows))
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def __enter__(self) -> GatewayLoad:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(self.timeout + 30)

    def _send(self) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=self.timeout) as client:
            while not self.stopping.is_set():
                try:
                    response = client.post(self.url, content=self.body, headers=headers)
                    outcome, detail = str(response.status_code), response.text[:200]
                except httpx.HTTPError as error:
                    outcome, detail = type(error).__name__, str(error)
                with self.lock:
                    self.outcomes[outcome] += 1
                    if outcome != "200" and len(self.failures) < 10:
                        self.failures.append(f"{outcome}: {detail}")
                if self.pause:
                    self.stopping.wait(self.pause)
