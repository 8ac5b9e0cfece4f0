"""Model formats behind one contract (`Model`): pick a loader by the location's format."""

from __future__ import annotations

from ebbtide.core.errors import ModelLoadError
from ebbtide.runtime.loaders.base import Model
from ebbtide.runtime.repository import FORMATS, ModelLocation


def create_model(location: ModelLocation) -> Model:
    """An unloaded model of the location's format; importing its library waits for load()."""
    if location.format == "sklearn":
        from ebbtide.runtime.loaders.sklearn import SklearnModel

        return SklearnModel(location)
    if location.format == "onnx":
        from ebbtide.runtime.loaders.onnx import OnnxModel

        return OnnxModel(location)
    if location.format == "python":
        from ebbtide.runtime.loaders.python_class import PythonModel

        return PythonModel(location)
    if location.format == "xgboost":
        from ebbtide.runtime.loaders.boosters import XGBoostModel

        return XGBoostModel(location)
    if location.format == "lightgbm":
        from ebbtide.runtime.loaders.boosters import LightGBMModel

        return LightGBMModel(location)
    if location.format == "torchscript":
        from ebbtide.runtime.loaders.torchscript import TorchScriptModel

        return TorchScriptModel(location)
    raise ModelLoadError(f"unknown format {location.format!r}; use one of {', '.join(FORMATS)}")


__all__ = ["Model", "create_model"]
