"""The InferenceEndpoint resource: models, quantities, loading, validation and schema."""

from ebbtide.spec.loading import Document, parse_documents, read_text, resource_files
from ebbtide.spec.models import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    Autoscaling,
    Behavior,
    EndpointStatus,
    InferenceEndpoint,
    InferenceEndpointSpec,
    MetricSpec,
    ScalingPolicy,
    ScalingRules,
)
from ebbtide.spec.problems import Problem
from ebbtide.spec.validation import (
    ValidatedEndpoint,
    is_autoscaling_fragment,
    validate,
    validate_autoscaling_fragment,
    validate_document,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "Autoscaling",
    "Behavior",
    "Document",
    "EndpointStatus",
    "InferenceEndpoint",
    "InferenceEndpointSpec",
    "MetricSpec",
    "Problem",
    "ScalingPolicy",
    "ScalingRules",
    "ValidatedEndpoint",
    "is_autoscaling_fragment",
    "parse_documents",
    "read_text",
    "resource_files",
    "validate",
    "validate_autoscaling_fragment",
    "validate_document",
]
