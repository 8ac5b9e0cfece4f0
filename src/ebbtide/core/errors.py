"""The domain error tree. No HTTP codes here: only the HTTP layers map these to statuses.

EbbtideError
 ├── SpecError                  a resource file or object is invalid (carries its problems)
 │    └── SelectorError         a label selector that cannot be parsed
 ├── NotFoundError              no such resource, pod or model
 │    └── ModelNotFoundError    spec.model names nothing in the model repository
 ├── AlreadyExistsError         create of a name that exists
 ├── ConflictError              a write based on a stale resourceVersion
 ├── InvalidNameError           a model name or version that is not allowed
 ├── ModelLoadError             a model file exists but cannot be loaded
 │    └── MissingExtraError     the model's format needs an optional extra
 ├── InferenceError             a request could not be served
 │    ├── BadInputError         wrong shape, datatype, missing input (the caller's fault)
 │    │    └── PayloadTooLargeError   the request body exceeds the server's limit
 │    ├── ModelFailedError      the model raised while predicting (the model's fault)
 │    ├── NotReadyError         no model or replica ready to serve
 │    ├── OverloadedError       every replica is busy and the endpoint's queue is full
 │    └── ReplicaFailedError    a replica failed to answer (closed, timed out, garbled)
 ├── TraceError                 a request-arrival trace that cannot be read
 ├── ControlPlaneUnavailableError   the CLI cannot reach a running control plane
 └── KubernetesError            the Kubernetes API refused a request or cannot be reached
"""

from __future__ import annotations


class EbbtideError(Exception):
    """Base of every error ebbtide raises on purpose. `str(error)` is for people."""


class SpecError(EbbtideError):
    """An invalid resource. `problems` lists every error found, not just the first."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SelectorError(SpecError):
    """A label selector (`-l`) that cannot be parsed."""


class NotFoundError(EbbtideError):
    """The named thing does not exist."""


class ModelNotFoundError(NotFoundError):
    """`spec.model` names no model (or version) in the model repository."""


class AlreadyExistsError(EbbtideError):
    """Create of a resource whose name is taken."""


class ConflictError(EbbtideError):
    """A write based on a stale resourceVersion: someone else wrote first. Re-read and retry."""


class InvalidNameError(EbbtideError):
    """A model name or version with characters that are not allowed (it could escape the
    model repository)."""


class ModelLoadError(EbbtideError):
    """The model file was found but could not be loaded."""


class MissingExtraError(ModelLoadError):
    """The model's format needs an optional dependency: `pip install ebbtide[EXTRA]`."""


class InferenceError(EbbtideError):
    """A request could not be served."""


class BadInputError(InferenceError):
    """The request is malformed: wrong shape, datatype, missing input, bad JSON."""


class PayloadTooLargeError(BadInputError):
    """The request body is larger than the server accepts (`--max-body-bytes`)."""


class ModelFailedError(InferenceError):
    """The model raised while predicting; the server stays up."""


class NotReadyError(InferenceError):
    """Nothing is ready to serve this request yet."""


class OverloadedError(InferenceError):
    """Every replica is busy and the endpoint's queue is full (or waited too long): try later.

    `retry_after_seconds`, when known, is how long the caller should wait before retrying."""

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ReplicaFailedError(InferenceError):
    """A replica took the request but did not answer it properly (closed, timed out, garbled)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class TraceError(EbbtideError):
    """A request-arrival trace file that is missing, unreadable, or has no TIMESTAMP column."""


class ControlPlaneUnavailableError(EbbtideError):
    """The command needs a running control plane and none answers."""


class KubernetesError(EbbtideError):
    """The Kubernetes API refused a request, or cannot be reached; the message says which."""
