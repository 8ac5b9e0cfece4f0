"""The model repository: `<root>/<name>/<version>/` holding a model file and `metadata.yaml`.

```
<root>/
  my-ml-model/
    v1/
      model.joblib      the model (model.onnx, model.py, model.ubj, model.lgb, model.pt, ...)
      metadata.yaml     optional: format, file, description, inputs, outputs, class, parameters
```

The root is `--repository`, else `$EBBTIDE_MODEL_REPOSITORY`, else `$EBBTIDE_HOME/models`.
Names and versions are checked before they touch the file system, so no reference can reach
outside the root.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ebbtide.core.errors import (
    AlreadyExistsError,
    InvalidNameError,
    ModelLoadError,
    ModelNotFoundError,
)
from ebbtide.core.paths import ebbtide_home

if TYPE_CHECKING:
    from ebbtide.runtime.tensors import Signature

REPOSITORY_ENV = "EBBTIDE_MODEL_REPOSITORY"
METADATA_FILE = "metadata.yaml"
# The same patterns as ebbtide.spec.models.ModelRef (kept here so a replica need not import
# pydantic; a test checks that the two agree).
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MAX_NAME_LENGTH = 63

FORMAT_BY_SUFFIX = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".onnx": "onnx",
    ".py": "python",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
    ".lgb": "lightgbm",
    ".pt": "torchscript",
    ".torchscript": "torchscript",
}
"""Formats recognized from the model file's suffix; `.json` (XGBoost) and `.txt` (LightGBM)
are ambiguous and need `format:` in the metadata file."""
FORMATS = ("sklearn", "onnx", "python", "xgboost", "lightgbm", "torchscript")


def default_root() -> Path:
    """`$EBBTIDE_MODEL_REPOSITORY`, else `$EBBTIDE_HOME/models`."""
    configured = os.environ.get(REPOSITORY_ENV)
    return Path(configured).expanduser() if configured else ebbtide_home() / "models"


def check_name(name: str) -> str:
    """A model name: a DNS-1123 label, as `spec.model.name`."""
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise InvalidNameError(
            f"model name {name!r} is not allowed: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def check_version(version: str) -> str:
    """A model version such as `v1` or `2024.06.1`, as `spec.model.version`."""
    if len(version) > MAX_NAME_LENGTH or not VERSION_PATTERN.match(version):
        raise InvalidNameError(
            f"model version {version!r} is not allowed: use letters, digits, '-', '_' and '.', "
            f"starting and ending with a letter or digit, at most {MAX_NAME_LENGTH} characters"
        )
    return version


def parse_reference(text: str) -> tuple[str, str | None]:
    """`NAME` or `NAME:VERSION`, both checked."""
    name, _, version = text.partition(":")
    check_name(name)
    if version:
        check_version(version)
    return name, version or None


@dataclass(frozen=True)
class ModelMetadata:
    """What `metadata.yaml` says; every field is optional."""

    format: str | None = None
    file: str | None = None
    description: str = ""
    signature: Signature | None = None
    class_name: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> ModelMetadata:
        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ModelLoadError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path} must hold a mapping (format:, inputs:, ...)")
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ModelMetadata:
        unknown = set(data) - {
            "format", "file", "description", "inputs", "outputs", "class", "parameters"
        }  # fmt: skip
        if unknown:
            raise ModelLoadError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        model_format = data.get("format")
        if model_format is not None and model_format not in FORMATS:
            raise ModelLoadError(
                f"{source}: format {model_format!r} is unknown; use one of {', '.join(FORMATS)}"
            )
        signature = None
        if "inputs" in data or "outputs" in data:
            # Here, not at the top: listing models (the CLI) should not load numpy.
            from ebbtide.runtime.tensors import Signature, TensorSpec

            try:
                signature = Signature(
                    inputs=tuple(TensorSpec.from_json(t) for t in data.get("inputs") or []),
                    outputs=tuple(TensorSpec.from_json(t) for t in data.get("outputs") or []),
                )
            except ValueError as error:
                raise ModelLoadError(f"{source}: {error}") from None
        return cls(
            format=model_format,
            file=data.get("file"),
            description=str(data.get("description") or ""),
            signature=signature,
            class_name=data.get("class"),
            parameters=dict(data.get("parameters") or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.format:
            data["format"] = self.format
        if self.file:
            data["file"] = self.file
        if self.description:
            data["description"] = self.description
        if self.class_name:
            data["class"] = self.class_name
        if self.signature is not None:
            data["inputs"] = [spec.as_json() for spec in self.signature.inputs]
            data["outputs"] = [spec.as_json() for spec in self.signature.outputs]
        if self.parameters:
            data["parameters"] = self.parameters
        return data

    def write(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.as_dict(), sort_keys=False))


@dataclass(frozen=True)
class ModelLocation:
    """A resolved model: where its file is, its format and its metadata."""

    name: str
    version: str
    directory: Path
    model_file: Path
    format: str
    metadata: ModelMetadata

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.version}"


class ModelRepository:
    """Models by name and version under one root folder."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def versions(self, name: str) -> list[str]:
        """The versions of a model, oldest first (natural order: v2 before v10)."""
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)]
        return sorted(found, key=_natural_key)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)
        )

    def resolve(self, name: str, version: str | None = None) -> ModelLocation:
        """The model `name` at `version` (the newest when None), or an error that says what was
        looked for and where."""
        check_name(name)
        if version is None:
            versions = self.versions(name)
            if not versions:
                raise ModelNotFoundError(
                    f"model {name!r} not found: no folder {self.root / name}/<version>/ "
                    f"(add one with `ebbtide model add {name} VERSION PATH`)"
                )
            version = versions[-1]
        directory = self.root / name / check_version(version)
        if not directory.is_dir():
            known = ", ".join(self.versions(name)) or "none"
            raise ModelNotFoundError(
                f"model {name}:{version} not found: no folder {directory} (versions of {name!r} "
                f"in {self.root}: {known}; add one with `ebbtide model add {name} {version} PATH`)"
            )
        metadata = ModelMetadata.read(directory / METADATA_FILE)
        model_file = _model_file(directory, metadata)
        return ModelLocation(
            name=name,
            version=version,
            directory=directory,
            model_file=model_file,
            format=_format_of(model_file, metadata),
            metadata=metadata,
        )

    def all(self) -> list[ModelLocation]:
        """Every model version in the repository; unreadable ones are left out."""
        found = []
        for name in self.names():
            for version in self.versions(name):
                try:
                    found.append(self.resolve(name, version))
                except (ModelLoadError, ModelNotFoundError):
                    continue
        return found

    def add(
        self,
        name: str,
        version: str,
        source: Path,
        metadata: ModelMetadata | None = None,
        replace_existing: bool = False,
    ) -> ModelLocation:
        """Copy a model file (or a folder holding one) in as `name:version`."""
        check_name(name)
        check_version(version)
        source = Path(source)
        if not source.exists():
            raise ModelNotFoundError(f"{source} does not exist; give a model file or folder")
        target = self.root / name / version
        if target.exists() and not replace_existing:
            raise AlreadyExistsError(
                f"model {name}:{version} already exists at {target}; use a new version, or "
                "--replace to overwrite it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            self._stage(source, staging, metadata)
            self._check_staged(source, staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if not any(target.parent.iterdir()):
                target.parent.rmdir()
        return self.resolve(name, version)

    @staticmethod
    def _stage(source: Path, staging: Path, metadata: ModelMetadata | None) -> None:
        if source.is_dir():
            shutil.copytree(source, staging, dirs_exist_ok=True)
        else:
            shutil.copy2(source, staging / f"model{source.suffix}")
        if metadata is not None:
            existing = ModelMetadata.read(staging / METADATA_FILE)
            merged = replace(
                existing,
                format=metadata.format or existing.format,
                description=metadata.description or existing.description,
                signature=metadata.signature or existing.signature,
                class_name=metadata.class_name or existing.class_name,
                parameters={**existing.parameters, **metadata.parameters},
            )
            if merged != ModelMetadata():
                merged.write(staging / METADATA_FILE)

    @staticmethod
    def _check_staged(source: Path, staging: Path) -> None:
        metadata = ModelMetadata.read(staging / METADATA_FILE)
        try:
            _format_of(_model_file(staging, metadata), metadata)
        except ModelLoadError:
            suffixes = ", ".join(sorted(FORMAT_BY_SUFFIX))
            raise ModelLoadError(
                f"cannot tell the format of {source}: give --format ({', '.join(FORMATS)}), or "
                f"a model file named model.<suffix> with one of {suffixes}"
            ) from None


def _model_file(directory: Path, metadata: ModelMetadata) -> Path:
    if metadata.file:
        candidate = (directory / metadata.file).resolve()
        if directory.resolve() not in candidate.parents:
            raise ModelLoadError(f"{directory / METADATA_FILE}: file {metadata.file!r} is outside")
        if not candidate.is_file():
            raise ModelLoadError(f"{directory / METADATA_FILE} names {metadata.file!r}: not found")
        return candidate
    candidates = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.stem == "model" and p.name != METADATA_FILE
    )
    if len(candidates) != 1:
        found = ", ".join(p.name for p in sorted(directory.iterdir())) or "nothing"
        raise ModelLoadError(
            f"{directory} needs exactly one model.* file (found: {found}); or name the file "
            f"with `file:` in {METADATA_FILE}"
        )
    return candidates[0]


def _format_of(model_file: Path, metadata: ModelMetadata) -> str:
    if metadata.format:
        return metadata.format
    detected = FORMAT_BY_SUFFIX.get(model_file.suffix.lower())
    if detected is None:
        raise ModelLoadError(
            f"cannot tell the format of {model_file.name}; set `format:` ({', '.join(FORMATS)}) "
            f"in {model_file.parent / METADATA_FILE}"
        )
    return detected


def _natural_key(version: str) -> list[Any]:
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", version)
    ]
