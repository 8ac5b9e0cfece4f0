"""What the end-to-end tests and the Kubernetes benchmark both do on a cluster: run kubectl,
install ebbtide with `ebbtide kube install --apply`, and fill the model claim with a Job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ebbtide.kube.manifests import DEFAULT_IMAGE

OPERATOR_NAMESPACE = "ebbtide-system"
CLAIM = "ebbtide-models"


def kubectl(
    kubeconfig: Path,
    *arguments: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The real kubectl against `kubeconfig`; with `check`, a failure raises naming the
    command and kubectl's own message."""
    completed = subprocess.run(
        ["kubectl", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        check=False,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(arguments)} exited {completed.returncode}: "
            f"{completed.stderr.strip()}"
        )
    return completed


def install(kubeconfig: Path, wait_for: tuple[str, ...] = ("ebbtide-operator",)) -> None:
    """`ebbtide kube install --apply`, then wait for each Deployment of `wait_for` in
    ebbtide-system to roll out."""
    completed = subprocess.run(
        [sys.executable, "-m", "ebbtide", "kube", "install", "--apply"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"ebbtide kube install --apply exited {completed.returncode}: "
            f"{completed.stdout}{completed.stderr}"
        )
    for name in wait_for:
        kubectl(
            kubeconfig,
            "-n",
            OPERATOR_NAMESPACE,
            "rollout",
            "status",
            f"deployment/{name}",
            "--timeout=120s",
            timeout=140,
        )


def model_loader(samples: tuple[tuple[str, str], ...], job: str = "models-loader") -> list[Any]:
    """The model repository claim and a Job in the ebbtide image that fills it: each sample
    (`heavy`, `fast`, ...) registered as its `NAME:VERSION`."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    script = " && ".join(
        f"ebbtide model sample {sample} --as {name} --repository /models"
        for sample, name in samples
    )
    loader = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "loader",
                            "image": DEFAULT_IMAGE,
                            "command": ["sh", "-c", script],
                            "env": [{"name": "EBBTIDE_HOME", "value": "/tmp/ebbtide"}],
                            "volumeMounts": [
                                {"name": "models", "mountPath": "/models"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": CLAIM}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                }
            },
        },
    }
    return [claim, loader]


def load_models(
    kubeconfig: Path, samples: tuple[tuple[str, str], ...], namespace: str | None = None
) -> None:
    """Apply `model_loader(samples)` (in `namespace`, or the kubeconfig's) and wait for the
    Job to complete."""
    scope = ["-n", namespace] if namespace else []
    kubectl(kubeconfig, *scope, "apply", "-f", "-", stdin=yaml.safe_dump_all(model_loader(samples)))
    kubectl(
        kubeconfig,
        *scope,
        "wait",
        "--for=condition=complete",
        "job/models-loader",
        "--timeout=180s",
        timeout=200,
    )
