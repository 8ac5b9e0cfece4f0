"""Tensors on the wire: Open Inference Protocol v2 datatypes, signatures, decoding and encoding.

A request tensor is `{"name", "shape", "datatype", "data"}` with `data` flat (row-major) or
nested. Decoding turns it into a numpy array of the declared shape and checks it against the
model's signature; encoding turns a model's output array back into a response tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ebbtide.core.errors import BadInputError

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Every v2 datatype and the numpy dtype it decodes to (BYTES: Python `str` objects)."""

_KINDS_ACCEPTED = {
    # JSON integers are fine where floats are declared; JSON floats are never silently
    # truncated to integers.
    "b": "b",
    "i": "iu",
    "u": "iu",
    "f": "iuf",
    "O": "USO",
}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype; text and objects are BYTES."""
    if dtype.kind in "USO":
        return "BYTES"
    for name, candidate in DTYPES.items():
        if candidate == dtype:
            return name
    raise BadInputError(f"the model produced {dtype}, which has no v2 datatype")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: its name, v2 datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in DTYPES:
            raise ValueError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"use one of {', '.join(DTYPES)}"
            )

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        """Read `{"name", "datatype", "shape"}`, as the metadata file and v2 metadata hold it."""
        try:
            return cls(
                name=str(data["name"]),
                datatype=str(data.get("datatype", "FP32")).upper(),
                shape=tuple(int(dim) for dim in data.get("shape", [-1])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"bad tensor description {data!r}: {error}") from None

    @property
    def batchable(self) -> bool:
        """Whether the first dimension is variable, so requests can be stacked along it."""
        return len(self.shape) > 0 and self.shape[0] == -1


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives. Empty inputs mean "whatever the request sends"."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)

    @property
    def batchable(self) -> bool:
        """Whether every tensor has a variable first dimension (needed for batching)."""
        return all(spec.batchable for spec in (*self.inputs, *self.outputs))


def decode(
    name: str, datatype: str, shape: Sequence[int], data: Any, expected: TensorSpec | None
) -> np.ndarray[Any, Any]:
    """A request tensor as a numpy array, checked against the model's `expected` input."""
    target = DTYPES.get(datatype)
    if target is None:
        raise BadInputError(
            f"input {name!r}: unknown datatype {datatype!r}; use one of {', '.join(DTYPES)}"
        )
    try:
        array = np.asarray(data) if datatype != "BYTES" else np.asarray(data, dtype=object)
    except ValueError as error:
        raise BadInputError(f"input {name!r}: data is not a regular array: {error}") from None
    if array.size != math.prod(shape):
        raise BadInputError(
            f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} values but data has "
            f"{array.size}"
        )
    if array.size and target.kind in "iu" and array.dtype.kind in "fO":
        array = _big_integers(name, data, datatype, array.shape)
    if array.size and array.dtype.kind not in _KINDS_ACCEPTED[target.kind]:
        raise BadInputError(
            f"input {name!r}: data of kind {array.dtype} does not fit datatype {datatype}"
        )
    array = _cast(name, array, target, datatype).reshape(tuple(shape))
    if expected is not None:
        array = _conform(name, array, datatype, expected)
    return array


def _big_integers(
    name: str, data: Any, datatype: str, shape: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    """Integers beyond int64 (UINT64's upper half), which numpy would read as floats."""
    items = np.asarray(data, dtype=object).ravel().tolist()
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        raise BadInputError(f"input {name!r}: datatype {datatype} needs integers in data")
    limits = np.iinfo(DTYPES[datatype])
    if min(items) < limits.min or max(items) > limits.max:
        raise BadInputError(
            f"input {name!r}: a value is outside {datatype}'s range {limits.min}..{limits.max}"
        )
    return np.asarray(items, dtype=object).reshape(shape).astype(DTYPES[datatype])


def _cast(
    name: str, array: np.ndarray[Any, Any], target: np.dtype[Any], datatype: str
) -> np.ndarray[Any, Any]:
    if target.kind in "iu" and array.size:
        limits = np.iinfo(target)
        if array.min() < limits.min or array.max() > limits.max:
            raise BadInputError(
                f"input {name!r}: a value is outside {datatype}'s range {limits.min}..{limits.max}"
            )
    if target.kind == "O":
        return array
    return array.astype(target, copy=False)


def _conform(
    name: str, array: np.ndarray[Any, Any], datatype: str, expected: TensorSpec
) -> np.ndarray[Any, Any]:
    """Check the shape against the signature and convert to its datatype where that is safe."""
    if len(array.shape) != len(expected.shape) or any(
        want not in (-1, got) for want, got in zip(expected.shape, array.shape, strict=True)
    ):
        raise BadInputError(
            f"input {name!r}: shape {list(array.shape)} does not match the model's "
            f"{list(expected.shape)} (-1 means any size)"
        )
    if datatype == expected.datatype:
        return array
    wanted = DTYPES[expected.datatype]
    convertible = wanted.kind != "O" and array.dtype.kind != "O"
    if not convertible or not np.can_cast(array.dtype, wanted, "same_kind"):
        raise BadInputError(
            f"input {name!r}: datatype {datatype} cannot be used as the model's "
            f"{expected.datatype}; send {expected.datatype}"
        )
    return _cast(name, array, wanted, expected.datatype)


def encode(name: str, array: Any) -> dict[str, Any]:
    """A model output as a v2 response tensor with flat data."""
    array = np.asarray(array)
    datatype = datatype_of(array.dtype)
    flat = array.ravel()
    if datatype == "BYTES":
        data: list[Any] = [
            item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in flat
        ]
    else:
        data = flat.tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}
