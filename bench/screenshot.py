"""Not a benchmark: the README's screenshot of the page, results/web.png, from a real server and Chromium.

    .venv/bin/python -m bench.screenshot [--artifacts artifacts]

Serves the given artifacts (default: the ones `make run` trains), looks up the first known client and
builds a two-label basket, as tests/e2e/test_web.py does, and saves the full page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from bench import RESULTS
from tests.e2e.browser import VIEWPORT, launch, show_lookup_and_basket
from tests.e2e.conftest import running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts root or version")
    args = parser.parse_args()
    RESULTS.joinpath("tmp").mkdir(parents=True, exist_ok=True)
    with running_server(args.artifacts, RESULTS / "tmp" / "screenshot.log") as server:
        client_id = httpx.get(f"{server.url}/clients", params={"limit": 1}).json()["clients"][0]["client_id"]
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(server.url + "/")
            show_lookup_and_basket(page, int(client_id))
            page.screenshot(path=str(RESULTS / "web.png"), full_page=True)
            browser.close()
    print(f"wrote {RESULTS / 'web.png'}")


if __name__ == "__main__":
    main()
