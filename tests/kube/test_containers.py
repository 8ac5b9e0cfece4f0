"""The test node's container mounts, run for real in a private mount namespace (root)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed.containers import Mount, namespace_argv


def run_in_namespace(tmp_path: Path, keep: tuple[Path, ...]) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "checkout" / "bin"
    program.mkdir(parents=True)
    (program / "marker").write_text("here")
    volume = tmp_path / "volume"
    volume.mkdir()
    mounts = [Mount(source=volume, target=str(tmp_path / "checkout"), read_only=False)]
    argv = namespace_argv(mounts, tmp_path / "stage", "/", ["cat", str(program / "marker")], keep)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_a_volume_over_a_parent_of_the_program_leaves_the_program_in_place(tmp_path: Path) -> None:
    kept = run_in_namespace(tmp_path, keep=(tmp_path / "checkout" / "bin",))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == "here"


def test_without_keeping_it_the_volume_hides_the_program(tmp_path: Path) -> None:
    hidden = run_in_namespace(tmp_path, keep=())
    assert hidden.returncode != 0
    assert "No such file" in hidden.stderr
