"""The `ebbtide` command: `serve-model` goes straight to the model server, the rest to the CLI.

`ebbtide serve-model` is what every Kubernetes pod runs, and a pod's start is a fresh start:
it must be as quick as `python -m ebbtide.runtime`. So it is dispatched here, before the
command-line framework (typer, rich) or any control-plane code is imported, and the replica
runs in this very process (no second interpreter).
"""

from __future__ import annotations

import sys

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.runtime.timeline import StartTimeline

SERVE_MODEL = "serve-model"


def main() -> None:
    timeline = StartTimeline.begin(SYSTEM_CLOCK)
    arguments = sys.argv[1:]
    if arguments[:1] == [SERVE_MODEL]:
        from ebbtide.runtime.cli import main as serve_model

        sys.exit(serve_model(arguments[1:], prog=f"ebbtide {SERVE_MODEL}", timeline=timeline))
    from ebbtide.cli.main import app

    app()
