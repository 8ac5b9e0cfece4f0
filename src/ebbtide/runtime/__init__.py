"""The model server every replica runs, its model repository and its loaders per format.

What the rest of ebbtide calls:

- `ModelRepository(root)`: `resolve(name, version)`, `add(...)`, `all()`.
- `load_model(reference, repository) -> LoadedModel` and `serve(loaded_or_location, address,
  settings) -> exit code`: serve in this process (a warm parent can load, then fork).
- `python -m ebbtide.runtime NAME[:VERSION] --port N | --unix PATH ...`: a replica process.
- `python -m ebbtide.runtime.zygote NAME[:VERSION] ... --control-fd N`: a warm process that
  loads a fork-safe model once and forks replicas on request (see its module docstring).
- Readiness: `GET /v2/health/ready` answers 200 once the model is loaded, 503 before and
  while draining.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebbtide.runtime.repository import ModelLocation, ModelMetadata, ModelRepository
    from ebbtide.runtime.server import LoadedModel, load_model, resolve, serve
    from ebbtide.runtime.settings import BatchingSettings, ListenAddress, ServerSettings

__all__ = [
    "BatchingSettings",
    "ListenAddress",
    "LoadedModel",
    "ModelLocation",
    "ModelMetadata",
    "ModelRepository",
    "ServerSettings",
    "load_model",
    "resolve",
    "serve",
]


_HOMES = ("ebbtide.runtime.repository", "ebbtide.runtime.settings", "ebbtide.runtime.server")
"""Where the names above live, lightest first."""


def __getattr__(name: str) -> Any:
    # Resolved on first use: importing a light submodule (the repository, for `ebbtide model
    # list`) must not load the server stack (uvicorn, starlette) with it.
    if name in __all__:
        for home in _HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'ebbtide.runtime' has no attribute {name!r}")
