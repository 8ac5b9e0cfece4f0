"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon.lifecycle import is_running


def start_control_plane(
    home: Path, *options: str, timeout: float = 20.0
) -> subprocess.Popen[bytes]:
    """A real control-plane process on `home` (its gateway on a free port), answering
    before this returns."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ebbtide.daemon",
            "--home",
            str(home),
            "--gateway-port",
            "0",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = SYSTEM_CLOCK.now() + timeout
    while not is_running(home):
        if process.poll() is not None:
            raise RuntimeError(f"control plane exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        if SYSTEM_CLOCK.now() > deadline:
            process.kill()
            raise RuntimeError("control plane did not answer in time")
        SYSTEM_CLOCK.blocking_sleep(0.05)
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr:
        process.stderr.close()


@pytest.fixture
def ebbtide_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state directory, set as $EBBTIDE_HOME for the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("EBBTIDE_HOME", str(home))
    return home


@pytest.fixture
def control_plane(ebbtide_home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A running control plane on the test's state directory, stopped after the test."""
    process = start_control_plane(ebbtide_home)
    yield process
    stop_process(process)


@pytest.fixture
def cli_env(ebbtide_home: Path) -> dict[str, str]:
    """Environment for running `ebbtide` as a subprocess against the test's state directory."""
    return {**os.environ, "EBBTIDE_HOME": str(ebbtide_home)}
