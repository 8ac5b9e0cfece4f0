"""The admission decision for `kubectl apply` of an InferenceEndpoint. Pure.

The API server sends the operator's validating webhook an `AdmissionReview` for every create
and update of an endpoint; `admission_response` answers it with exactly what `ebbtide
validate` says of the same object: every error, with its field and its fix, refuses the
request (422 Invalid); warnings (min == max, a CPU target far too high or too low) are
returned as admission warnings, which kubectl prints as `Warning: …`. What cannot run on
Kubernetes at all (a `file://` model URI, a name that cannot name a Service) is refused too,
with the message `ebbtide render` gives.

`webhook_configuration` is the ValidatingWebhookConfiguration that routes those requests to
the operator, as `ebbtide kube install` prints it and, with the CA filled in, as the operator
applies it (`kube.webhook` serves the requests).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ebbtide.core.errors import SpecError
from ebbtide.kube.manifests import RenderOptions, render
from ebbtide.kube.reconcile import validate_object
from ebbtide.spec.models import API_GROUP, KIND, PLURAL

WEBHOOK_NAME = f"validate.{PLURAL}.{API_GROUP}"
WEBHOOK_PATH = f"/validate-{KIND.lower()}"
REVIEW_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
CHECKED_OPERATIONS = ("CREATE", "UPDATE")
INVALID_CODE = 422

WEBHOOK_CONFIGURATION = "ebbtide-operator"
WEBHOOK_PORT = 9443
WEBHOOK_SERVICE_PORT = 443
WEBHOOK_TIMEOUT_SECONDS = 10
FAILURE_POLICY = "Fail"


@dataclass(frozen=True)
class Verdict:
    """Whether the object may be stored, why not, and what to warn about."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()


def review_object(body: Mapping[str, Any], options: RenderOptions | None = None) -> Verdict:
    """The verdict on one InferenceEndpoint as the API server would store it."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Verdict(True)  # only finalizers change on the way out: let it go
    try:
        validated = validate_object(body)
        rendered = render(validated.endpoint, options)
    except SpecError as error:
        return Verdict(False, "\n".join(error.problems))
    # kubectl prints each as `Warning: …`.
    notes = tuple(rendered.notes)
    warnings = tuple(one_line(w).removeprefix("warning: ") for w in validated.warnings)
    return Verdict(True, warnings=warnings + notes)


def one_line(problem: str) -> str:
    """A rendered problem (`warning: SOURCE: FIELD: MESSAGE\\n  fix: FIX`) as one line: the API
    server drops admission warnings that hold control characters such as a newline."""
    return problem.replace("\n  fix: ", "; fix: ").replace("\n", " ")


def scale_target(request: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the endpoint a scale-subresource update is for (`kubectl scale ie
    NAME --replicas=N`, which sets minReplicas); None for any other request."""
    resource = (request.get("resource") or {}).get("resource")
    if request.get("subResource") == "scale" and resource == PLURAL:
        return str(request.get("namespace") or "default"), str(request.get("name") or "")
    return None


def review_scale(
    request: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    options: RenderOptions | None = None,
) -> Verdict:
    """The verdict on a scale update: the endpoint as it would be with minReplicas set to the
    Scale's replicas, checked like any other. The API server answers for an endpoint gone."""
    replicas = ((request.get("object") or {}).get("spec") or {}).get("replicas")
    if current is None or isinstance(replicas, bool) or not isinstance(replicas, int):
        return Verdict(True)
    body = copy.deepcopy(dict(current))
    spec = body.setdefault("spec", {})
    spec["autoscaling"] = {**(spec.get("autoscaling") or {}), "minReplicas": replicas}
    return review_object(body, options)


