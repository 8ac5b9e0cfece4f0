"""`ebbtide kube fetch-model`: a real download from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from ebbtide.cli.main import app
from ebbtide.core.errors import ModelLoadError
from ebbtide.kube.fetch import fetch_model

pytestmark = pytest.mark.integration
runner = CliRunner()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A folder with an iris model, as a file and as archives, served over HTTP."""
    root = tmp_path_factory.mktemp("served")
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    joblib.dump(model, root / "model.joblib")
    with tarfile.open(root / "iris.tar.gz", "w:gz") as archive:
        archive.add(root / "model.joblib", arcname="model.joblib")
    with zipfile.ZipFile(root / "iris.zip", "w") as archive:
        archive.write(root / "model.joblib", arcname="model.joblib")
    with zipfile.ZipFile(root / "evil.zip", "w") as archive:
        archive.writestr("../../escaped.txt", "outside")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_predicts_iris(path: Path) -> None:
    model = joblib.load(path)
    features, labels = load_iris(return_X_y=True)
    assert (model.predict(features) == labels).mean() > 0.9


@pytest.mark.parametrize("name", ["model.joblib", "iris.tar.gz", "iris.zip"])
def test_fetches_files_and_archives_into_the_version_folder(
    served: tuple[str, Path], tmp_path: Path, name: str
) -> None:
    url, _ = served
    destination = tmp_path / "models" / "iris" / "v1"
    result = runner.invoke(app, ["kube", "fetch-model", f"{url}/{name}", str(destination)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(destination / "model.joblib")
    assert [p.name for p in destination.iterdir()] == ["model.joblib"]
    assert_predicts_iris(destination / "model.joblib")


def test_missing_model_is_a_clear_error(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    result = runner.invoke(app, ["kube", "fetch-model", f"{url}/nope.joblib", str(tmp_path)])
    assert result.exit_code == 1
    assert "not found (404); check spec.model.uri" in result.stderr


def test_archive_cannot_write_outside_the_folder(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    destination = tmp_path / "a" / "b" / "c"
    with pytest.raises(ModelLoadError, match="would land outside"):
        fetch_model(f"{url}/evil.zip", destination)
    assert not (tmp_path / "a" / "escaped.txt").exists()
    assert list(destination.iterdir()) == []


def test_broken_archive_is_reported(tmp_path: Path, served: tuple[str, Path]) -> None:
    url, root = served
    (root / "broken.tar.gz").write_bytes(io.BytesIO(b"not a tarball").getvalue())
    with pytest.raises(ModelLoadError, match="not a usable tar archive"):
        fetch_model(f"{url}/broken.tar.gz", tmp_path / "m")
