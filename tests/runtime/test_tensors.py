"""Decoding and encoding v2 tensors: every datatype, flat or nested, and each clear error."""

from __future__ import annotations

import numpy as np
import pytest

from ebbtide.core.errors import BadInputError
from ebbtide.runtime.tensors import DTYPES, TensorSpec, decode, encode

VALUES = {
    "BOOL": [True, False, True, True],
    "INT8": [-128, 0, 5, 127],
    "INT16": [-32768, 1, 2, 32767],
    "INT32": [-(2**31), 1, 2, 2**31 - 1],
    "INT64": [-(2**63), 1, 2, 2**63 - 1],
    "UINT8": [0, 1, 2, 255],
    "UINT16": [0, 1, 2, 65535],
    "UINT32": [0, 1, 2, 2**32 - 1],
    "UINT64": [0, 1, 2, 2**64 - 1],
    "FP16": [0.5, -1.0, 2.25, 1024.0],
    "FP32": [0.5, -1.0, 2.25, 1e10],
    "FP64": [0.1, -1e300, 2.25, 3],
    "BYTES": ["a", "béta", "", "ok"],
}


@pytest.mark.parametrize("datatype", list(DTYPES))
@pytest.mark.parametrize("nested", [False, True])
def test_every_datatype_round_trips_flat_or_nested(datatype: str, nested: bool) -> None:
    flat = VALUES[datatype]
    data = [flat[:2], flat[2:]] if nested else flat
    array = decode("t", datatype, [2, 2], data, None)
    assert array.shape == (2, 2)
    assert array.dtype == DTYPES[datatype]
    encoded = encode("t", array)
    assert encoded == {"name": "t", "datatype": datatype, "shape": [2, 2], "data": flat}


def test_shape_must_match_the_number_of_values() -> None:
    with pytest.raises(BadInputError, match=r"shape \[2, 3\] needs 6 values but data has 4"):
        decode("x", "FP32", [2, 3], [1, 2, 3, 4], None)


def test_ragged_nested_data_is_refused() -> None:
    with pytest.raises(BadInputError, match="not a regular array"):
        decode("x", "FP32", [2, 2], [[1, 2], [3]], None)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT32", [1.5, 2.0], "INT32 needs integers"),
        ("UINT64", [1, 2**64], "outside UINT64's range"),
        ("BOOL", [1, 0], "does not fit datatype BOOL"),
        ("FP32", ["a", "b"], "does not fit datatype FP32"),
        ("UINT8", [1, 256], "outside UINT8's range 0..255"),
        ("INT8", [-129, 0], "outside INT8's range"),
        ("FP128", [1, 2], "unknown datatype 'FP128'"),
    ],
)
def test_values_that_do_not_fit_the_datatype_are_refused(
    datatype: str, data: list[object], message: str
) -> None:
    with pytest.raises(BadInputError, match=message):
        decode("x", datatype, [2], data, None)


def test_the_signature_checks_shape_and_allows_only_safe_conversions() -> None:
    spec = TensorSpec("x", "FP64", (-1, 3))
    converted = decode("x", "FP32", [1, 3], [1, 2, 3], spec)
    assert converted.dtype == np.float64
    assert decode("x", "INT64", [2, 3], [[1, 2, 3], [4, 5, 6]], spec).dtype == np.float64
    with pytest.raises(BadInputError, match=r"shape \[1, 4\] does not match the model's \[-1, 3\]"):
        decode("x", "FP64", [1, 4], [1, 2, 3, 4], spec)
    with pytest.raises(BadInputError, match=r"shape \[3\] does not match"):
        decode("x", "FP64", [3], [1, 2, 3], spec)
    with pytest.raises(BadInputError, match="BYTES cannot be used as the model's FP64"):
        decode("x", "BYTES", [1, 3], ["a", "b", "c"], spec)
    narrow = TensorSpec("x", "INT8", (-1,))
    with pytest.raises(BadInputError, match="outside INT8's range"):
        decode("x", "INT64", [1], [1000], narrow)


def test_empty_batches_decode() -> None:
    array = decode("x", "INT32", [0, 3], [], TensorSpec("x", "INT32", (-1, 3)))
    assert array.shape == (0, 3)


def test_unknown_signature_datatypes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown datatype 'FLOAT'"):
        TensorSpec("x", "FLOAT", (1,))
