"""Signs in to the analytics panel in headless Chromium and saves a screenshot (docs/panel.png in the README).

    COUCHDB_URL=http://127.0.0.1:PORT .venv/bin/python scripts/panel_screenshot.py ops PASSWORD docs/panel.png

Run it at the end of a demo (scripts/demo.sh waits for Enter before stopping couchsim); the browser is
Debian's chromium, as in tests/browser.
"""

from __future__ import annotations

import os
import sys
import tempfile

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No background traffic: the machine may have no network but loopback (and Chromium retries what fails).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PANEL = "/analytics-panel/_design/panel/index.html"


def main(name: str, password: str, out: str) -> None:
    url = os.environ["COUCHDB_URL"].rstrip("/") + PANEL
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page = browser.new_page()
        page.goto(url)
        page.fill("#signin-form [name=name]", name)
        page.fill("#signin-form [name=password]", password)
        page.click("#signin-form button")
        page.wait_for_selector("#dashboard:not([hidden]) [data-chart=days] svg")
        page.screenshot(path=out, full_page=True)
        browser.close()
    print(f"saved {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
