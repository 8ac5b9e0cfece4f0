"""Validation at apply time: every problem found, each with its field, its line and its fix.

Structural problems (types, unknown fields, names) come from the models; the mistakes people
actually make with autoscaling (the seed documents list them) are checked here on top, as
errors that block an apply or warnings that print and do not.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ebbtide.spec.loading import Document, FieldPath
from ebbtide.spec.models import (
    API_VERSION,
    KIND,
    Autoscaling,
    InferenceEndpoint,
    MetricSpec,
)
from ebbtide.spec.problems import Problem, raise_if_errors
from ebbtide.spec.quantity import parse_quantity

SIMPLIFIED_KEYS = {
    "min_servers": "minReplicas",
    "max_servers": "maxReplicas",
    "target_utilization": "targetCPUUtilizationPercentage",
}
HIGH_TARGET, LOW_TARGET = 90, 10
URI_SCHEMES = ("file://", "s3://", "gs://", "pvc://", "http://", "https://", "/")


@dataclass(frozen=True)
class ValidatedEndpoint:
    """A valid endpoint and the warnings found on the way."""

    endpoint: InferenceEndpoint
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Checker:
    document: Document
    problems: list[Problem] = field(default_factory=list)

    def add(self, severity: str, path: FieldPath, message: str, fix: str = "") -> None:
        self.problems.append(
            Problem(
                "error" if severity == "error" else "warning",
                _dotted(path),
                message,
                fix,
                self.document.source,
                self.document.line_of(path),
            )
        )

    def error(self, path: FieldPath, message: str, fix: str = "") -> None:
        self.add("error", path, message, fix)

    def warn(self, path: FieldPath, message: str, fix: str = "") -> None:
        self.add("warning", path, message, fix)


MIN_OBJECTIVE_MILLISECONDS = 1.0
"""Below a millisecond, the gateway's hop and the model server's parsing alone exceed the
objective."""


def validate_document(data: Any, source: str = "<input>") -> ValidatedEndpoint:
    """Validate one resource given as a plain dict (the API's entry point)."""
    return validate(Document(data, source))


def validate(document: Document) -> ValidatedEndpoint:
    """Validate one parsed document; raise `SpecError` listing every error."""
    checker = _Checker(document)
    data = document.data
    if not isinstance(data, dict):
        checker.error((), f"expected a mapping (an object), found {type(data).__name__}")
        raise_if_errors(checker.problems, document.source)
    if is_autoscaling_fragment(data):
        checker.error(
            (),
            "this is an autoscaling fragment (min_servers, max_servers, target_utilization), "
            "not a whole InferenceEndpoint",
            "put these keys under spec.autoscaling of an InferenceEndpoint, or check the "
            "fragment alone with `ebbtide validate -f FILE`",
        )
        raise_if_errors(checker.problems, document.source)
    _check_type_meta(checker, data)
    normalized = _normalize_simplified(checker, _without_server_fields(data))
    raise_if_errors(checker.problems, document.source)
    try:
        endpoint = InferenceEndpoint.model_validate(normalized)
    except ValidationError as error:
        _report_structure(checker, error)
        raise_if_errors(checker.problems, document.source)
        raise  # pragma: no cover - every ValidationError yields at least one problem
    _check_semantics(checker, endpoint)
    raise_if_errors(checker.problems, document.source)
    return ValidatedEndpoint(endpoint, [p.render() for p in checker.problems])


def is_autoscaling_fragment(data: Any) -> bool:
    """True for the seed's simplified config: `{"min_servers": 2, "max_servers": 6, ...}`."""
    return isinstance(data, dict) and "kind" not in data and bool(SIMPLIFIED_KEYS.keys() & data)


def validate_autoscaling_fragment(document: Document) -> tuple[Autoscaling, list[str]]:
    """Validate the simplified form on its own; returns it normalized, and the warnings."""
    checker = _Checker(document)
    fragment = _normalize_autoscaling(checker, (), dict(document.data))
    raise_if_errors(checker.problems, document.source)
    try:
        autoscaling = Autoscaling.model_validate(fragment)
    except ValidationError as error:
        _report_structure(checker, error, root=Autoscaling)
        raise_if_errors(checker.problems, document.source)
        raise  # pragma: no cover
    _check_bounds(checker, ("spec", "autoscaling"), autoscaling)
    raise_if_errors(checker.problems, document.source)
    return autoscaling, [p.render() for p in checker.problems]


SERVER_SET_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def _without_server_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Drop what the server sets (status, uid, versions, timestamps), so the output of
    `get -o yaml` can be applied again, as with kubectl."""
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        metadata = {k: v for k, v in metadata.items() if k not in SERVER_SET_METADATA}
        data = {**data, "metadata": metadata}
    return {k: v for k, v in data.items() if k != "status"}


def _check_type_meta(checker: _Checker, data: dict[str, Any]) -> None:
    if data.get("apiVersion") != API_VERSION:
        found = data.get("apiVersion")
        checker.error(
            ("apiVersion",),
            f"apiVersion is {found!r}" if found else "apiVersion is missing",
            f"set apiVersion: {API_VERSION}",
        )
    if data.get("kind") != KIND:
        found = data.get("kind")
        checker.error(
            ("kind",),
            f"kind is {found!r}; ebbtide serves only {KIND}" if found else "kind is missing",
            f"set kind: {KIND}",
        )


def _normalize_simplified(checker: _Checker, data: dict[str, Any]) -> dict[str, Any]:
    spec = data.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("autoscaling"), dict):
        return data
    path: FieldPath = ("spec", "autoscaling")
    autoscaling = _normalize_autoscaling(checker, path, dict(spec["autoscaling"]))
    return {**data, "spec": {**spec, "autoscaling": autoscaling}}


def _normalize_autoscaling(
    checker: _Checker, path: FieldPath, autoscaling: dict[str, Any]
) -> dict[str, Any]:
    """Rename the simplified keys; `target_utilization` is a fraction and becomes a percent."""
    for simple, canonical in SIMPLIFIED_KEYS.items():
        if simple not in autoscaling:
            continue
        value = autoscaling.pop(simple)
        if canonical in autoscaling:
            checker.error(
                (*path, simple), f"both {simple} and {canonical} are set", f"keep only {canonical}"
            )
            continue
        if simple == "target_utilization":
            value = _fraction_to_percent(checker, (*path, simple), value)
        autoscaling[canonical] = value
    return autoscaling


def _fraction_to_percent(checker: _Checker, path: FieldPath, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        checker.error(path, f"target_utilization must be a number, found {value!r}", "use 0.6")
        return value
    if value > 1:
        checker.error(
            path,
            f"target_utilization is a fraction of one, and {value} would mean {value * 100:g}%",
            f"did you mean {value / 100:g}? (or use targetCPUUtilizationPercentage: {value:g})",
        )
        return value
    if value <= 0:
        checker.error(path, f"target_utilization must be above 0, found {value}", "use 0.6")
        return value
    return round(value * 100)


def _report_structure(
    checker: _Checker, error: ValidationError, root: type[BaseModel] = InferenceEndpoint
) -> None:
    for item in error.errors():
        loc = tuple(item["loc"])
        kind = item["type"]
        name = str(loc[-1]) if loc else ""
        if kind == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            fix = f"did you mean {close[0]}?" if close else f"known fields: {', '.join(allowed)}"
            checker.error(loc, f"unknown field {name!r}", fix)
        elif kind == "missing":
            checker.error(loc, f"{name} is required", f"add {name} under {_dotted(loc[:-1])}")
        elif kind == "string_pattern_mismatch":
            checker.error(
                loc,
                f"{item['input']!r} is not a valid name",
                "use a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters",
            )
        else:
            message = _plain_message(kind, item["msg"], item.get("input"))
            checker.error(loc, message, _fix_for(kind, item))


def _plain_message(kind: str, message: str, value: Any) -> str:
    if kind == "value_error":  # our validators' own words, which quote the value already
        return re.sub(r"^Value error, ", "", message)
    return f"{message} (found {value!r})" if not isinstance(value, dict | list) else message


_TYPE_FIXES = {
    "int_type": "use a whole number, e.g. 2",
    "int_parsing": "use a whole number, e.g. 2",
    "int_from_float": "use a whole number, e.g. 2",
    "float_type": "use a number, e.g. 0.5",
    "float_parsing": "use a number, e.g. 0.5",
    "bool_type": "use true or false",
    "bool_parsing": "use true or false",
    "string_type": 'use text; quote it if it looks like a number, e.g. version: "1"',
    "dict_type": "use a mapping of fields (indented key: value lines)",
    "model_type": "use a mapping of fields (indented key: value lines)",
    "model_attributes_type": "use a mapping of fields (indented key: value lines)",
    "list_type": "use a list (lines starting with '- ')",
}


def _fix_for(kind: str, item: Any) -> str:
    """The fix for one of pydantic's own errors: a bound to respect or a type to use. Our
    validators' errors (quantities, names) carry their guidance in the message itself."""
    bounds = item.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"use {bounds['ge']} or more"
    if kind == "greater_than":
        return f"use a value above {bounds['gt']}"
    if kind == "less_than_equal":
        return f"use {bounds['le']} or less"
    if kind == "less_than":
        return f"use a value below {bounds['lt']}"
    return _TYPE_FIXES.get(kind, "")


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The wire names allowed at `loc`, found by walking the models along the path."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        if part not in fields:
            return []
        model = _model_of(fields[part].annotation)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None or get_args(annotation):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _check_semantics(checker: _Checker, endpoint: InferenceEndpoint) -> None:
    autoscaling_path: FieldPath = ("spec", "autoscaling")
    _check_bounds(checker, autoscaling_path, endpoint.spec.autoscaling)
    _check_resources(checker, endpoint)
    _check_metrics(checker, endpoint)
    _check_objective(checker, autoscaling_path, endpoint.spec.autoscaling)
    uri = endpoint.spec.model.uri
    if uri is not None and not uri.startswith(URI_SCHEMES):
        checker.error(
            ("spec", "model", "uri"),
            f"{uri!r} has no known scheme",
            "use file:///path, s3://bucket/key, gs://bucket/key, pvc://claim/path or https://…",
        )


def _check_bounds(checker: _Checker, path: FieldPath, autoscaling: Autoscaling) -> None:
    low, high = autoscaling.min_replicas, autoscaling.max_replicas
    if low > high:
        checker.error(
            (*path, "minReplicas"),
            f"minReplicas ({low}) is greater than maxReplicas ({high})",
            f"set minReplicas to at most maxReplicas, e.g. minReplicas: {high}, maxReplicas: {low}",
        )
    elif low == high:
        checker.warn(
            (*path, "minReplicas"),
            f"minReplicas equals maxReplicas ({low}): autoscaling is disabled, the endpoint "
            f"always runs {low} replica{'s' if low != 1 else ''}",
            "set minReplicas lower than maxReplicas to let it scale up and down",
        )
    percent = autoscaling.target_cpu_utilization_percentage
    if percent is not None:
        _check_target(checker, (*path, "targetCPUUtilizationPercentage"), percent)
    _check_class(checker, path, autoscaling)


def _check_class(checker: _Checker, path: FieldPath, autoscaling: Autoscaling) -> None:
    """class hpa promises a HorizontalPodAutoscaler on Kubernetes: refuse what it cannot do."""
    if autoscaling.autoscaler_class != "hpa":
        return
    unsupported = autoscaling.needs_ebbtide()
    if unsupported:
        checker.error(
            (*path, "class"),
            "class hpa scales with a HorizontalPodAutoscaler, which cannot honour "
            f"{', '.join(unsupported)} (it keeps at least 1 replica, scales only on cpu and "
            "memory without a custom metrics adapter, and has no burst mode or prediction)",
            "set class: ebbtide (or leave class unset) to have ebbtide's own policy scale it, "
            "or remove those fields",
        )


def _check_objective(checker: _Checker, path: FieldPath, autoscaling: Autoscaling) -> None:
    objective = autoscaling.objective
    if objective is None:
        return
    if autoscaling.min_replicas == autoscaling.max_replicas:
        checker.warn(
            (*path, "objective"),
            f"a latency objective with minReplicas equal to maxReplicas "
            f"({autoscaling.max_replicas}) cannot add a replica to meet it",
            "raise maxReplicas to the most replicas the objective may use",
        )
    if objective.latency_milliseconds < MIN_OBJECTIVE_MILLISECONDS:
        checker.warn(
            (*path, "objective", "latencyMilliseconds"),
            f"a latency objective of {objective.latency_milliseconds:g} ms is below what the "
            "gateway and a model server add to every request: no replica count can meet it",
            f"set latencyMilliseconds to at least {MIN_OBJECTIVE_MILLISECONDS:g}",
        )


def _check_target(checker: _Checker, path: FieldPath, percent: int) -> None:
    if percent > HIGH_TARGET:
        checker.warn(
            path,
            f"a CPU target of {percent}% is very high: replicas run hot and the endpoint "
            "scales up late, after latency has already risen",
            "choose a balanced target such as 60",
        )
    elif percent < LOW_TARGET:
        checker.warn(
            path,
            f"a CPU target of {percent}% is very low: the endpoint scales up at the slightest "
            "load and runs many idle replicas",
            "choose a balanced target such as 60",
        )


def _check_resources(checker: _Checker, endpoint: InferenceEndpoint) -> None:
    resources = endpoint.spec.resources
    for resource in ("cpu", "memory"):
        request = getattr(resources.requests, resource)
        limit = getattr(resources.limits, resource)
        request_path: FieldPath = ("spec", "resources", "requests", resource)
        limit_path: FieldPath = ("spec", "resources", "limits", resource)
        if request is not None and parse_quantity(request) == 0:
            checker.error(
                request_path,
                f"requests.{resource} is 0: utilization would divide by zero",
                f"request a positive amount, e.g. {'500m' if resource == 'cpu' else '512Mi'}",
            )
        if limit is not None and parse_quantity(limit) == 0:
            checker.error(limit_path, f"limits.{resource} is 0: a replica could not run at all")
        if (
            request is not None
            and limit is not None
            and parse_quantity(limit) < parse_quantity(request)
        ):
            checker.error(
                limit_path,
                f"limits.{resource} ({limit}) is below requests.{resource} ({request})",
                f"raise limits.{resource} to at least {request}, or lower the request",
            )


def _check_metrics(checker: _Checker, endpoint: InferenceEndpoint) -> None:
    autoscaling = endpoint.spec.autoscaling
    base: FieldPath = ("spec", "autoscaling")
    for index, metric in enumerate(autoscaling.metrics or ()):
        _check_metric(checker, (*base, "metrics", index), metric)
        if (
            metric.resource is not None
            and metric.resource.name == "cpu"
            and autoscaling.target_cpu_utilization_percentage is not None
        ):
            checker.error(
                (*base, "metrics", index),
                "a cpu metric is given both here and as targetCPUUtilizationPercentage",
                "keep one of the two",
            )
    requests = endpoint.spec.resources.requests
    for metric in endpoint.scaling_metrics():
        source = metric.resource
        if source is None or source.target.type != "Utilization":
            continue
        request = requests.cpu if source.name == "cpu" else requests.memory
        if request is None:
            given = autoscaling.target_cpu_utilization_percentage is not None or autoscaling.metrics
            what = "a CPU target" if source.name == "cpu" else "a memory utilization target"
            implied = "" if given else f" (the default target of {_default_note()})"
            checker.error(
                ("spec", "resources", "requests", source.name),
                f"{what}{implied} needs resources.requests.{source.name}: utilization is a "
                "percent of the request, so without one it cannot be computed",
                f"add spec.resources.requests.{source.name}, e.g. "
                f"{'500m' if source.name == 'cpu' else '1Gi'}",
            )


def _default_note() -> str:
    from ebbtide.spec.models import DEFAULT_CPU_UTILIZATION

    return f"{DEFAULT_CPU_UTILIZATION}% CPU applies when no target is set"


def _check_metric(checker: _Checker, path: FieldPath, metric: MetricSpec) -> None:
    source = metric.resource if metric.type == "Resource" else metric.pods
    other = metric.pods if metric.type == "Resource" else metric.resource
    field_name = metric.type.lower()
    if source is None:
        checker.error(path, f"type {metric.type} needs the {field_name} field", "add it")
        return
    if other is not None:
        checker.error(path, f"type {metric.type} takes only the {field_name} field")
    target = source.target
    target_path = (*path, field_name, "target")
    if target.type == "Utilization":
        if metric.type != "Resource":
            checker.error(target_path, "Utilization targets apply to cpu and memory only")
        if target.average_utilization is None:
            checker.error(target_path, "type Utilization needs averageUtilization", "e.g. 60")
        elif metric.resource is not None and metric.resource.name == "cpu":
            _check_target(checker, (*target_path, "averageUtilization"), target.average_utilization)
    elif target.type == "AverageValue":
        if target.average_value is None:
            checker.error(
                target_path, "type AverageValue needs averageValue", "e.g. averageValue: 4"
            )
        elif parse_quantity(target.average_value) <= Decimal(0):
            checker.error(target_path, "averageValue must be above 0")
    else:
        checker.error(
            target_path,
            "type Value (a total over all replicas) is not supported for per-replica metrics",
            "use AverageValue",
        )


def _dotted(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
