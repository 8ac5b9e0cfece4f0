"""Opening a URL in a browser, only where there is a screen to show it on."""

from __future__ import annotations

import os
import sys
import webbrowser


def has_display() -> bool:
    """Whether a graphical browser can show a page here: macOS and Windows always can, others
    when an X or Wayland display is set. Without one, Python's `webbrowser` would fall back to
    a text browser that takes over the terminal."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_in_browser(url: str) -> bool:
    """Open `url` in the user's browser; False (and nothing else) when there is none."""
    if not has_display():
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
