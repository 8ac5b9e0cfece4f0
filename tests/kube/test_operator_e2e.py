"""The operator on a real API server, run as its pod runs: the service account's token and CA
at /var/run/secrets/kubernetes.io/serviceaccount (in a private mount namespace), the
KUBERNETES_SERVICE_* variables, no kubeconfig, the least-privilege RBAC `ebbtide kube install`
grants. Then the real kubectl: every seed mistake refused at `kubectl apply` with `ebbtide
validate`'s words, warnings printed as warnings, applies refused while the operator is down
(failure policy Fail), the HPA in the API version the server serves, and a SIGKILLed operator
that converges on restart without writing anything.

Runs on a control plane of its own (the project's testbed), or on the cluster of
EBBTIDE_E2E_KUBECONFIG when its API server is on this machine (the webhook listens on
127.0.0.1). Needs root and `unshare`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from testbed.cluster import Cluster

from ebbtide.kube.admission import WEBHOOK_NAME, WebhookTarget, webhook_configuration
from ebbtide.kube.crd import CRD_NAME, cel_supported, crd_manifest, parse_server_version
from ebbtide.kube.install import rbac_manifests
from tests.kube.admission import admission_errors
from tests.kube.test_admission import crd_without_cel
from tests.spec.cases import INVALID_CASES, SEED, seed_with

# The first test also starts the control plane, which builds Kubernetes when it is not cached.
pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(600)]
NAME = "my-model-endpoint"
SERVICE_ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"
START_SECONDS = 60.0


WAIT_SECONDS = 40.0
# As tests/kube/conftest.py names it: another cluster for the end-to-end tests.
KUBECONFIG_VARIABLE = "EBBTIDE_E2E_KUBECONFIG"


def kubectl(*arguments: str, stdin: str | None = None, check: bool = True) -> str:
    completed = subprocess.run(
        ["kubectl", *arguments], input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(arguments)}: {completed.stderr}")
    return completed.stdout + (completed.stderr if not check else "")


def get(kind: str, namespace: str, name: str = NAME) -> dict[str, Any] | None:
    found = subprocess.run(
        ["kubectl", "get", kind, name, "-n", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(found.stdout) if found.returncode == 0 else None


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {WAIT_SECONDS:g}s waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_reachable() -> str | None:
    """None when the API server of the current context can call a webhook on 127.0.0.1."""
    server = urlparse(
        kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    )
    if server.hostname not in ("127.0.0.1", "localhost"):
        return f"the webhook listens on 127.0.0.1, out of reach of the API server {server.hostname}"
    return None


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """KUBECONFIG for this module: the cluster of EBBTIDE_E2E_KUBECONFIG when set, else a
    control plane of its own (the project's 1.20.2 testbed without its node: the operator runs
    here as a process), apart from the walkthrough's cluster, whose installed operator and
    webhook would otherwise answer for these endpoints too."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("running the operator as a pod runs needs root and unshare (util-linux)")
    configured = os.environ.get(KUBECONFIG_VARIABLE)
    with pytest.MonkeyPatch.context() as patch:
        if configured:
            patch.setenv("KUBECONFIG", configured)
            reason = webhook_reachable()
            if reason:
                pytest.skip(reason)
            yield
            return
        own = Cluster(tmp_path_factory.mktemp("control-plane"))
        own.start(with_node=False)
        try:
            patch.setenv("KUBECONFIG", str(own.kubeconfig))
            yield
        finally:
            own.stop()


