"""The webhook over real HTTPS: a fresh CA, the Service's name in the certificate, real
AdmissionReview bodies in and out, and the health endpoints the kubelet probes."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography import x509

from ebbtide.kube.admission import WEBHOOK_PATH, WebhookTarget, webhook_configuration
from ebbtide.kube.webhook import HealthServer, Identity, WebhookServer, make_identity
from tests.kube.test_admission import as_stored, review, scale_review
from tests.spec.cases import SEED, seed_with

SERVICE = WebhookTarget("ebbtide-system", "ebbtide-operator")
# kube-apiserver dials a webhook Service as NAME.NAMESPACE.svc and checks that name.
SERVICE_NAME = "ebbtide-operator.ebbtide-system.svc"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def trusting(ca: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.decode())


def run(test: Callable[[WebhookServer, Identity], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        identity = make_identity(*SERVICE.names(), NOW)
        server = WebhookServer(identity)
        await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server, identity), timeout=60)
        finally:
            await server.stop()

    asyncio.run(main())


async def post(
    server: WebhookServer, ca: bytes, body: Any, name: str = SERVICE_NAME
) -> httpx.Response:
    async with httpx.AsyncClient(verify=trusting(ca), timeout=30) as client:
        return await client.post(
            f"https://127.0.0.1:{server.port}{WEBHOOK_PATH}",
            json=body,
            extensions={"sni_hostname": name},
        )


def test_certificate_names_the_service_and_is_signed_by_the_ca() -> None:
    identity = make_identity(*SERVICE.names(), NOW)
    certificate = x509.load_pem_x509_certificate(identity.certificate)
    ca = x509.load_pem_x509_certificate(identity.ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_NAME in names.get_values_for_type(x509.DNSName)
    assert "ebbtide-operator.ebbtide-system.svc.cluster.local" in names.get_values_for_type(
        x509.DNSName
    )
    assert certificate.issuer == ca.subject
    certificate.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert certificate.not_valid_before_utc < NOW < certificate.not_valid_after_utc


def test_each_start_makes_a_new_ca() -> None:
    first, second = (make_identity(*SERVICE.names(), NOW) for _ in range(2))
    assert first.ca != second.ca


def test_refuses_a_mistake_over_https_with_validates_message() -> None:
    async def check(server: WebhookServer, identity: Identity) -> None:
        body = review(as_stored(seed_with("spec.autoscaling.minReplicas", 6)))
        response = await post(server, identity.ca, body)
        assert response.status_code == 200
        answer = response.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        assert answer["response"]["allowed"] is False
        assert answer["response"]["status"]["message"].startswith(
            "error: default/my-model-endpoint: spec.autoscaling.minReplicas: minReplicas (6) is "
            "greater than maxReplicas (5)\n  fix: set minReplicas to at most maxReplicas"
        )

    run(check)


def test_allows_the_seed_and_warns_over_https() -> None:
    async def check(server: WebhookServer, identity: Identity) -> None:
        answer = (await post(server, identity.ca, review(as_stored(SEED)))).json()
        assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}
        same = review(as_stored(seed_with("spec.autoscaling.minReplicas", 5)), "UPDATE")
        answer = (await post(server, identity.ca, same)).json()
        assert answer["response"]["allowed"] is True
        assert "autoscaling is disabled" in answer["response"]["warnings"][0]

    run(check)


def test_a_scale_is_checked_against_the_endpoint_as_stored() -> None:
    looked_up: list[tuple[str, str]] = []

    async def lookup(namespace: str, name: str) -> dict[str, Any] | None:
        looked_up.append((namespace, name))
        return as_stored(SEED)

    async def main() -> None:
        identity = make_identity(*SERVICE.names(), NOW)
        server = WebhookServer(identity, lookup=lookup)
        await server.start("127.0.0.1", 0)
        try:
            answer = (await post(server, identity.ca, scale_review(9))).json()["response"]
            assert answer["allowed"] is False
            assert "minReplicas (9) is greater than maxReplicas (5)" in answer["status"]["message"]
            answer = (await post(server, identity.ca, review(as_stored(SEED)))).json()
            assert answer["response"]["allowed"] is True
        finally:
            await server.stop()

    asyncio.run(main())
    assert looked_up == [("default", "my-model-endpoint")]  # only the scale needed a read


def test_a_malformed_body_is_a_400_not_a_500() -> None:
    async def check(server: WebhookServer, identity: Identity) -> None:
        response = await post(server, identity.ca, {"kind": "Pod"})
        assert response.status_code == 400
        assert "expected an AdmissionReview" in response.json()["error"]
        async with httpx.AsyncClient(verify=trusting(identity.ca)) as client:
            response = await client.post(
                f"https://127.0.0.1:{server.port}{WEBHOOK_PATH}",
                content=b"{not json",
                extensions={"sni_hostname": SERVICE_NAME},
            )
        assert response.status_code == 400

    run(check)


def test_a_client_that_does_not_trust_the_ca_or_expects_another_name_is_refused() -> None:
    async def check(server: WebhookServer, identity: Identity) -> None:
        other = make_identity(*SERVICE.names(), NOW)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(server, other.ca, review(as_stored(SEED)))
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(server, identity.ca, review(as_stored(SEED)), name="evil.example.com")

    run(check)


def test_the_configuration_carries_the_ca_that_verifies_the_server() -> None:
    async def check(server: WebhookServer, identity: Identity) -> None:
        configuration = webhook_configuration(SERVICE, identity.ca)
        client_config = configuration["webhooks"][0]["clientConfig"]
        ca = base64.b64decode(client_config["caBundle"])
        assert client_config["service"]["path"] == WEBHOOK_PATH
        response = await post(server, ca, review(as_stored(SEED)))
        assert response.json()["response"]["allowed"] is True

    run(check)


def test_a_url_target_names_its_host_in_the_certificate() -> None:
    target = WebhookTarget.parse(None, "https://127.0.0.5:9443")
    assert target.client_config() == {"url": f"https://127.0.0.5:9443{WEBHOOK_PATH}"}
    dns, ips = target.names()
    assert ips[0] == "127.0.0.5"
    assert "localhost" in dns


async def _health(alive: bool, ready: bool) -> AsyncIterator[tuple[int, int]]:
    server = HealthServer(lambda: alive, lambda: ready)
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield (
                (await client.get("/healthz")).status_code,
                (await client.get("/readyz")).status_code,
            )
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("alive", "ready", "codes"),
    [(True, True, (200, 200)), (True, False, (200, 503)), (False, False, (503, 503))],
)
def test_health_endpoints(alive: bool, ready: bool, codes: tuple[int, int]) -> None:
    async def main() -> tuple[int, int]:
        async for found in _health(alive, ready):
            return found
        raise AssertionError("no answer")

    assert asyncio.run(main()) == codes
