"""The page at `/` in Debian's Chromium (driven by Playwright) against a real `wdrec serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.e2e.browser import CHROMIUM, VIEWPORT, launch, look_up, show_lookup_and_basket
from tests.e2e.conftest import Server, running_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    opened.goto(server.url + "/")
    yield opened
    context.close()


def known_client(server: Server) -> int:
    return int(httpx.get(f"{server.url}/clients", params={"limit": 1}).json()["clients"][0]["client_id"])


def test_page_loads_model_card_labels_and_docs_link(page: Page, server: Server) -> None:
    version = httpx.get(f"{server.url}/model").json()["version"]
    expect(page.locator("#model-facts")).to_contain_text(version)
    expect(page.locator("#model-metrics tr.model-row")).to_have_count(1)
    expect(page.locator("#model-metrics tbody tr")).not_to_have_count(1)  # baselines beside the model
    expect(page.locator("#model-metrics tbody")).to_contain_text("TIFU-KNN")
    expect(page.locator("#model-metrics thead")).to_contain_text("New to you")
    expect(page.locator("#model-verdict")).to_contain_text("the best baseline")
    page.select_option("#model-split", "valid")
    expect(page.locator("#model-metrics thead")).to_contain_text("valid set")
    expect(page.locator("#label-list .pick").first).to_be_visible()
    assert page.get_attribute("#docs-link", "href") == "/docs"
    expect(page.locator("#global-error")).to_be_hidden()


def test_known_client_shows_k_rows_sessions_and_bars(page: Page, server: Server) -> None:
    look_up(page, known_client(server), 7)
    expect(page.locator("#client-ranking tbody tr:not(.products-row)")).to_have_count(7)
    expect(page.locator("#client-sessions li")).not_to_have_count(0)
    expect(page.locator("#client-demographics")).to_contain_text("sessions")
    widths = page.locator("#client-ranking .bar span").evaluate_all("bars => bars.map(b => b.style.width)")
    assert len(widths) == 7 and all(w.endswith("%") for w in widths)


def test_expanding_a_label_shows_its_products_for_the_client(page: Page, server: Server) -> None:
    client = known_client(server)
    answer = httpx.get(f"{server.url}/recommend/{client}", params={"k": 5, "products": 5}).json()
    look_up(page, client, 5)
    rows = page.locator("#client-ranking tbody tr.products-row")
    expect(rows).to_have_count(5)
    expect(rows.first).to_be_hidden()
    for index in (0, 3):
        products = answer["recommendations"][index]["products"]
        page.locator("#client-ranking .expand").nth(index).click()
        expect(rows.nth(index)).to_be_visible()
        expect(page.locator("#client-ranking .expand").nth(index)).to_have_attribute("aria-expanded", "true")
        expect(rows.nth(index).locator(".product-name")).to_have_text([p["name"] for p in products])
        bought = [p for p in products if p["source"] == "bought"]
        expect(rows.nth(index).locator("li.bought")).to_have_count(len(bought))
        if bought:
            expect(rows.nth(index).locator("li.bought .product-facts").first).to_contain_text(
                f"bought in {bought[0]['sessions']} session"
            )
    page.locator("#client-ranking .expand").first.click()
    expect(rows.first).to_be_hidden()
    expect(rows.nth(3)).to_be_visible()


def test_unknown_client_shows_the_error(page: Page) -> None:
    look_up(page, 999999999, 5)
    expect(page.locator("#client-error")).to_have_text("Client 999999999 not found")
    expect(page.locator("#client-result")).to_be_hidden()


def test_basket_gives_scores_for_the_picked_labels(page: Page) -> None:
    first = page.locator("#label-list .pick").first
    label = first.inner_text()
    page.fill("#label-search", label)
    page.locator("#label-list .pick").first.click()
    expect(page.locator("#basket-items .chip")).to_have_text([label])
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(10)
    page.select_option("#basket-gender", "F")
    page.select_option("#basket-age", "30")
    page.fill("#basket-k", "4")
    page.press("#basket-k", "Enter")
    page.locator("#basket-k").blur()
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(4)
    page.locator("#basket-ranking .expand").first.click()
    first_product = page.locator("#basket-ranking tr.products-row .products li").first
    expect(first_product).to_contain_text(re.compile("popular with similar clients|best seller"))


def test_server_unreachable_shows_the_error(page: Page, server: Server) -> None:
    def refuse(route: Route) -> None:
        route.abort("connectionrefused")

    page.route("**/clients/**", refuse)
    page.route("**/recommend/**", refuse)
    look_up(page, known_client(server), 5)
    expect(page.locator("#client-error")).to_contain_text("Server unreachable")


def test_phone_width_has_no_horizontal_scroll(browser: Browser, server: Server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    phone = context.new_page()
    phone.goto(server.url + "/")
    look_up(phone, known_client(server), 10)
    expect(phone.locator("#client-ranking tbody tr:not(.products-row)")).to_have_count(10)
    phone.locator("#client-ranking .expand").first.click()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()


def test_screenshot_of_a_lookup_and_a_basket(page: Page, server: Server, tmp_path: Path) -> None:
    show_lookup_and_basket(page, known_client(server))
    shot = tmp_path / "web.png"  # results/web.png is made by `python -m bench.screenshot`
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filters_apply_to_the_client_ranking_and_say_when_fewer_remain(page: Page, server: Server) -> None:
    client_id = known_client(server)
    look_up(page, client_id, 10)
    rows = page.locator("#client-ranking tbody tr:not(.products-row)")
    expect(rows).to_have_count(10)
    page.check("#filter-new")
    expect(page.locator("#client-ranking tbody tr.bought")).to_have_count(0)
    expect(rows).to_have_count(10)
    first = rows.first.locator(".chip").inner_text()
    rows.first.locator("button.hide").click()
    expect(page.locator("#filter-exclude .chip")).to_have_text([first])
    expect(rows.first.locator(".chip")).not_to_have_text(first)
    labels = httpx.get(f"{server.url}/labels").json()["groups"]
    small = min(labels, key=lambda group: len(group["labels"]))
    page.select_option("#filter-clac1", small["clac1"])
    expect(page.locator("#client-notice")).to_be_hidden()
    look_up(page, client_id, len(small["labels"]) + 1)
    expect(page.locator("#client-notice")).to_contain_text("The filters leave")
    assert set(rows.locator(".chip").evaluate_all("chips => chips.map(c => c.title)")) == {small["clac1"]}


def test_contradictory_filters_show_the_conflict_and_basket_follows_filters(
    page: Page, server: Server
) -> None:
    clac1 = httpx.get(f"{server.url}/labels").json()["groups"][0]["clac1"]
    page.select_option("#basket-gender", "F")
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(10)
    page.select_option("#filter-exclude-clac1", clac1)
    # The ranking is re-scored a moment after the change (debounced): wait for the excluded category to go.
    expect(page.locator(f'#basket-ranking .chip[title="{clac1}"]')).to_have_count(0)
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(10)
    page.select_option("#filter-clac1", clac1)
    expect(page.locator("#basket-error")).to_contain_text(f"clac1 and exclude_clac1 both name {clac1}")
    page.click("#filter-clear")
    expect(page.locator("#basket-error")).to_be_hidden()
    expect(page.locator("#basket-ranking tbody tr:not(.products-row)")).to_have_count(10)


WRITE_KEY = "page-write-key"


@pytest.fixture(scope="module")
def writable(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the write routes, over a database of its own."""
    folder = tmp_path_factory.mktemp("writable")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WDREC_WRITE_API_KEY", WRITE_KEY)
        env.setenv("WDREC_STATE_DIR", str(folder / "state"))
        with running_server(tiny_artifacts, folder / "serve.log") as running:
            yield running


