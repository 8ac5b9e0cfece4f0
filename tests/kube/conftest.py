"""The Kubernetes cluster the end-to-end tests run on.

By default the project's own test cluster (`testbed`: a real 1.20.2 control plane and the
test node), started once per session and stopped after. With `EBBTIDE_E2E_KUBECONFIG`
pointing at a kubeconfig, the same tests run against that cluster's current context instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from testbed.cluster import Cluster

KUBECONFIG_VARIABLE = "EBBTIDE_E2E_KUBECONFIG"


@dataclass(frozen=True)
class KubeTarget:
    """A cluster to test against: its kubeconfig, and whether it is the test node (whose pod
    IPs are reachable from this machine and whose claim directories are local)."""

    kubeconfig: Path
    test_node: bool
    cluster: Cluster | None = None

    def with_namespace(self, namespace: str, directory: Path) -> Path:
        """A copy of the kubeconfig whose current context uses `namespace`, so the seed's
        commands run verbatim (no `-n`) without touching the cluster's default namespace."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        current = config["current-context"]
        for context in config["contexts"]:
            if context["name"] == current:
                context["context"]["namespace"] = namespace
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


@pytest.fixture(scope="session")
def kube_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the end-to-end tests drive the real kubectl")
    configured = os.environ.get(KUBECONFIG_VARIABLE)
    if configured:
        yield KubeTarget(Path(configured), test_node=False)
        return
    cluster = Cluster(tmp_path_factory.mktemp("test-cluster"))
    # Owned: should this session die without its teardown, the test node stops the cluster.
    cluster.start(owned=True)
    try:
        yield KubeTarget(cluster.kubeconfig, test_node=True, cluster=cluster)
    finally:
        cluster.stop()
