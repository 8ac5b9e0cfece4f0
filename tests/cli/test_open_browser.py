"""`ebbtide dashboard` opens a browser only where there is a screen, and never fails."""

from __future__ import annotations

import sys
import webbrowser

import pytest

from ebbtide.cli.browser import has_display, open_in_browser


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="always a screen there")
def test_without_a_display_nothing_is_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    launched: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: launched.append(url) or True)
    assert not has_display()
    assert open_in_browser("http://127.0.0.1:8090/") is False
    assert launched == []


def test_a_display_without_a_usable_browser_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPLAY", ":0")

    def no_browser(url: str) -> bool:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    assert open_in_browser("http://127.0.0.1:8090/") is False
