"""A systemd unit that runs the control plane, for `ebbtide up --systemd-unit`.

systemd then does the keeper's work: `Restart=always` starts the control plane again after a
crash, and `KillMode=process` makes sure that a restart (or a crash) stops only the control
plane itself, never the gateway and replicas it runs in their own sessions, which the next
control plane adopts. `systemctl stop` sends SIGTERM to the control plane, which stops them
all; `systemctl reload` hands over (SIGUSR2) to a new control plane, as `ebbtide restart` does.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ebbtide.daemon.control_plane import EXIT_HANDOVER


def systemd_unit(home: Path, options: Sequence[str]) -> str:
    command = [sys.executable, "-m", "ebbtide.daemon", "--home", str(home), *options]
    return f"""[Unit]
Description=ebbtide control plane ({home})
After=network.target

[Service]
Type=simple
ExecStart={shlex.join(command)}
ExecReload=/bin/kill -USR2 $MAINPID
Restart=always
RestartSec=250ms
SuccessExitStatus={EXIT_HANDOVER}
KillMode=process
TimeoutStopSec=60

[Install]
WantedBy=default.target
"""
