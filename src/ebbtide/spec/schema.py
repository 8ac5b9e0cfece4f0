"""The resource's JSON schema, generated from the models, and `explain` built on it.

`ebbtide schema` prints `endpoint_json_schema()`; the CRD's OpenAPI schema is derived from
`endpoint_openapi_schema()`, a self-contained (no `$ref`) form of the same schema.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any

from ebbtide.core.errors import NotFoundError
from ebbtide.spec.models import API_VERSION, KIND, PLURAL, SHORT_NAMES, SINGULAR, InferenceEndpoint

RESOURCE_NAMES = {PLURAL, SINGULAR, *SHORT_NAMES, KIND.lower()}


def endpoint_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of an InferenceEndpoint, wire names, with `$defs`."""
    schema: dict[str, Any] = InferenceEndpoint.model_json_schema(by_alias=True, mode="validation")
    return schema


def endpoint_openapi_schema() -> dict[str, Any]:
    """The same schema with every `$ref` inlined and `title`s dropped: what a CRD embeds."""
    schema = endpoint_json_schema()
    definitions = schema.pop("$defs", {})
    inlined: dict[str, Any] = _inline(schema, definitions)
    return inlined


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, definitions)
    return {k: _inline(v, definitions) for k, v in node.items() if k != "title"}


def explain(path: str) -> str:
    """Field documentation like `kubectl explain inferenceendpoint.spec.autoscaling`."""
    resource, *fields = path.split(".")
    if resource.lower() not in RESOURCE_NAMES:
        raise NotFoundError(
            f"the server doesn't have a resource type {resource!r}; "
            f"try `ebbtide explain inferenceendpoint`"
        )
    node = endpoint_openapi_schema()
    walked: list[str] = []
    for name in fields:
        properties = _properties(node)
        if name not in properties:
            known = ", ".join(sorted(properties)) or "none"
            where = ".".join([SINGULAR, *walked])
            raise NotFoundError(f"field {name!r} does not exist in {where}; its fields: {known}")
        node = properties[name]
        walked.append(name)
    lines = [f"KIND:       {KIND}", f"VERSION:    {API_VERSION}", ""]
    if walked:
        lines.append(f"FIELD: {walked[-1]} <{_type_name(node)}>")
        lines.append("")
    lines.append("DESCRIPTION:")
    description = node.get("description") or InferenceEndpoint.__doc__ or ""
    lines.extend(textwrap.wrap(description, 76, initial_indent="    ", subsequent_indent="    "))
    properties = _properties(node)
    if properties:
        lines.extend(["", "FIELDS:"])
        required = set(_object_of(node).get("required", []))
        for name, child in properties.items():
            mark = " -required-" if name in required else ""
            lines.append(f"  {name}\t<{_type_name(child)}>{mark}")
            text = child.get("description", "")
            lines.extend(textwrap.wrap(text, 72, initial_indent="    ", subsequent_indent="    "))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _object_of(node: dict[str, Any]) -> dict[str, Any]:
    """The object schema inside an optional (`anyOf: [X, null]`) or an array of objects."""
    node = _non_null(node)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return _object_of(node["items"])
    return node


def _properties(node: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = _object_of(node).get("properties", {})
    return properties


def _type_name(node: dict[str, Any]) -> str:
    inner = _non_null(node)
    if inner.get("x-kubernetes-int-or-string"):
        return "Quantity"
    kind = inner.get("type", "object")
    if kind == "array":
        return f"[]{_type_name(inner.get('items', {}))}"
    if "enum" in inner or "const" in inner:
        return "string"
    return str(kind)


def _non_null(node: dict[str, Any]) -> dict[str, Any]:
    for option in node.get("anyOf", []):
        if option.get("type") != "null":
            return _non_null(option)
    return node
