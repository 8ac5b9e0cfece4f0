"""Request and response bodies of the Open Inference Protocol v2 and KServe v1 (pure functions).

v2 `POST .../infer`:  {"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype",
"data", "parameters"?}], "outputs"?: [{"name", "parameters"?}]}. v1 `POST ...:predict`:
{"instances": [...]} (rows) or {"inputs": [...] | {name: [...]}}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ebbtide.core.errors import BadInputError
from ebbtide.runtime.tensors import Signature, TensorSpec, decode, encode

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class InferRequest:
    """A decoded request: arrays checked against the signature, and the outputs wanted."""

    inputs: Arrays
    outputs: tuple[str, ...]
    parameters: Mapping[str, Any]
    id: str | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadInputError("the request body is empty; send a JSON object")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        # The decoder recurses once per nesting level and stops near the interpreter's
        # recursion limit; a body nested that deep is no tensor request.
        raise BadInputError(
            "the request body nests JSON arrays or objects too deeply to decode; send each "
            "tensor's data flat (row-major) with its shape"
        ) from None
    if not isinstance(data, dict):
        raise BadInputError("the request body must be a JSON object")
    return data


def parse_v2(body: bytes, signature: Signature, default_outputs: Sequence[str]) -> InferRequest:
    """Decode a v2 infer request, or raise BadInputError naming the problem."""
    data = parse_json(body)
    raw_inputs = data.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadInputError('the request needs "inputs": a list of tensors')
    inputs: Arrays = {}
    for raw in raw_inputs:
        name, array = _v2_input(raw, signature)
        if name in inputs:
            raise BadInputError(f"input {name!r} is given twice")
        inputs[name] = array
    _check_names(inputs, signature)
    request_id = data.get("id")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInputError('"parameters" must be a JSON object')
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(data.get("outputs"), signature, default_outputs),
        parameters=parameters,
        id=None if request_id is None else str(request_id),
    )


def _v2_input(raw: Any, signature: Signature) -> tuple[str, np.ndarray[Any, Any]]:
    if not isinstance(raw, dict):
        raise BadInputError("each input must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str):
        raise BadInputError('an input has no "name"')
    missing = [key for key in ("shape", "datatype", "data") if key not in raw]
    if missing:
        raise BadInputError(f"input {name!r} has no {', '.join(missing)}")
    shape = raw["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise BadInputError(f"input {name!r}: shape must be a list of non-negative integers")
    datatype = raw["datatype"]
    if not isinstance(datatype, str):
        raise BadInputError(f"input {name!r}: datatype must be a string such as FP32")
    expected = signature.input(name)
    if expected is None and signature.inputs:
        known = ", ".join(spec.name for spec in signature.inputs)
        raise BadInputError(f"unknown input {name!r}; the model takes: {known}")
    return name, decode(name, datatype, shape, raw["data"], expected)


def _check_names(inputs: Mapping[str, Any], signature: Signature) -> None:
    missing = [spec.name for spec in signature.inputs if spec.name not in inputs]
    if missing:
        raise BadInputError(
            f"missing input {', '.join(repr(m) for m in missing)}; the model takes: "
            f"{', '.join(_describe(spec) for spec in signature.inputs)}"
        )


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} ({spec.datatype} {list(spec.shape)})"


def _requested_outputs(
    raw: Any, signature: Signature, default_outputs: Sequence[str]
) -> tuple[str, ...]:
    if raw is None:
        return tuple(default_outputs)
    if not isinstance(raw, list) or not all(isinstance(o, dict) and "name" in o for o in raw):
        raise BadInputError('"outputs" must be a list of objects with a "name"')
    names = tuple(str(output["name"]) for output in raw)
    if signature.outputs:
        known = {spec.name for spec in signature.outputs}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BadInputError(
                f"unknown output {', '.join(repr(u) for u in unknown)}; the model gives: "
                f"{', '.join(sorted(known))}"
            )
    return names or tuple(default_outputs)


def v2_response(
    model_name: str, model_version: str, request_id: str | None, outputs: Arrays
) -> dict[str, Any]:
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [encode(name, array) for name, array in outputs.items()]
    return response


def model_metadata(
    name: str, version: str, platform: str, signature: Signature, description: str
) -> dict[str, Any]:
    """`GET /v2/models/{m}`: name, versions, platform and the tensor signatures."""
    metadata: dict[str, Any] = {
        "name": name,
        "versions": [version],
        "platform": platform,
        "inputs": [spec.as_json() for spec in signature.inputs],
        "outputs": [spec.as_json() for spec in signature.outputs],
    }
    if description:
        metadata["parameters"] = {"description": description}
    return metadata


def parse_v1(body: bytes, signature: Signature, default_outputs: Sequence[str]) -> InferRequest:
    """Decode a KServe v1 predict request: `instances` (rows) or `inputs` (rows or columns)."""
    data = parse_json(body)
    if "instances" in data:
        rows = data["instances"]
    elif "inputs" in data:
        rows = data["inputs"]
    else:
        raise BadInputError('a v1 request needs "instances" (a list of rows) or "inputs"')
    if isinstance(rows, dict):
        columns = rows
    elif isinstance(rows, list) and rows:
        columns = _columns(rows, signature)
    else:
        raise BadInputError('"instances" must be a non-empty list of rows')
    inputs = {name: _v1_column(name, values, signature) for name, values in columns.items()}
    _check_names(inputs, signature)
    return InferRequest(inputs=inputs, outputs=tuple(default_outputs), parameters={})


def _columns(rows: list[Any], signature: Signature) -> dict[str, Any]:
    if all(isinstance(row, dict) for row in rows):
        names = {name for row in rows for name in row}
        try:
            return {name: [row[name] for row in rows] for name in names}
        except KeyError as error:
            raise BadInputError(f"every instance needs input {error.args[0]!r}") from None
    if len(signature.inputs) > 1:
        raise BadInputError(
            "this model takes several inputs; send each instance as an object: "
            + ", ".join(spec.name for spec in signature.inputs)
        )
    name = signature.inputs[0].name if signature.inputs else "input-0"
    return {name: rows}


def _v1_column(name: str, values: Any, signature: Signature) -> np.ndarray[Any, Any]:
    expected = signature.input(name)
    if expected is None and signature.inputs:
        known = ", ".join(spec.name for spec in signature.inputs)
        raise BadInputError(f"unknown input {name!r}; the model takes: {known}")
    try:
        shape = np.shape(values)
    except ValueError as error:
        raise BadInputError(f"input {name!r}: rows are not all the same length: {error}") from None
    datatype = expected.datatype if expected is not None else _guess_datatype(values)
    return decode(name, datatype, list(shape), values, expected)


def _guess_datatype(values: Any) -> str:
    kind = np.asarray(values).dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}.get(kind, "BYTES")


def v1_response(outputs: Arrays) -> dict[str, Any]:
    """`{"predictions": [...]}`: the output's rows, or one object per row with several outputs."""
    if len(outputs) == 1:
        return {"predictions": _rows(next(iter(outputs.values())))}
    columns = {name: _rows(array) for name, array in outputs.items()}
    count = len(next(iter(columns.values()))) if columns else 0
    return {"predictions": [{name: col[i] for name, col in columns.items()} for i in range(count)]}


def _rows(array: np.ndarray[Any, Any]) -> list[Any]:
    if array.dtype.kind in "SO":
        return [_text(item) for item in array.tolist()]
    return list(np.asarray(array).tolist())


def _text(item: Any) -> Any:
    if isinstance(item, bytes):
        return item.decode("utf-8", "replace")
    if isinstance(item, list):
        return [_text(i) for i in item]
    return item
