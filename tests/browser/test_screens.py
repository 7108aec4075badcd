"""Every screen at desktop and phone width: screenshots kept as artefacts, and the layout holds
(the widget fills a phone's screen, no page scrolls sideways)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.actions import log_in, open_widget, send
from tests.browser.conftest import DESKTOP, PHONE, shot
from tests.browser.stack import Stack

PAGES = ["conversations", "metrics", "models", "runs", "admin"]


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"


def test_widget_fills_a_phone_screen(page: Any, stack: Stack) -> None:
    page.set_viewport_size(PHONE)
    panel = open_widget(page, stack)
    box = panel.bounding_box()
    assert box == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
    send(page, panel, "i want a refund")
    expect(panel.locator("li.assistant:has(.rate)")).to_have_count(1)
    no_sideways_scroll(page)
    shot(page, "widget-phone-chat")
    panel.get_by_role("button", name="End chat").click()
    expect(panel.get_by_role("radio", name="5 - Very happy")).to_be_visible()
    shot(page, "widget-phone-csat")
    # Escape closes the panel and gives focus back to the launcher.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("Acme support"))).to_be_focused()
    shot(page, "widget-phone-closed")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_dashboard_pages(page: Any, stack: Stack, size: str) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    page.set_viewport_size(viewport)
    page.goto(f"{stack.api}/dashboard/")
    expect(page.get_by_role("heading", name="Operator login")).to_be_visible()
    shot(page, f"dashboard-{size}-login")
    log_in(page, stack)
    for name in PAGES:
        page.goto(f"{stack.api}/dashboard/#/{name}")
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("Something went wrong")
        if size == "phone":
            no_sideways_scroll(page)
        shot(page, f"dashboard-{size}-{name}")
    page.goto(f"{stack.api}/dashboard/#/conversations")
    first = page.locator("tbody a").first
    if first.count():
        first.click()
        expect(page.get_by_role("heading", name=re.compile("^Conversation of"))).to_be_visible()
        if size == "phone":
            no_sideways_scroll(page)
        shot(page, f"dashboard-{size}-conversation")


def test_demo_page_hosts_the_widget(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.api}/demo")
    page.evaluate("localStorage.clear(); sessionStorage.clear()")
    page.reload()
    page.get_by_role("button", name="Chat with us").click()
    panel = page.get_by_role("dialog", name="Chat with us")
    expect(panel.locator("li.assistant").first).to_contain_text("Ask me about an order")
    send(page, panel, "where is my order")
    expect(panel.locator("li.assistant:has(.rate) .bubble")).to_have_text(
        "your order is on its way"
    )
    shot(page, "demo-desktop")


def test_the_browser_enforces_the_dashboards_csp(context: Any, stack: Stack) -> None:
    """The suite runs with the CSP on, so a screen that needs an inline script or a foreign host
    fails its test: an injected inline script is refused, and Chromium says so."""
    tab = context.new_page()
    refused: list[str] = []
    tab.on("console", lambda msg: refused.append(msg.text) if "Content Security" in msg.text else 0)
    try:
        tab.goto(f"{stack.api}/dashboard/")
        expect(tab.get_by_role("heading", name="Operator login")).to_be_visible()
        with pytest.raises(Exception, match=r"Content Security Policy|script"):
            tab.add_script_tag(content="window.__injected = true;")
        assert tab.evaluate("window.__injected === undefined")
        assert refused, "Chromium logged no CSP refusal"
    finally:
        tab.close()
