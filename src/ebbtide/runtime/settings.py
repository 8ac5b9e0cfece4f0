"""How a replica listens and behaves: plain frozen dataclasses, cheap to import."""

from __future__ import annotations

import socket
from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_QUEUE = 64
DEFAULT_LOAD_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class BatchingSettings:
    """Adaptive batching, as `spec.batching` (maxBatchSize rows, maxLatencyMs)."""

    max_batch_size: int
    max_latency_ms: float

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max batch size must be at least 1, not {self.max_batch_size}")
        if self.max_latency_ms <= 0:
            raise ValueError(f"max latency must be above 0 ms, not {self.max_latency_ms}")


@dataclass(frozen=True)
class ServerSettings:
    """Everything about serving except the model and the address."""

    batching: BatchingSettings | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies get 413."""
    max_queue: int = DEFAULT_MAX_QUEUE
    """The most inference requests waiting for the model (served in arrival order); one more
    gets 503 with `Retry-After`. A replica behind the gateway rarely sees a queue this long:
    the gateway balances on outstanding requests and holds its own bounded queue."""
    drain_seconds: float = 0.0
    """After SIGTERM, report not-ready (while still serving) this long before closing the
    listener, so load balancers that poll readiness stop sending first (Kubernetes: a few
    seconds; the local gateway removes a replica before stopping it, so 0)."""
    graceful_timeout_seconds: float = 30.0
    """The longest to wait for accepted requests after the listener closes."""
    load_wait_seconds: float = DEFAULT_LOAD_WAIT_SECONDS
    """An inference request that arrives while the model is still loading is held this long
    and answered as soon as the model is ready (at most `max_queue` of them; 0: 503 at once).
    A client that retried each 503 in a tight loop would take the loading thread's time: a
    fresh replica polled every 5 ms loaded a scikit-learn pipeline 0.4 s slower than one left
    alone. A held request costs nothing until the model is ready."""
    threads: int | None = 1
    """Threads for numeric libraries' pools (BLAS, OpenMP), set with threadpoolctl. A replica
    is sized in cores and scaled out in processes; idle spinning pool threads would only
    inflate the CPU utilization the autoscaler reads. None leaves the libraries' defaults."""
    access_log: bool = False
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.max_queue < 0:
            raise ValueError(f"--max-queue must be 0 or more, not {self.max_queue}")
        if self.load_wait_seconds < 0:
            raise ValueError(f"--load-wait must be 0 or more, not {self.load_wait_seconds:g}")


@dataclass(frozen=True)
class ListenAddress:
    """Where a replica listens: TCP host and port, a unix socket path, an inherited file
    descriptor, or an already bound socket (for a process forked from a warm parent)."""

    host: str | None = None
    port: int | None = None
    unix: str | None = None
    fd: int | None = None
    sock: socket.socket | None = None

    @classmethod
    def tcp(cls, host: str, port: int) -> ListenAddress:
        return cls(host=host, port=port)

    @classmethod
    def unix_socket(cls, path: str) -> ListenAddress:
        return cls(unix=path)

    @classmethod
    def bound(cls, sock: socket.socket) -> ListenAddress:
        return cls(sock=sock)

    def __post_init__(self) -> None:
        given = [self.port is not None, self.unix is not None, self.fd is not None, self.sock]
        if sum(bool(g) for g in given) != 1:
            raise ValueError("listen on exactly one of: a TCP port, a unix socket, an fd, a socket")

    def describe(self) -> str:
        if self.unix is not None:
            return f"unix:{self.unix}"
        if self.fd is not None:
            return f"fd:{self.fd}"
        if self.sock is not None:
            name = self.sock.getsockname()
            return f"http://{name[0]}:{name[1]}" if isinstance(name, tuple) else f"unix:{name}"
        return f"http://{self.host or '127.0.0.1'}:{self.port}"
