"""Driving the page in Debian's Chromium with Playwright: shared by the browser tests and bench.screenshot."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1100, "height": 900}


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def look_up(page: Page, client_id: object, k: int) -> None:
    page.fill("#client-id", str(client_id))
    page.fill("#client-k", str(k))
    page.click("#lookup-form button[type=submit]")


def show_lookup_and_basket(page: Page, client_id: int) -> None:
    """The page as the README shows it: a client's top 5, the first with its products, and a two-label
    basket's top 10."""
    look_up(page, client_id, 5)
    for pick in range(2):
        page.locator("#label-list .pick").nth(pick * 7).click()
    page.select_option("#basket-gender", "F")
    expect(page.locator("#client-ranking tbody tr:not(.products-row)")).to_have_count(5)
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(10)
    page.locator("#client-ranking .expand").first.click()
