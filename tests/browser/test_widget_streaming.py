"""The widget reads streamed replies (server-sent events over fetch), and falls back to the
plain endpoint when the server has no stream endpoint."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.actions import open_widget, send
from tests.browser.stack import Stack


def test_reply_is_streamed_token_by_token(page: Any, stack: Stack) -> None:
    panel = open_widget(page, stack)
    with page.expect_response(re.compile(r"/messages/stream$")) as streamed:
        send(page, panel, "i want a refund")
    response = streamed.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", response.text(), flags=re.MULTILINE)
    assert events[0] == "message" and events[-1] == "reply" and "token" in events
    reply = panel.locator("li.assistant:has(.rate)")
    expect(reply.locator(".bubble")).to_have_text("we will refund you within five days")
    expect(reply).not_to_have_attribute("aria-busy", "true")


def test_without_a_stream_endpoint_the_plain_one_answers(page: Any, stack: Stack) -> None:
    page.route(
        re.compile(r".*/messages/stream$"),
        lambda route: route.fulfill(
            status=404,
            content_type="application/json",
            body='{"error": {"code": "not_found", "message": "Not Found"}}',
        ),
    )
    panel = open_widget(page, stack)
    with page.expect_response(re.compile(r"/messages$")) as plain:
        send(page, panel, "where is my order")
    assert plain.value.status == 201
    reply = panel.locator("li.assistant:has(.rate)")
    expect(reply.locator(".bubble")).to_have_text("your order is on its way")
    # Later messages go straight to the plain endpoint.
    with page.expect_response(re.compile(r"/messages$")):
        send(page, panel, "i want a refund")
    expect(panel.locator("li.assistant:has(.rate)")).to_have_count(2)
