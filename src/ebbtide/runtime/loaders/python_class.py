"""A model written as a Python class (`model.py`), as MLServer's and KServe's model classes.

```python
class Model:
    fork_safe = True                  # optional; default False

    def __init__(self, model_dir):     # optional argument: the model's folder
        self.model_dir = model_dir

    def load(self):                    # optional; may be async
        ...

    def predict(self, inputs, parameters):   # may be async
        # inputs: {name: numpy array}; parameters: the request's parameters
        return {"output-0": inputs["input-0"] * 2}   # or one array
```

`metadata.yaml` names the class (`class: Model`) when the file defines several, and declares
`inputs` and `outputs`; without them any inputs are accepted and outputs are whatever
`predict` returns. The file runs as code when loaded: only from the model repository.
A synchronous `predict` runs on the server's event loop; write `async def predict` for models
that wait on I/O.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ebbtide.core.errors import ModelFailedError, ModelLoadError
from ebbtide.runtime.loaders.base import Arrays, Model, load_failed

SINGLE_OUTPUT = "output-0"


class PythonModel(Model):
    format = "python"
    fork_safety_set_by_load = True

    def _load(self) -> None:
        raise NotImplementedError  # load() is overridden: the user's load may be async

    async def load(self) -> None:
        user_class = self._user_class()
        try:
            takes_folder = len(inspect.signature(user_class).parameters) > 0
            self._instance = user_class(self.location.directory) if takes_folder else user_class()
            user_load = getattr(self._instance, "load", None)
            if inspect.iscoroutinefunction(user_load):
                await user_load()
            elif callable(user_load):
                await asyncio.to_thread(user_load)
        except Exception as error:
            raise load_failed(self.location, error) from error
        self._async_predict = inspect.iscoroutinefunction(self._instance.predict)
        self.fork_safe = bool(getattr(self._instance, "fork_safe", False))
        self._ready = True

    def _user_class(self) -> type[Any]:
        module_name = f"ebbtide_model_{self.location.name}_{self.location.version}".replace(
            "-", "_"
        ).replace(".", "_")
        spec = importlib.util.spec_from_file_location(module_name, self.location.model_file)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {self.location.model_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise load_failed(self.location, error) from error
        wanted = self.location.metadata.class_name
        if wanted:
            found = getattr(module, wanted, None)
            if not inspect.isclass(found):
                raise ModelLoadError(f"{self.location.model_file} defines no class {wanted!r}")
            return found
        candidates = [
            value
            for value in vars(module).values()
            if inspect.isclass(value)
            and value.__module__ == module_name
            and callable(getattr(value, "predict", None))
        ]
        if len(candidates) != 1:
            names = ", ".join(c.__name__ for c in candidates) or "none"
            raise ModelLoadError(
                f"{self.location.model_file} must define one class with predict() (found: "
                f"{names}); or name it with `class:` in metadata.yaml"
            )
        return candidates[0]

    async def predict(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        result = self._instance.predict(inputs, dict(parameters))
        if self._async_predict or inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Mapping):
            names = [spec.name for spec in self.signature.outputs] or [SINGLE_OUTPUT]
            result = {names[0]: result}
        produced = {str(name): np.asarray(value) for name, value in result.items()}
        if not outputs:
            return produced
        missing = [name for name in outputs if name not in produced]
        if missing:
            raise ModelFailedError(
                f"predict() returned {', '.join(produced) or 'nothing'}, not {', '.join(missing)}"
            )
        return {name: produced[name] for name in outputs}

    async def unload(self) -> None:
        unload = getattr(getattr(self, "_instance", None), "unload", None)
        if callable(unload):
            result = unload()
            if inspect.isawaitable(result):
                await result
        await super().unload()
