"""Kubernetes commands: `ebbtide render` and `ebbtide kube crd|install|operator|gateway|
fetch-model`.

`render` and `kube crd` need no cluster and no `kube` extra; `kube install --apply` needs
kubectl; `kube operator` needs the extra (kopf and the kubernetes client).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ebbtide.cli.output import as_list, dump
from ebbtide.core.errors import KubernetesError
from ebbtide.kube.admission import WEBHOOK_PORT
from ebbtide.kube.crd import CRD_NAME, cel_supported, crd_manifest, parse_server_version
from ebbtide.kube.install import DEFAULT_OPERATOR_NAMESPACE, OPERATOR_NAME, install_manifests
from ebbtide.kube.manifests import (
    DEFAULT_IMAGE,
    DEFAULT_MODELS_CLAIM,
    DEFAULT_STORAGE_INITIALIZER,
    RenderOptions,
)
from ebbtide.kube.manifests import render as render_endpoint

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Kubernetes: the InferenceEndpoint CRD, the operator, and what it installs.",
)

ManifestOutput = Annotated[str, typer.Option("-o", "--output", help="yaml or json.")]
ImageOption = Annotated[
    str,
    typer.Option(envvar="EBBTIDE_IMAGE", help="The image that runs the model server."),
]
ClaimOption = Annotated[
    str,
    typer.Option(
        envvar="EBBTIDE_MODELS_CLAIM",
        help="The PersistentVolumeClaim holding the model repository (`<name>/<version>/`).",
    ),
]
InitializerOption = Annotated[
    str,
    typer.Option(
        envvar="EBBTIDE_STORAGE_INITIALIZER",
        help="The image that downloads s3:// and gs:// model URIs.",
    ),
]


CelOption = Annotated[
    bool,
    typer.Option(
        "--cel/--no-cel",
        help="Keep the CRD's CEL rules (Kubernetes 1.28 and newer; older servers refuse them, "
        "and the operator's webhook makes the same checks).",
    ),
]


def register(root: typer.Typer) -> None:
    """Add `render` and the `kube` group to the root command."""
    root.command("render")(render)
    root.add_typer(app, name="kube")


def emit(objects: list[dict[str, Any]], output: str) -> None:
    """Print manifests: YAML documents separated by `---`, or one JSON object or `List`."""
    if output == "yaml":
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False).rstrip())
    elif output == "json":
        typer.echo(dump(objects[0] if len(objects) == 1 else as_list(objects), "json"))
    else:
        typer.echo(f'error: unknown output format "{output}"; use yaml or json', err=True)
        raise typer.Exit(1)


def render(
    files: Annotated[
        list[str], typer.Option("-f", "--filename", help="A file, a directory, or - for stdin.")
    ],
    output: ManifestOutput = "yaml",
    image: ImageOption = DEFAULT_IMAGE,
    models_claim: ClaimOption = DEFAULT_MODELS_CLAIM,
    storage_initializer: InitializerOption = DEFAULT_STORAGE_INITIALIZER,
    hpa_version: Annotated[
        str,
        typer.Option(
            help="The HorizontalPodAutoscaler API: v2 (Kubernetes 1.23 and newer) or v2beta2 "
            "(1.20 to 1.25). The operator finds out which by asking the server."
        ),
    ] = "v2",
) -> None:
    """Print the Deployment, Service and HorizontalPodAutoscaler the operator would create."""
    from ebbtide.cli.main import guarded, load_endpoints

    with guarded():
        options = RenderOptions(
            image,
            "IfNotPresent",
            models_claim,
            storage_initializer,
            hpa_api_version=f"autoscaling/{hpa_version.removeprefix('autoscaling/')}",
        )
        endpoints, warnings, _ = load_endpoints(files)
        objects: list[dict[str, Any]] = []
        notes = list(warnings)
        for endpoint in endpoints:
            rendered = render_endpoint(endpoint, options)
            objects.extend(rendered.objects)
            notes.extend(f"note: {note}" for note in rendered.notes)
        for note in notes:
            typer.echo(note, err=True)
        emit(objects, output)


@app.command("crd")
def crd(output: ManifestOutput = "yaml", cel: CelOption = True) -> None:
    """Print the InferenceEndpoint CustomResourceDefinition (schema from the spec models)."""
    emit([crd_manifest(cel)], output)


@app.command("install")
def install(
    namespace: Annotated[
        str, typer.Option("-n", "--namespace", help="Where the operator runs.")
    ] = DEFAULT_OPERATOR_NAMESPACE,
    apply: Annotated[
        bool, typer.Option("--apply", help="Apply with kubectl instead of printing.")
    ] = False,
    output: ManifestOutput = "yaml",
    image: ImageOption = DEFAULT_IMAGE,
    models_claim: ClaimOption = DEFAULT_MODELS_CLAIM,
    storage_initializer: InitializerOption = DEFAULT_STORAGE_INITIALIZER,
    cel: Annotated[
        bool | None,
        typer.Option(
            "--cel/--no-cel",
            help="Keep the CRD's CEL rules (Kubernetes 1.28 and newer). Default: yes when "
            "printing; with --apply, as the server's version allows.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="With --apply, wait until the operator is ready (its webhook admits endpoints).",
        ),
    ] = True,
) -> None:
    """Print (or --apply) the CRD, the operator's RBAC, Deployment and admission webhook."""
    options = RenderOptions(image, "IfNotPresent", models_claim, storage_initializer)
    if not apply:
        emit(install_manifests(namespace, options, True if cel is None else cel), output)
        return
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        typer.echo("error: --apply needs kubectl on PATH; or pipe the output to it", err=True)
        raise typer.Exit(1)
    if cel is None:
        cel = cel_supported(_server_version(kubectl))
    objects = install_manifests(namespace, options, cel)
    # The CRD first, and established, so the operator finds it served when it starts.
    crd_index = next(i for i, o in enumerate(objects) if o["kind"] == "CustomResourceDefinition")
    _kubectl(
        kubectl,
        ["apply", "--server-side", "--field-manager=ebbtide", "-f", "-"],
        objects[: crd_index + 1],
    )
    _kubectl(kubectl, ["wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s"])
    _kubectl(
        kubectl,
        ["apply", "--server-side", "--field-manager=ebbtide", "-f", "-"],
        objects[crd_index + 1 :],
    )
    if wait:
        # Until the operator is ready its webhook refuses every endpoint (failure policy Fail).
        _kubectl(
            kubectl,
            ["rollout", "status", f"deployment/{OPERATOR_NAME}", "-n", namespace, "--timeout=180s"],
        )


