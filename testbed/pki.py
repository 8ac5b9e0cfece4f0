"""Certificates and keys for the test cluster, made with the `openssl` program."""

from __future__ import annotations

import subprocess
from pathlib import Path

DAYS = "3650"


def _openssl(*arguments: str, cwd: Path) -> None:
    completed = subprocess.run(
        ["openssl", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(arguments)} failed: {completed.stderr.strip()}")


def make_ca(directory: Path, name: str, common_name: str) -> None:
    """`<name>.key` and a self-signed `<name>.crt`."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        DAYS,
        "-subj",
        f"/CN={common_name}",
        cwd=directory,
    )


def make_certificate(
    directory: Path,
    name: str,
    ca: str,
    common_name: str,
    organization: str | None = None,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    client: bool = False,
) -> None:
    """`<name>.key` and `<name>.crt` signed by the CA `<ca>.key`/`<ca>.crt` in `directory`."""
    subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=directory,
    )
    names = [f"DNS:{dns}" for dns in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    usage = "clientAuth" if client else "serverAuth,clientAuth"
    extensions = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if names:
        extensions.append("subjectAltName=" + ",".join(names))
    (directory / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        DAYS,
        "-extfile",
        f"{name}.ext",
        cwd=directory,
    )


def make_signing_key(directory: Path, name: str) -> None:
    """`<name>.key` and its public half `<name>.pub` (service-account token signing)."""
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=directory)
    _openssl("rsa", "-in", f"{name}.key", "-pubout", "-out", f"{name}.pub", cwd=directory)
