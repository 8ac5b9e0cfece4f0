"""`ebbtide kube fetch-model URI DEST`: the storage initializer for http(s) model URIs.

Runs as the init container of a model-server pod whose `spec.model.uri` is an http(s) URL:
downloads the file into `DEST` (`/models/<name>/<version>`), unpacking `.tar.gz`, `.tgz`,
`.tar` and `.zip` archives, so the model server finds the model where a repository would
hold it. Archives cannot write outside `DEST`. Object stores (s3://, gs://) use KServe's
storage initializer image instead; see `ebbtide.kube.manifests`.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import httpx

from ebbtide.core.errors import ModelLoadError, ModelNotFoundError, SpecError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DOWNLOAD_TIMEOUT_SECONDS = 300.0
CHUNK_BYTES = 1 << 20


def fetch_model(uri: str, destination: Path, client: httpx.Client | None = None) -> list[Path]:
    """Download `uri` into `destination`; returns the files now there, sorted."""
    if not uri.startswith(("http://", "https://")):
        raise SpecError(f"fetch-model downloads http(s) URIs only, not {uri!r}")
    name = PurePosixPath(urlparse(uri).path).name or "model"
    destination.mkdir(parents=True, exist_ok=True)
    download = destination / f".download-{name}"
    owned = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=DOWNLOAD_TIMEOUT_SECONDS)
    try:
        _download(http, uri, download)
        _place(download, name, destination)
    finally:
        download.unlink(missing_ok=True)
        if owned:
            http.close()
    return sorted(path for path in destination.rglob("*") if path.is_file())


def _download(http: httpx.Client, uri: str, target: Path) -> None:
    try:
        with http.stream("GET", uri) as response:
            if response.status_code == 404:
                raise ModelNotFoundError(f"{uri}: not found (404); check spec.model.uri")
            if not response.is_success:
                raise ModelLoadError(f"{uri}: the server answered {response.status_code}")
            with target.open("wb") as file:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    file.write(chunk)
    except httpx.HTTPError as error:
        raise ModelLoadError(f"{uri}: cannot download: {error}") from error


def _place(download: Path, name: str, destination: Path) -> None:
    if name.endswith(TAR_SUFFIXES):
        try:
            with tarfile.open(download) as archive:
                archive.extractall(destination, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise ModelLoadError(f"{name}: not a usable tar archive: {error}") from error
    elif name.endswith(".zip"):
        _unzip(download, name, destination)
    else:
        shutil.move(download, destination / name)


def _unzip(download: Path, name: str, destination: Path) -> None:
    root = destination.resolve()
    try:
        with zipfile.ZipFile(download) as archive:
            for member in archive.namelist():
                target = (root / member).resolve()
                if not target.is_relative_to(root):
                    raise ModelLoadError(f"{name}: member {member!r} would land outside {root}")
            archive.extractall(root)
    except zipfile.BadZipFile as error:
        raise ModelLoadError(f"{name}: not a usable zip archive: {error}") from error
