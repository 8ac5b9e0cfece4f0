"""PyTorch TorchScript modules (`model.pt`; extra `ebbtide[torch]`).

TorchScript files carry no tensor names, so `metadata.yaml` must declare `inputs` and
`outputs`; inputs are passed positionally in that order, and a tuple (or dict) result maps to
the declared outputs. Not fork-safe: torch keeps intra-op thread pools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ebbtide.core.errors import ModelFailedError, ModelLoadError
from ebbtide.runtime.loaders.base import Arrays, Model, import_extra, load_failed


class TorchScriptModel(Model):
    format = "torchscript"
    fork_safe = False
    blocking = True

    def _load(self) -> None:
        if not self.signature.inputs or not self.signature.outputs:
            raise ModelLoadError(
                f"{self.location.reference}: a TorchScript model needs `inputs:` and `outputs:` "
                f"in {self.location.directory / 'metadata.yaml'} (names, datatypes, shapes)"
            )
        self._torch = import_extra("torch", "torch", self.format)
        self._torch.set_num_threads(int(self._parameter("threads", 1)))
        try:
            module = self._torch.jit.load(str(self.location.model_file), map_location="cpu")
        except Exception as error:
            raise load_failed(self.location, error) from error
        module.eval()
        self._module = module

    def predict_now(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        tensors = [self._torch.from_numpy(inputs[spec.name]) for spec in self.signature.inputs]
        with self._torch.inference_mode():
            result = self._module(*tensors)
        if isinstance(result, dict):
            produced = {name: result[name] for name in outputs}
        else:
            values = result if isinstance(result, tuple | list) else (result,)
            names = [spec.name for spec in self.signature.outputs]
            if len(values) != len(names):
                raise ModelFailedError(
                    f"the module returned {len(values)} tensors; metadata declares {len(names)}"
                )
            produced = dict(zip(names, values, strict=True))
        return {name: np.asarray(produced[name].detach().numpy()) for name in outputs}