def _server_version(kubectl: str) -> tuple[int, int]:
    completed = subprocess.run(
        [kubectl, "version", "-o", "json"], capture_output=True, text=True, check=False
    )
    try:
        return parse_server_version(json.loads(completed.stdout)["serverVersion"])
    except (ValueError, KeyError, KubernetesError):
        problem = completed.stderr.strip() or "no server version in its answer"
        typer.echo(f"error: cannot read the cluster's version with kubectl: {problem}", err=True)
        raise typer.Exit(1) from None


def _kubectl(
    kubectl: str, arguments: list[str], objects: list[dict[str, Any]] | None = None
) -> None:
    text = yaml.safe_dump_all(objects, sort_keys=False) if objects else None
    completed = subprocess.run([kubectl, *arguments], input=text, text=True, check=False)
    if completed.returncode != 0:
        raise typer.Exit(completed.returncode)


@app.command("operator")
def operator(
    namespaces: Annotated[
        list[str] | None,
        typer.Option("-n", "--namespace", help="Watch only these namespaces (default: all)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Where the health and webhook ports listen (in a pod: its IP).")
    ] = "0.0.0.0",
    health_port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz (liveness) and /readyz (readiness) on this port."),
    ] = None,
    webhook_service: Annotated[
        str | None,
        typer.Option(
            help="Serve the validating admission webhook behind this Service (NAMESPACE/NAME) "
            "and write its CA into the webhook configuration."
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Serve the webhook for an API server that calls this https:// URL (an "
            "operator outside the cluster; the webhook configuration must name the same URL)."
        ),
    ] = None,
    webhook_port: Annotated[int, typer.Option(help="The webhook's HTTPS port.")] = WEBHOOK_PORT,
    gateway_url: Annotated[
        list[str] | None,
        typer.Option(
            help="A gateway's admin URL (http://HOST:9091) to read class-ebbtide endpoints' "
            "traffic from (repeatable); default: the gateway pods in ebbtide-system."
        ),
    ] = None,
    image: ImageOption = DEFAULT_IMAGE,
    models_claim: ClaimOption = DEFAULT_MODELS_CLAIM,
    storage_initializer: InitializerOption = DEFAULT_STORAGE_INITIALIZER,
) -> None:
    """Run the operator: reconcile every InferenceEndpoint into its Deployment, Service and
    (class hpa) HPA, and scale class-ebbtide endpoints with ebbtide's policy."""
    from ebbtide.cli.main import guarded
    from ebbtide.kube.admission import WebhookTarget
    from ebbtide.kube.operator import OperatorConfig, run_operator

    options = RenderOptions(image, "IfNotPresent", models_claim, storage_initializer)
    with guarded():
        target = None
        if webhook_service is not None or webhook_url is not None:
            target = WebhookTarget.parse(webhook_service, webhook_url)
        config = OperatorConfig(
            options, namespaces or [], host, health_port, webhook_port, target, gateway_url or []
        )
        run_operator(config)


@app.command("gateway")
def gateway(
    namespaces: Annotated[
        list[str] | None,
        typer.Option("-n", "--namespace", help="Route only these namespaces (default: all)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Where both ports listen (in a pod: its IP).")] = (
        "0.0.0.0"
    ),
    port: Annotated[int, typer.Option(help="The data port (inference requests).")] = 8080,
    admin_port: Annotated[
        int, typer.Option(help="/ebbtide/v1/traffic, /ebbtide/v1/demand, /healthz, /readyz.")
    ] = 9091,
    name: Annotated[
        str | None, typer.Option(help="This gateway's name in its reports (the pod's name).")
    ] = None,
    drain_seconds: Annotated[
        float, typer.Option(help="After SIGTERM, keep serving this long before draining.")
    ] = 5.0,
) -> None:
    """Run the gateway in a cluster: routes from InferenceEndpoints and their Endpoints."""
    import asyncio
    import socket

    from ebbtide.cli.main import guarded
    from ebbtide.kube.gateway import GatewayConfig, serve

    config = GatewayConfig(
        host,
        port,
        admin_port,
        tuple(namespaces or ()),
        name or socket.gethostname(),
        drain_seconds=drain_seconds,
    )
    with guarded():
        asyncio.run(serve(config))


@app.command("fetch-model")
def fetch_model(
    uri: Annotated[str, typer.Argument(help="An http(s) URL of a model file or archive.")],
    destination: Annotated[Path, typer.Argument(help="The folder to put the model in.")],
) -> None:
    """Download a model into a folder (the init container of a pod whose model has a URI)."""
    from ebbtide.cli.main import guarded
    from ebbtide.kube.fetch import fetch_model as fetch

    with guarded():
        for path in fetch(uri, destination):
            typer.echo(str(path))