class PodLikeOperator:
    """`ebbtide kube operator` with only what a pod would have."""

    def __init__(self, folder: Path, namespace: str) -> None:
        self.folder, self.namespace = folder, namespace
        self.health_port, self.webhook_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        raw = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
        cluster = raw["clusters"][0]["cluster"]
        self.server = urlparse(cluster["server"])
        secrets = folder / "serviceaccount"
        secrets.mkdir()
        if "certificate-authority-data" in cluster:
            import base64

            ca = base64.b64decode(cluster["certificate-authority-data"])
        else:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        (secrets / "ca.crt").write_bytes(ca)
        (secrets / "namespace").write_text(namespace)
        token = kubectl("create", "token", "ebbtide-operator", "-n", namespace, "--duration=2h")
        (secrets / "token").write_text(token.strip())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"

    @property
    def log(self) -> Path:
        return self.folder / f"operator-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        operator = [
            sys.executable, "-m", "ebbtide", "kube", "operator", "-n", self.namespace,
            "--host", "127.0.0.1", "--health-port", str(self.health_port),
            "--webhook-url", self.url, "--webhook-port", str(self.webhook_port),
        ]  # fmt: skip
        script = (
            f"mount -t tmpfs tmpfs /run && mkdir -p {SERVICE_ACCOUNT_DIR} && "
            f'cp {self.folder / "serviceaccount"}/* {SERVICE_ACCOUNT_DIR}/ && exec "$@"'
        )
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("KUBECONFIG",) and not key.startswith("KUBERNETES_")
        }
        environment |= {
            "HOME": str(self.folder),  # no ~/.kube/config to fall back on
            "KUBERNETES_SERVICE_HOST": str(self.server.hostname),
            "KUBERNETES_SERVICE_PORT": str(self.server.port or 443),
        }
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *operator], stdout=log, stderr=subprocess.STDOUT, env=environment
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + START_SECONDS
        while not ready():
            assert time.monotonic() < deadline, f"not ready in time:\n{self.log.read_text()}"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL: no cleanup handler runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@pytest.fixture(scope="module")
def cluster(
    control_plane: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, PodLikeOperator, bool]]:
    version = parse_server_version(json.loads(kubectl("version", "-o", "json"))["serverVersion"])
    cel = cel_supported(version)
    namespace = f"ebbtide-op-e2e-{os.getpid()}"
    crd_existed = get("crd", "default", CRD_NAME) is not None
    # An install already on the cluster keeps its cluster-wide RBAC when the test ends.
    rbac_existed = get("clusterrole", "default", "ebbtide-operator") is not None
    apply = ["apply", "--server-side", "--field-manager=ebbtide", "-f", "-"]
    kubectl(*apply, stdin=yaml.safe_dump(crd_manifest(cel)))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    kubectl("create", "namespace", namespace)
    kubectl(*apply, stdin=yaml.safe_dump_all(rbac_manifests(namespace)))
    operator = PodLikeOperator(tmp_path_factory.mktemp("operator"), namespace)
    # As `ebbtide kube install` creates it, but pointing at this machine: no caBundle yet. (It
    # replaces an installed one, whose Service this test's operator is not behind.)
    kubectl("delete", "validatingwebhookconfiguration", "ebbtide-operator", "--ignore-not-found")
    kubectl(*apply, stdin=yaml.safe_dump(webhook_configuration(WebhookTarget(url=operator.url))))
    operator.start()
    try:
        operator.wait_ready()
        yield namespace, operator, cel
    finally:
        operator.stop()
        # First the webhook (failure policy Fail: with no operator it would refuse every apply).
        kubectl("delete", "validatingwebhookconfiguration", "ebbtide-operator", check=False)
        for manifest in reversed(rbac_manifests(namespace)):
            kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
            if kind != "serviceaccount" and not rbac_existed:
                kubectl("delete", kind, name, "--wait=false", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if not crd_existed:
            kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)


def delete_endpoint(namespace: str) -> None:
    """Delete the endpoint and wait for what it owned to go, so the next test starts clean."""
    kubectl("delete", "ie", NAME, "-n", namespace, "--ignore-not-found")
    for kind in ("ie", "deployment", "service"):
        eventually(lambda kind=kind: get(kind, namespace) is None, f"the {kind} to go")


