"""axe-core, run inside the pages: no serious or critical violations on the widget (open, with
a rated reply, and at its CSAT question) and on the main dashboard pages."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.actions import log_in, open_widget, send
from tests.browser.conftest import DESKTOP, PHONE, serious_axe_violations
from tests.browser.stack import Stack

SIZES = {"desktop": DESKTOP, "phone": PHONE}


@pytest.mark.parametrize("size", SIZES)
def test_widget_has_no_serious_violations(page: Any, stack: Stack, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    panel = open_widget(page, stack)
    assert serious_axe_violations(page) == []
    send(page, panel, "where is my order")
    reply = panel.locator("li.assistant:has(.rate)")
    expect(reply).to_have_count(1)
    reply.get_by_role("button", name="Not helpful").click()
    expect(reply.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert serious_axe_violations(page) == []
    panel.get_by_role("button", name="End chat").click()
    expect(panel.get_by_role("radio", name="3 - Neutral")).to_be_visible()
    assert serious_axe_violations(page) == []


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_pages_have_no_serious_violations(page: Any, stack: Stack, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    page.goto(f"{stack.api}/dashboard/")
    expect(page.get_by_role("heading", name="Operator login")).to_be_visible()
    assert serious_axe_violations(page) == []
    log_in(page, stack)
    for name in ["conversations", "metrics", "models", "runs", "admin"]:
        page.goto(f"{stack.api}/dashboard/#/{name}")
        expect(page.locator("main h1")).to_be_visible()
        assert serious_axe_violations(page) == [], name
    # A conversation of its own to open (the other tests' may run on another worker).
    started = httpx.post(f"{stack.api}/v1/widget/conversations", json={}, timeout=10).json()
    asked = httpx.post(
        f"{stack.api}/v1/widget/conversations/{started['conversation_id']}/messages",
        json={"text": "where is my order"},
        headers={"Authorization": f"Bearer {started['token']}"},
        timeout=30,
    )
    assert asked.status_code == 201, asked.text
    page.goto(f"{stack.api}/dashboard/#/conversations")
    page.locator("tbody a").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Conversation of"))).to_be_visible()
    assert serious_axe_violations(page) == []
