"""Screenshot the dashboard at URL into FILE with headless Chromium, after WAIT seconds.

.venv/bin/python scripts/screenshot-dashboard.py http://127.0.0.1:8090/ docs/img/dashboard.png 5
"""

from __future__ import annotations

import sys
import tempfile

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    url, path = sys.argv[1], sys.argv[2]
    wait = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 960},
        )
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("section[data-endpoint]")
        page.wait_for_timeout(wait * 1000)
        page.screenshot(path=path, full_page=True)
        context.close()


if __name__ == "__main__":
    main()
