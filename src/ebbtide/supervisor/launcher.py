"""Starting a replica's model server as a fresh process (`python -m ebbtide.runtime`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ebbtide.supervisor.template import ReplicaTemplate


def model_arguments(template: ReplicaTemplate) -> list[str]:
    """The model server's arguments that say what to serve: the model, where, and batching."""
    arguments = [
        f"{template.model_name}:{template.model_version}",
        "--repository",
        str(template.repository),
    ]
    if template.max_batch_size is not None and template.max_batch_latency_ms is not None:
        arguments += [
            "--max-batch-size",
            str(template.max_batch_size),
            "--max-latency-ms",
            str(template.max_batch_latency_ms),
        ]
    return arguments


def serve_command(template: ReplicaTemplate, port: int) -> list[str]:
    """The model server's command line for a template, listening on a loopback port."""
    return [
        sys.executable,
        "-m",
        "ebbtide.runtime",
        *model_arguments(template),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


class SubprocessLauncher:
    """Starts each replica as a new Python process: always safe, slower than a warm fork."""

    async def launch(
        self, template: ReplicaTemplate, port: int, log: Path
    ) -> asyncio.subprocess.Process:
        with log.open("ab") as output:
            return await asyncio.create_subprocess_exec(
                *serve_command(template, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # outlives the control plane, for the next to adopt
            )

    async def close(self) -> None:
        """Nothing to release: each replica is the supervisor's own child."""
