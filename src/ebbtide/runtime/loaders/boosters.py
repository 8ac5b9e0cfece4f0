"""Gradient-boosting boosters saved in their native formats.

- XGBoost (`model.ubj`, `model.xgb`, or `model.json` with `format: xgboost`; extra
  `ebbtide[xgboost]`).
- LightGBM (`model.lgb`, or `model.txt` with `format: lightgbm`; extra `ebbtide[lightgbm]`).

One input `input-0` of shape [-1, features] and one output `predict`. Both libraries use
OpenMP thread pools (`parameters.threads`, default 1), so neither is fork-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ebbtide.runtime.loaders.base import Arrays, Model, import_extra, load_failed
from ebbtide.runtime.tensors import Signature, TensorSpec, datatype_of

INPUT_NAME = "input-0"


class _Booster(Model):
    fork_safe = False
    blocking = True
    input_datatype = "FP32"

    def _derive(self, features: int) -> None:
        probe = np.asarray(self._run(np.zeros((1, features), dtype=np.float32)))
        derived = Signature(
            inputs=(TensorSpec(INPUT_NAME, self.input_datatype, (-1, features)),),
            outputs=(TensorSpec("predict", datatype_of(probe.dtype), (-1, *probe.shape[1:])),),
        )
        self.signature = Signature(
            inputs=self.signature.inputs or derived.inputs,
            outputs=self.signature.outputs or derived.outputs,
        )

    def _run(self, features: np.ndarray[Any, Any]) -> Any:
        raise NotImplementedError

    def predict_now(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        result = np.asarray(self._run(self._only_input(inputs)))
        return dict.fromkeys(outputs, result)


class XGBoostModel(_Booster):
    format = "xgboost"

    def _load(self) -> None:
        xgboost = import_extra("xgboost", "xgboost", self.format)
        try:
            booster = xgboost.Booster()
            booster.load_model(str(self.location.model_file))
            booster.set_param({"nthread": int(self._parameter("threads", 1))})
        except Exception as error:
            raise load_failed(self.location, error) from error
        self._booster = booster
        self._derive(int(booster.num_features()))

    def _run(self, features: np.ndarray[Any, Any]) -> Any:
        return self._booster.inplace_predict(features)


class LightGBMModel(_Booster):
    format = "lightgbm"
    input_datatype = "FP64"

    def _load(self) -> None:
        lightgbm = import_extra("lightgbm", "lightgbm", self.format)
        try:
            booster = lightgbm.Booster(model_file=str(self.location.model_file))
        except Exception as error:
            raise load_failed(self.location, error) from error
        self._booster = booster
        self._threads = int(self._parameter("threads", 1))
        self._derive(int(booster.num_feature()))

    def _run(self, features: np.ndarray[Any, Any]) -> Any:
        return self._booster.predict(features, num_threads=self._threads)
