"""The operator's validating admission webhook: its TLS identity and its HTTPS server; and the
health endpoints the kubelet probes. (What it decides, and its configuration object, are in
`ebbtide.kube.admission`.)

At every start the operator makes a fresh CA and a serving certificate signed by it (for the
webhook Service's DNS names), serves `ebbtide.kube.admission` over HTTPS with them, and writes
the CA into the `caBundle` of the ValidatingWebhookConfiguration that `ebbtide kube install`
created, so no Secret, no cert-manager and no certificate renewal are needed: a certificate
lives as long as the process that made it. The configuration's failure policy is `Fail`: while
no operator answers, creating or changing an endpoint is refused (deletes, status writes and
everything else are not affected).

aiohttp (a dependency of kopf) serves both ports inside the operator's event loop.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ebbtide.core.errors import KubernetesError, SpecError
from ebbtide.kube.admission import WEBHOOK_PATH, WEBHOOK_PORT, admission_response, scale_target
from ebbtide.kube.manifests import RenderOptions

logger = logging.getLogger("ebbtide.kube")

CERTIFICATE_DAYS = 3650
MAX_REVIEW_BYTES = 3 * 1024 * 1024  # the API server's own limit on a request body

Lookup = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""(namespace, name) → the endpoint as stored, or None."""


@dataclass(frozen=True)
class Identity:
    """A CA and a serving certificate it signed, PEM-encoded."""

    ca: bytes
    certificate: bytes
    key: bytes

    def server_context(self, folder: Path) -> ssl.SSLContext:
        """A TLS server context for this identity (ssl loads keys only from files: they are
        written, readable by this user alone, to `folder`)."""
        certificate, key = folder / "tls.crt", folder / "tls.key"
        certificate.write_bytes(self.certificate + self.ca)
        key.touch(mode=0o600)
        key.write_bytes(self.key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)
        return context


def make_identity(
    dns_names: Sequence[str], ip_addresses: Sequence[str], now: dt.datetime
) -> Identity:
    """A new CA and a certificate for `dns_names` and `ip_addresses`, valid from a minute
    before `now` (clock skew) for ten years."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ebbtide-operator webhook CA")])
    start, end = now - dt.timedelta(minutes=1), now + dt.timedelta(days=CERTIFICATE_DAYS)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    common = dns_names[0] if dns_names else ip_addresses[0]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Identity(
        ca.public_bytes(pem),
        certificate.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _key_usage(signs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs,
        crl_sign=signs,
        encipher_only=False,
        decipher_only=False,
    )


class WebhookServer:
    """Serves admission reviews over HTTPS on `host:port` (port 0: any free port)."""

    def __init__(
        self,
        identity: Identity,
        options: RenderOptions | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        self.identity = identity
        self.options = options
        self.lookup = lookup
        self._runner: web.AppRunner | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="ebbtide-webhook-")
        self.port = 0

    async def start(self, host: str = "0.0.0.0", port: int = WEBHOOK_PORT) -> int:
        """Start serving; returns the port bound."""
        app = web.Application(client_max_size=MAX_REVIEW_BYTES)
        app.router.add_post(WEBHOOK_PATH, self._review)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        context = self.identity.server_context(Path(self._folder.name))
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        self.port = _bound_port(self._runner)
        logger.info("admission webhook serving on https://%s:%d%s", host, self.port, WEBHOOK_PATH)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._folder.cleanup()

    async def _review(self, request: web.Request) -> web.Response:
        try:
            review = json.loads(await request.read())
            if not isinstance(review, dict):
                raise SpecError("the body is not a JSON object")
            current = await self._current(review.get("request"))
            answer = admission_response(review, self.options, current)
        except (ValueError, SpecError) as error:
            # A malformed review is the caller's mistake: 400, and the API server applies the
            # failure policy.
            return web.json_response({"error": f"not an AdmissionReview: {error}"}, status=400)
        allowed = answer["response"]["allowed"]
        name = ((review.get("request") or {}).get("object") or {}).get("metadata", {}).get("name")
        logger.info("admission of %s: %s", name, "allowed" if allowed else "refused")
        return web.json_response(answer)

    async def _current(self, request: Any) -> Mapping[str, Any] | None:
        """The endpoint a scale update is for, as stored (a Scale carries only replicas)."""
        target = scale_target(request) if isinstance(request, Mapping) else None
        if target is None or self.lookup is None:
            return None
        try:
            return await self.lookup(*target)
        except KubernetesError as error:
            # Unchecked rather than refused: the operator still reports an invalid spec.
            logger.warning("cannot read %s/%s to check its scale: %s", *target, error)
            return None


class HealthServer:
    """`/healthz` (liveness: the operator's event loop answers and `alive()` holds) and
    `/readyz` (readiness: the webhook serves with its CA in place) over plain HTTP."""

    def __init__(self, alive: Callable[[], bool], ready: Callable[[], bool]) -> None:
        self.alive = alive
        self.ready = ready
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._check(self.alive, "alive"))
        app.router.add_get("/readyz", self._check(self.ready, "ready"))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = _bound_port(self._runner)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _check(condition: Callable[[], bool], word: str) -> Callable[[web.Request], Any]:
        async def answer(_: web.Request) -> web.Response:
            if condition():
                return web.Response(text=f"{word}\n")
            return web.Response(text=f"not {word}\n", status=503)

        return answer


def _bound_port(runner: web.AppRunner) -> int:
    """The port the runner's one site listens on (asked for 0: the one the OS chose)."""
    address = runner.addresses[0]
    return int(address[1])