def test_record_form_is_hidden_without_the_write_routes(page: Page, server: Server) -> None:
    look_up(page, known_client(server), 5)
    expect(page.locator("#client-ranking tbody tr:not(.products-row)")).to_have_count(5)
    expect(page.locator("#record-form")).to_be_hidden()


def test_a_session_recorded_on_the_page_shows_with_the_new_ranking(
    browser: Browser, writable: Server
) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(writable.url + "/")
    client_id = known_client(writable)
    look_up(page, client_id, 10)
    expect(page.locator("#client-ranking tbody tr:not(.products-row)")).to_have_count(10)
    before = page.locator("#client-ranking tbody").inner_text()
    picks = [page.locator("#label-list .pick").nth(n) for n in (3, 20, 40)]
    labels = [pick.inner_text() for pick in picks]
    for label in labels:
        page.fill("#label-search", label)
        page.locator("#label-list .pick").first.click()
    page.fill("#record-key", WRITE_KEY)
    page.click("#record-form button[type=submit]")
    expect(page.locator("#record-status")).to_contain_text("Recorded session web-")
    recorded = page.locator("#client-sessions li.recorded")
    expect(recorded).to_have_count(1)
    expect(recorded.locator(".chip")).to_have_text(labels)
    assert page.locator("#client-ranking tbody").inner_text() != before
    stored = httpx.get(f"{writable.url}/clients/{client_id}").json()["recorded_sessions"]
    assert [[item["label"] for item in s["labels"]] for s in stored] == [labels]
    served = httpx.get(f"{writable.url}/recommend/{client_id}").json()["recommendations"]
    shown = page.locator("#client-ranking tbody td:nth-child(2) .chip").all_inner_texts()
    assert shown == [item["label"] for item in served]
    context.close()


