"""Example inference requests built from a model's Open Inference Protocol metadata."""

from __future__ import annotations

import random
from typing import Any

_INTEGER = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT = {"FP16", "FP32", "FP64"}


def example_request(metadata: dict[str, Any], rng: random.Random, rows: int = 1) -> dict[str, Any]:
    """A valid v2 infer request for the model described by `metadata` (`GET /v2/models/{m}`):
    every input filled with plausible values, variable dimensions set to `rows` or 1."""
    inputs = []
    for spec in metadata.get("inputs", []):
        shape = [
            rows if index == 0 and dim < 0 else max(dim, 1)
            for index, dim in enumerate(spec.get("shape", [-1]))
        ]
        count = 1
        for dim in shape:
            count *= dim
        datatype = spec.get("datatype", "FP32")
        inputs.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": datatype,
                "data": [_value(datatype, rng) for _ in range(count)],
            }
        )
    return {"inputs": inputs}


def _value(datatype: str, rng: random.Random) -> Any:
    if datatype in _FLOAT:
        return round(rng.uniform(0, 10), 3)
    if datatype in _INTEGER:
        return rng.randint(0, 10)
    if datatype == "BOOL":
        return rng.random() < 0.5
    return "example"