def apply_endpoint(namespace: str, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    return subprocess.run(
        ["kubectl", "apply", "-f", "-"],
        input=yaml.safe_dump(document),
        capture_output=True,
        text=True,
        timeout=60,
    )


def validate_says(namespace: str, document: dict[str, Any]) -> list[str]:
    from ebbtide.core.errors import SpecError
    from ebbtide.spec.validation import validate_document

    body = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    with pytest.raises(SpecError) as caught:
        validate_document(body, f"{namespace}/{NAME}")
    return caught.value.problems


@pytest.mark.parametrize(
    ("case", "document", "fragment"),
    [
        pytest.param(case, document, fragment, id=case)
        for case, document, fragment, _ in INVALID_CASES
    ],
)
def test_kubectl_apply_refuses_each_seed_mistake(
    cluster: tuple[str, PodLikeOperator, bool], case: str, document: dict[str, Any], fragment: str
) -> None:
    namespace, _, cel = cluster
    result = apply_endpoint(namespace, document)
    assert result.returncode != 0, f"{case} was stored: {result.stdout}"
    assert get("ie", namespace) is None
    reaches_webhook = not admission_errors(crd_without_cel(), json.loads(json.dumps(document)))
    if reaches_webhook and not cel:
        expected = "\n".join(validate_says(namespace, document))
        assert f'admission webhook "{WEBHOOK_NAME}" denied the request: {expected}' in result.stderr
    elif reaches_webhook:  # CEL may answer first, in validate's words too
        assert fragment in result.stderr


def test_a_warning_is_printed_and_the_endpoint_created(
    cluster: tuple[str, PodLikeOperator, bool],
) -> None:
    namespace, _, _ = cluster
    result = apply_endpoint(namespace, seed_with("spec.autoscaling.minReplicas", 5))
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"inferenceendpoint.mlops.example.com/{NAME} created"
        assert (
            f"Warning: {namespace}/{NAME}: spec.autoscaling.minReplicas: minReplicas equals "
            "maxReplicas (5): autoscaling is disabled, the endpoint always runs 5 replicas; "
            "fix: set minReplicas lower than maxReplicas to let it scale up and down"
        ) in result.stderr
    finally:
        delete_endpoint(namespace)


def test_kubectl_scale_beyond_max_is_refused(cluster: tuple[str, PodLikeOperator, bool]) -> None:
    namespace, _, _ = cluster
    assert apply_endpoint(namespace, SEED).returncode == 0
    try:
        scale = ["kubectl", "scale", "ie", NAME, "-n", namespace]
        refused = subprocess.run(
            [*scale, "--replicas=9"], capture_output=True, text=True, timeout=60, check=False
        )
        assert refused.returncode != 0
        assert (
            f"denied the request: error: {namespace}/{NAME}: spec.autoscaling.minReplicas: "
            "minReplicas (9) is greater than maxReplicas (5)"
        ) in refused.stderr
        kubectl("scale", "ie", NAME, "-n", namespace, "--replicas=3")
        floor = (get("ie", namespace) or {})["spec"]["autoscaling"]["minReplicas"]
        assert floor == 3
    finally:
        delete_endpoint(namespace)


def children(namespace: str, hpa_resource: str) -> dict[str, tuple[str, Any, list[Any]]]:
    """uid, generation and the operator's last write of each child."""
    found = {}
    for kind in ("deployment", "service", hpa_resource):
        shown = ["get", kind, NAME, "-n", namespace, "-o", "json", "--show-managed-fields"]
        metadata = json.loads(kubectl(*shown)).get("metadata", {})
        writes = [
            (entry.get("apiVersion"), entry.get("time"))
            for entry in metadata.get("managedFields", [])
            if entry.get("manager") == "ebbtide-operator"
        ]
        found[kind] = (metadata.get("uid"), metadata.get("generation"), writes)
    return found


def test_sigkill_then_restart_converges_without_writing(
    cluster: tuple[str, PodLikeOperator, bool],
) -> None:
    namespace, operator, _ = cluster
    served = kubectl("api-versions").split()
    hpa_version = "autoscaling/v2" if "autoscaling/v2" in served else "autoscaling/v2beta2"
    hpa_resource = f"horizontalpodautoscalers.{hpa_version.split('/')[1]}.autoscaling"
    assert apply_endpoint(namespace, SEED).returncode == 0
    eventually(lambda: all(u for u, _, _ in children(namespace, hpa_resource).values()), "children")
    eventually(
        lambda: (get("ie", namespace) or {}).get("status", {}).get("observedGeneration") == 1,
        "the operator's status",
    )
    before = children(namespace, hpa_resource)
    # The HPA was written in the version discovery found, by the operator's one field manager.
    assert {version for version, _ in before[hpa_resource][2]} == {hpa_version}

    operator.kill()
    down = apply_endpoint(namespace, seed_with("spec.autoscaling.maxReplicas", 6))
    assert down.returncode != 0, "an apply went through with no webhook to check it"
    assert f'failed calling webhook "{WEBHOOK_NAME}"' in down.stderr

    operator.start()
    operator.wait_ready()
    time.sleep(5)  # one full reconcile pass of the endpoint
    assert children(namespace, hpa_resource) == before, "the restarted operator rewrote objects"
    for kind in ("deployments", "services", hpa_resource):
        listed = json.loads(
            kubectl("get", kind, "-n", namespace, "-l", f"app={NAME}", "-o", "json")
        )
        assert len(listed["items"]) == 1, (
            f"{kind}: {[i['metadata']['name'] for i in listed['items']]}"
        )
    assert " apply " not in operator.log.read_text()
    kubectl("delete", "ie", NAME, "-n", namespace)
