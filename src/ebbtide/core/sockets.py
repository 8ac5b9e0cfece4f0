"""Listening sockets that several ebbtide processes share: owner-only unix sockets for control
channels, and TCP ports that more than one gateway worker may bind (`SO_REUSEPORT`)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ebbtide.core.errors import EbbtideError


def listen_owner_only(path: Path, running: str) -> socket.socket:
    """A listening unix socket at `path`, readable and writable by its owner only. A stale
    socket file left by a crash is replaced; one that still answers is an error whose message
    is `running` (what runs there and how to stop it)."""
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise EbbtideError(running)
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_mask)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener


def listen_tcp(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket with `SO_REUSEPORT`, so that more gateway workers can bind the
    same port and the kernel spreads new connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener
