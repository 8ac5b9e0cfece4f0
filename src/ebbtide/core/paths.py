"""Where ebbtide keeps its state: `$EBBTIDE_HOME`, by default `~/.ebbtide`."""

from __future__ import annotations

import os
from pathlib import Path


def ebbtide_home() -> Path:
    """The state directory: `$EBBTIDE_HOME` if set, else `~/.ebbtide`."""
    configured = os.environ.get("EBBTIDE_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".ebbtide"
