"""What a customer and an operator do in the browser, shared by the browser tests."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.stack import ADMIN_EMAIL, ADMIN_PASSWORD, WIDGET_TITLE, Stack

STORE = "chatdistill:{api}"


def open_widget(page: Any, stack: Stack, host: str | None = None) -> Any:
    """Open the widget as a new visitor on the stack's host page (or on `host`)."""
    page.goto(host or stack.host)
    page.evaluate("localStorage.clear(); sessionStorage.clear()")  # a new visitor
    page.reload()
    page.get_by_role("button", name=WIDGET_TITLE).click()
    panel = page.get_by_role("dialog", name=WIDGET_TITLE)
    expect(panel).to_be_visible()
    return panel


def send(page: Any, panel: Any, text: str) -> None:
    box = panel.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def log_in(page: Any, stack: Stack, api: str | None = None) -> None:
    """Log in as the admin, on `api` (another process of the stack) or the stack's own."""
    page.goto(f"{api or stack.api}/dashboard/")
    page.get_by_label("E-mail").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Conversations", level=1)).to_be_visible()
