"""scikit-learn estimators saved with joblib or pickle (`model.joblib`, `model.pkl`).

Outputs are named after the estimator's methods: `predict` (the default) and, for
classifiers, `predict_proba` when a request asks for it. Loading unpickles the file, which
runs code from it: ebbtide loads pickles only from the model repository (see
docs/model-server.md). Fork-safe: estimators hold plain numpy arrays and start no threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ebbtide.core.errors import ModelLoadError
from ebbtide.runtime.loaders.base import Arrays, Model, load_failed
from ebbtide.runtime.tensors import Signature, TensorSpec, datatype_of

INPUT_NAME = "input-0"
METHODS = ("predict", "predict_proba")


class SklearnModel(Model):
    format = "sklearn"
    fork_safe = True
    blocking = True

    def _load(self) -> None:
        import joblib

        try:
            estimator = joblib.load(self.location.model_file)
        except Exception as error:
            raise load_failed(self.location, error) from error
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError(
                f"{self.location.model_file} holds a {type(estimator).__name__}, which has no "
                "predict(); save a fitted scikit-learn estimator or pipeline"
            )
        self._estimator = estimator
        if not self.signature.outputs or not self.signature.inputs:
            derived = derive_signature(estimator)
            self.signature = Signature(
                inputs=self.signature.inputs or derived.inputs,
                outputs=self.signature.outputs or derived.outputs,
            )
        unknown = [s.name for s in self.signature.outputs if s.name not in METHODS]
        if unknown:
            raise ModelLoadError(
                f"{self.location.reference}: outputs {unknown} are not estimator methods; "
                f"name outputs {' or '.join(METHODS)}"
            )

    @property
    def default_outputs(self) -> tuple[str, ...]:
        return ("predict",)

    def predict_now(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        features = self._only_input(inputs)
        return {name: getattr(self._estimator, name)(features) for name in outputs}


def derive_signature(estimator: Any) -> Signature:
    """Inputs and outputs read off a fitted estimator (`n_features_in_`, `classes_`)."""
    features = int(getattr(estimator, "n_features_in_", -1))
    inputs = (TensorSpec(INPUT_NAME, "FP64", (-1, features)),)
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        label_type = datatype_of(np.asarray(classes).dtype)
        outputs = [TensorSpec("predict", label_type, (-1,))]
        if callable(getattr(estimator, "predict_proba", None)):
            outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(classes))))
    else:
        targets = int(getattr(estimator, "n_outputs_", 1))
        outputs = [TensorSpec("predict", "FP64", (-1,) if targets == 1 else (-1, targets))]
    return Signature(inputs=inputs, outputs=tuple(outputs))
