"""The kopf wiring: which resources the operator watches, with which filters."""

from __future__ import annotations

import pytest

from ebbtide.kube.manifests import RenderOptions
from ebbtide.kube.operator import OperatorConfig, build_registry


@pytest.mark.parametrize("hpa_version", ["v2", "v2beta2"])
def test_operator_watches_endpoints_and_the_children_it_labels(hpa_version: str) -> None:
    options = RenderOptions(hpa_api_version=f"autoscaling/{hpa_version}")
    registry = build_registry(OperatorConfig(options))
    watched = {
        (h.selector.group, h.selector.version, h.selector.any_name): h.labels
        for h in registry._watching.get_all_handlers()
    }
    assert watched == {
        ("mlops.example.com", "v1", "inferenceendpoints"): None,
        ("apps", "v1", "deployments"): {"app.kubernetes.io/managed-by": "ebbtide"},
        ("", "v1", "services"): {"app.kubernetes.io/managed-by": "ebbtide"},
        ("autoscaling", hpa_version, "horizontalpodautoscalers"): {
            "app.kubernetes.io/managed-by": "ebbtide"
        },
    }


def test_operator_keeps_no_state_on_the_endpoint() -> None:
    registry = build_registry(OperatorConfig())
    # No change handlers (which store progress in annotations) and so no finalizers.
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    activities = {str(h.activity) for h in registry._activities.get_all_handlers()}
    assert activities == {"authentication", "startup", "cleanup"}
