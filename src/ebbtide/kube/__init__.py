"""ebbtide on Kubernetes: the InferenceEndpoint CRD, the manifests an endpoint becomes, the
pure reconcile decision, and the operator that acts on it.

Only this package imports a Kubernetes client, and only where it talks to a cluster
(`cluster.load_configuration`, `operator.run_operator`), so rendering needs neither.
"""

from ebbtide.kube.crd import crd_manifest, crd_schema
from ebbtide.kube.install import install_manifests
from ebbtide.kube.manifests import Rendered, RenderOptions, render
from ebbtide.kube.reconcile import Action, ObjectRef, Observed, Plan, drift, plan

__all__ = [
    "Action",
    "ObjectRef",
    "Observed",
    "Plan",
    "RenderOptions",
    "Rendered",
    "crd_manifest",
    "crd_schema",
    "drift",
    "install_manifests",
    "plan",
    "render",
]