def review_request(
    request: Mapping[str, Any],
    options: RenderOptions | None = None,
    current: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict on one admission request: endpoints created or updated are checked, and so
    are scale updates (given `current`, the endpoint as stored); anything else the
    configuration might route here (status, a delete) is let through."""
    if request.get("operation") not in CHECKED_OPERATIONS:
        return Verdict(True)
    if scale_target(request) is not None:
        return review_scale(request, current, options)
    kind = (request.get("kind") or {}).get("kind")
    if request.get("subResource") or kind != KIND:
        return Verdict(True)
    body = request.get("object")
    if not isinstance(body, Mapping):
        raise SpecError(f"the AdmissionReview's request has no object to review (kind {kind})")
    return review_object(body, options)


def admission_response(
    review: Mapping[str, Any],
    options: RenderOptions | None = None,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `AdmissionReview` answering `review`, in the same API version. Raises `SpecError`
    for a body that is not an AdmissionReview request."""
    version = review.get("apiVersion")
    request = review.get("request")
    if review.get("kind") != "AdmissionReview" or version not in REVIEW_VERSIONS:
        raise SpecError(
            f"expected an AdmissionReview of {' or '.join(REVIEW_VERSIONS)}, found "
            f"kind {review.get('kind')!r} apiVersion {version!r}"
        )
    if not isinstance(request, Mapping) or not request.get("uid"):
        raise SpecError("the AdmissionReview has no request with a uid")
    verdict = review_request(request, options, current)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": verdict.allowed}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    if not verdict.allowed:
        response["status"] = {
            "code": INVALID_CODE,
            "reason": "Invalid",
            "message": verdict.message,
        }
    return {"apiVersion": version, "kind": "AdmissionReview", "response": response}


def service_dns_names(namespace: str, name: str) -> list[str]:
    """The names the API server may use for a Service: it dials `NAME.NAMESPACE.svc`."""
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    ]


@dataclass(frozen=True)
class WebhookTarget:
    """Where the API server sends reviews: a Service in the cluster (the operator running as a
    pod) or a URL (the operator running elsewhere, e.g. on a developer's machine)."""

    namespace: str | None = None
    service: str | None = None
    url: str | None = None

    @classmethod
    def parse(cls, service: str | None, url: str | None) -> WebhookTarget:
        """From `--webhook-service NAMESPACE/NAME` or `--webhook-url https://HOST:PORT`."""
        if (service is None) == (url is None):
            raise SpecError("give exactly one of --webhook-service NAMESPACE/NAME or --webhook-url")
        if service is not None:
            namespace, _, name = service.partition("/")
            if not namespace or not name:
                raise SpecError(
                    f"--webhook-service {service!r}: expected NAMESPACE/NAME, "
                    "e.g. ebbtide-system/ebbtide-operator"
                )
            return cls(namespace, name)
        assert url is not None
        if not url.startswith("https://"):
            raise SpecError(f"--webhook-url {url!r}: the API server calls webhooks over https://")
        return cls(url=url.rstrip("/"))

    def client_config(self, ca_bundle: bytes | None = None) -> dict[str, Any]:
        config: dict[str, Any]
        if self.url is not None:
            config = {"url": self.url + WEBHOOK_PATH}
        else:
            config = {
                "service": {
                    "namespace": self.namespace,
                    "name": self.service,
                    "path": WEBHOOK_PATH,
                    "port": WEBHOOK_SERVICE_PORT,
                }
            }
        if ca_bundle is not None:
            config["caBundle"] = base64.b64encode(ca_bundle).decode("ascii")
        return config

    def names(self) -> tuple[list[str], list[str]]:
        """The DNS names and IP addresses the serving certificate must hold."""
        dns, ips = ["localhost"], ["127.0.0.1"]
        if self.namespace and self.service:
            dns = service_dns_names(self.namespace, self.service) + dns
        if self.url is not None:
            host = urlsplit(self.url).hostname or "localhost"
            try:
                ipaddress.ip_address(host)
            except ValueError:
                dns.insert(0, host)
            else:
                ips.insert(0, host)
        return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def webhook_configuration(target: WebhookTarget, ca_bundle: bytes | None = None) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration sending endpoint creates and updates to the operator;
    without `ca_bundle` as `ebbtide kube install` prints it, with it as the operator applies it."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": WEBHOOK_CONFIGURATION,
            "labels": {"app.kubernetes.io/part-of": "ebbtide"},
        },
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1", "v1beta1"],
                "sideEffects": "None",
                "failurePolicy": FAILURE_POLICY,
                "matchPolicy": "Equivalent",
                "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
                "rules": [
                    {
                        "apiGroups": [API_GROUP],
                        "apiVersions": ["*"],
                        "resources": [PLURAL, f"{PLURAL}/scale"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": target.client_config(ca_bundle),
            }
        ],
    }
