"""The small async contract every model format implements: load, predict, unload, ready.

A loader turns a `ModelLocation` into something that answers `predict(inputs, outputs,
parameters)` with numpy arrays. Everything about HTTP, validation against the signature,
batching and metrics lives above it, in `ebbtide.runtime.dataplane`, so a new format is one
small class.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from ebbtide.core.errors import BadInputError, MissingExtraError, ModelLoadError
from ebbtide.runtime.repository import ModelLocation
from ebbtide.runtime.tensors import Signature

Arrays = dict[str, np.ndarray[Any, Any]]


class Model(ABC):
    """One loaded model. Subclasses set `format`, `fork_safe` and implement `_load`, and either
    `predict_now` (and set `blocking`) or `predict`."""

    format: ClassVar[str]
    fork_safe: bool = False
    """Whether a process may fork after `load()` and serve from the child. False where the
    format's runtime starts threads (OpenMP, onnxruntime, torch): they do not survive a fork."""
    blocking: ClassVar[bool] = False
    """True where the work is one call into a native library that never awaits
    (`predict_now`): the server may run it in a worker thread, so that its event loop keeps
    reading and queueing requests while the model computes."""
    fork_safety_set_by_load: ClassVar[bool] = False
    """True where only `load()` can tell `fork_safe` (a Python class declares it); otherwise
    the class attribute answers before loading, so a warm process need not load in vain."""

    def __init__(self, location: ModelLocation) -> None:
        self.location = location
        self.signature = location.metadata.signature or Signature()
        self._ready = False

    @property
    def ready(self) -> bool:
        """True between a successful `load()` and `unload()`."""
        return self._ready

    @property
    def default_outputs(self) -> tuple[str, ...]:
        """The outputs a request gets when it names none: every declared output."""
        return tuple(spec.name for spec in self.signature.outputs)

    async def load(self) -> None:
        """Read the model file; fill in `signature` where metadata left it unset. The reading
        runs in a worker thread so that the server answers liveness probes meanwhile."""
        await asyncio.to_thread(self._load)
        self._ready = True

    @abstractmethod
    def _load(self) -> None: ...

    async def predict(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        """Run the model. `inputs` are already checked against `signature`; `outputs` lists
        the output names wanted (never empty); returns exactly those."""
        return self.predict_now(inputs, outputs, parameters)

    def predict_now(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        """`predict` as a plain call, for formats that are `blocking`."""
        raise NotImplementedError(f"{type(self).__name__} predicts only with `await predict()`")

    async def unload(self) -> None:
        """Release what `load()` took."""
        self._ready = False

    def _parameter(self, name: str, default: Any) -> Any:
        return self.location.metadata.parameters.get(name, default)

    def _only_input(self, inputs: Arrays) -> np.ndarray[Any, Any]:
        if len(inputs) != 1:
            raise BadInputError(
                f"a {self.format} model takes exactly one input, got {len(inputs)}: "
                f"{', '.join(inputs) or 'none'}"
            )
        return next(iter(inputs.values()))


def import_extra(module: str, extra: str, model_format: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"the {model_format} format needs {module}, which is not installed: "
            f"pip install 'ebbtide[{extra}]'"
        ) from None


def load_failed(location: ModelLocation, error: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load {location.reference} ({location.format}) from {location.model_file}: "
        f"{type(error).__name__}: {error}"
    )
