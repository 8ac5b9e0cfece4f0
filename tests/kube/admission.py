"""What the Kubernetes API server does to a custom resource at `kubectl apply`, offline.

In the order the API server applies them: route by apiVersion/kind, check metadata.name (a
DNS-1123 subdomain for custom resources), reject unknown fields (kubectl's default strict
field validation), apply the schema's defaults, validate against the OpenAPI v3 schema
(draft 4 semantics, as OpenAPI 3.0 uses: boolean exclusive bounds), then evaluate the
`x-kubernetes-validations` CEL rules where their field is present, reporting each failure at
its `fieldPath` with its `messageExpression` (or `message`), as a server with CEL does.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import celpy
import jsonschema

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def admission_errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Every reason the API server would refuse `obj`; empty when it would store it."""
    spec = crd["spec"]
    version = spec["versions"][0]
    expected = f"{spec['group']}/{version['name']}"
    if obj.get("apiVersion") != expected or obj.get("kind") != spec["names"]["kind"]:
        return [f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"']
    errors = []
    name = (obj.get("metadata") or {}).get("name", "")
    if not isinstance(name, str) or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain")
    schema = version["schema"]["openAPIV3Schema"]
    body = {key: value for key, value in obj.items() if key != "metadata"}
    errors.extend(unknown_fields(schema, body, ""))
    defaulted = with_defaults(schema, body)
    validator = jsonschema.Draft4Validator(schema)
    for error in validator.iter_errors(defaulted):
        path = ".".join(str(part) for part in error.absolute_path)
        errors.append(f"{path}: {error.message}")
    if not errors:  # as the API server does, no CEL on an object of the wrong shape
        errors.extend(rule_errors(schema, defaulted, ""))
    return errors


def unknown_fields(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Fields the schema does not declare (the API server would prune them; kubectl's strict
    field validation turns that into an error)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, child in value.items():
            if key not in schema["properties"]:
                found.append(f'{path}.{key}: unknown field "{key}"')
            else:
                found.extend(unknown_fields(schema["properties"][key], child, f"{path}.{key}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found.extend(unknown_fields(schema["items"], item, f"{path}[{index}]"))
    return found


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in where fields are missing."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = with_defaults(child, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [with_defaults(schema["items"], item) for item in value]
    return value


def rule_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Failures of the CEL rules on every node that is present."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        if not evaluate(rule["rule"], value):
            where = path + rule.get("fieldPath", "")
            message = rule["message"]
            if "messageExpression" in rule:
                message = str(evaluate_value(rule["messageExpression"], value))
            errors.append(f"{where or '<root>'}: Invalid value: {message}")
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                errors.extend(rule_errors(child, value[key], f"{path}.{key}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors.extend(rule_errors(schema["items"], item, f"{path}[{index}]"))
    return errors


def evaluate_value(expression: str, value: Any) -> Any:
    """A CEL expression's value with `self` bound to `value`."""
    environment = celpy.Environment()
    program = environment.program(environment.compile(expression))
    return program.evaluate({"self": celpy.json_to_cel(value)})


def evaluate(rule: str, value: Any) -> bool:
    """A CEL rule's verdict with `self` bound to `value`; an evaluation error fails it."""
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule))
    try:
        result = program.evaluate({"self": celpy.json_to_cel(value)})
    except celpy.CELEvalError:
        return False
    return bool(result)