def test_recording_with_a_wrong_key_shows_the_error(page: Page, writable: Server) -> None:
    page.goto(writable.url + "/")
    look_up(page, known_client(writable), 5)
    expect(page.locator("#record-form")).to_be_visible()
    page.locator("#label-list .pick").first.click()
    page.fill("#record-key", "wrong")
    page.click("#record-form button[type=submit]")
    expect(page.locator("#record-error")).to_contain_text("Missing or wrong API key")


def test_each_row_shows_its_reason_and_expanding_it_shows_the_contributions(
    page: Page, server: Server
) -> None:
    client = known_client(server)
    params: dict[str, str | int] = {"k": 5, "explain": "true", "products": 5}
    answer = httpx.get(f"{server.url}/recommend/{client}", params=params).json()["recommendations"]
    look_up(page, client, 5)
    rows = page.locator("#client-ranking tbody tr:not(.products-row)")
    expect(rows.locator(".reason")).to_have_text([item["reason"] for item in answer])
    detail = page.locator("#client-ranking tbody tr.products-row").nth(1)
    expect(detail.locator(".contributions")).to_be_hidden()
    page.locator("#client-ranking .expand").nth(1).click()
    explanation = answer[1]["explanation"]
    contributions = detail.locator("li.contribution")
    expect(contributions).to_have_count(len(explanation["contributions"]))
    expect(detail.locator(".why-title")).to_contain_text(f"{explanation['logit']:.3f}")
    terms = contributions.evaluate_all("rows => rows.map(r => r.dataset.term)")
    assert terms == [c["term"] for c in explanation["contributions"]]
    shown = [float(text.replace("−", "-")) for text in contributions.locator(".value").all_inner_texts()]
    assert shown == pytest.approx([c["value"] for c in explanation["contributions"]], abs=1e-3)
    (copurchase,) = [c for c in explanation["contributions"] if c["term"] == "copurchase"]
    named = [s["label"] for s in copurchase["sources"] if s["label"] is not None]
    for label in named:
        expect(detail.locator("li.contribution[data-term=copurchase] .sources")).to_contain_text(label)
    expect(detail.locator(".product-name").first).to_be_visible()  # the products stay in the same row
    page.select_option("#basket-gender", "F")
    expect(page.locator("#basket-ranking tbody tr:not(.products-row) .reason")).to_have_count(10)
