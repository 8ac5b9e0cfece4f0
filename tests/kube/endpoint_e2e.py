"""One class-ebbtide endpoint in a namespace of its own, served through the in-cluster gateway:
what the end-to-end tests of ebbtide's own scaling on a cluster share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from testbed import apps

from ebbtide.kube.install import GATEWAY_APP, GATEWAY_DATA_PORT
from tests.kube.conftest import KubeTarget
from tests.kube.test_cluster_e2e import MODEL, OPERATOR_NAMESPACE, Walkthrough, load_models


@dataclass
class EndpointCluster(Walkthrough):
    """The walkthrough's cluster, pointed at one endpoint and its namespace."""

    endpoint: str = ""
    namespace: str = ""

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Any:
        return super().get(kind, name or self.endpoint, namespace or self.namespace)

    def replicas(self) -> int:
        deployment = self.get("deployment") or {}
        return int((deployment.get("spec") or {}).get("replicas") or 0)

    def gateway(self) -> str:
        """The infer URL through a ready gateway pod, or "" while none is ready."""
        pods = self.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
            f"app.kubernetes.io/name={GATEWAY_APP}", "-o", "json",
        ).stdout  # fmt: skip
        for pod in json.loads(pods)["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                address = f"http://{pod['status']['podIP']}:{GATEWAY_DATA_PORT}"
                return f"{address}/endpoints/{self.endpoint}/v2/models/{MODEL}/infer"
        return ""


C = TypeVar("C", bound=EndpointCluster)


@contextmanager
def endpoint_applied(
    kind: type[C],
    kube_target: KubeTarget,
    directory: Path,
    document: dict[str, Any],
    namespace: str,
    gateways: int,
) -> Iterator[C]:
    """ebbtide installed with `gateways` gateway pods and one operator, the sample models in
    the claim, and `document` applied in `namespace`; the namespace deleted after."""
    kubeconfig = kube_target.with_namespace(namespace, directory)
    cluster = kind(
        kube_target,
        kubeconfig,
        directory,
        directory / "endpoint.yaml",
        endpoint=document["metadata"]["name"],
        namespace=namespace,
    )
    cluster.kubectl("create", "namespace", namespace)
    try:
        apps.install(kubeconfig, wait_for=())
        # An earlier module may have scaled these: this one needs them as it says.
        for deployment, replicas in ((GATEWAY_APP, gateways), ("ebbtide-operator", 1)):
            cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", f"deployment/{deployment}",
                            f"--replicas={replicas}")  # fmt: skip
            cluster.kubectl(
                "-n", OPERATOR_NAMESPACE, "rollout", "status", f"deployment/{deployment}",
                "--timeout=120s", timeout=150,
            )  # fmt: skip
        load_models(cluster)
        cluster.kubectl("apply", "-f", str(cluster.write(document)))
        yield cluster
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
