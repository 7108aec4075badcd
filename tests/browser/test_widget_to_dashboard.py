"""The whole story in a real browser: a customer chats in the widget on a host page (another
origin) with a real tiny student, rates a reply, asks about something off-topic and is handed to
a human, ends with CSAT; an operator logs into the dashboard, finds the conversation, corrects the
reply, labels its intent, and sees the metrics change."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.actions import STORE, log_in, open_widget, send
from tests.browser.conftest import shot
from tests.browser.stack import WIDGET_GREETING, WIDGET_TITLE, Stack


def stat(page: Any, label: str) -> Any:
    return page.locator(".stat", has_text=label).locator(".stat-value")


def test_customer_chats_rates_and_operator_corrects(page: Any, stack: Stack) -> None:
    # --- the customer, on the company's page --------------------------------------------------
    panel = open_widget(page, stack)
    expect(panel.locator("li.assistant").first).to_have_text(re.compile(WIDGET_GREETING))
    shot(page, "widget-desktop-open")
    expect(panel.get_by_label("Your message")).to_be_focused()  # opening moves focus to the box
    send(page, panel, "where is my order")
    replies = panel.locator("li.assistant:has(.rate)")
    expect(replies).to_have_count(1)
    # The real student's answer to a question it was trained on.
    expect(replies.first.locator(".bubble")).to_have_text("your order is on its way")
    expect(panel.get_by_label("Your message")).to_be_focused()

    # The conversation survives a reload.
    page.reload()
    panel = page.get_by_role("dialog", name=WIDGET_TITLE)
    expect(panel).to_be_visible()
    expect(panel.locator("li.customer")).to_have_text(["You said: where is my order"])
    replies = panel.locator("li.assistant:has(.rate)")
    expect(replies).to_have_count(1)

    with page.expect_response(re.compile(r"/rating$")) as rated:
        replies.first.get_by_role("button", name="Helpful", exact=True).click()
    assert rated.value.status == 200
    expect(replies.first.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )

    # Off-topic: the student hands the conversation to a human, and the widget says so.
    send(page, panel, "tell me a joke")
    expect(panel.get_by_role("status").filter(has_text="human agent")).to_be_visible()
    expect(panel.get_by_role("button", name="Agent requested")).to_be_disabled()
    shot(page, "widget-desktop-chat")
    stored = page.evaluate(f"localStorage.getItem({STORE.format(api=stack.api)!r})")
    assert stored and "conversation_id" in stored
    conversation_id = re.search(r'"conversation_id":"([^"]+)"', stored).group(1)  # type: ignore[union-attr]

    # Ending the chat asks for CSAT.
    panel.get_by_role("button", name="End chat").click()
    expect(panel.get_by_role("radio", name="1 - Very unhappy")).to_be_focused()
    panel.get_by_role("radio", name="4 - Happy").check()
    panel.get_by_label("Anything to add? (optional)").fill("quick answer, thanks")
    shot(page, "widget-desktop-csat")
    with page.expect_response(re.compile(r"/csat$")) as csat:
        panel.get_by_role("button", name="Send rating").click()
    assert csat.value.status == 200
    expect(panel.get_by_text("Thank you for your feedback!")).to_be_visible()
    expect(panel.get_by_role("button", name="Start a new chat")).to_be_focused()
    assert page.evaluate(f"localStorage.getItem({STORE.format(api=stack.api)!r})") is None

    # --- the operator, in the dashboard --------------------------------------------------------
    log_in(page, stack)
    shot(page, "dashboard-desktop-conversations")
    page.get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("heading", name="Metrics", level=1)).to_be_visible()
    before_accuracy = page.locator(".stat", has_text="Intent accuracy").inner_text()

    page.get_by_role("link", name="Conversations").click()
    page.get_by_label("Search text").fill("where is my order")
    page.get_by_label("Rating").select_option("up")
    page.get_by_label("Handed off").select_option("true")
    page.get_by_role("button", name="Apply").click()
    row_link = page.locator(f'a[href="#/conversations/{conversation_id}"]')
    expect(row_link).to_be_visible()
    row_link.click()
    expect(page.get_by_role("heading", name=re.compile("^Conversation of"))).to_be_visible()
    reply = page.locator("li.msg.assistant").first
    expect(reply.locator("dl.meta")).to_contain_text("track_order")
    expect(reply).to_contain_text("Thumbs up")
    expect(page.locator(".summary")).to_contain_text("CSAT 4/5")
    shot(page, "dashboard-desktop-conversation")

    # Correct the reply in two clicks and a sentence.
    reply.get_by_role("button", name=re.compile("^Correct reply")).click()
    reply.get_by_label("Corrected reply").fill("Your order left our warehouse yesterday.")
    with page.expect_response(re.compile(r"/correction$")) as corrected:
        reply.get_by_role("button", name="Save correction").click()
    assert corrected.value.status == 201
    reply = page.locator("li.msg.assistant").first
    expect(reply.locator(".corrections")).to_contain_text(
        "Your order left our warehouse yesterday."
    )
    # Confirm the predicted intent in one click.
    with page.expect_response(re.compile(r"/intent$")) as labelled:
        reply.get_by_role("button", name="Confirm predicted").click()
    assert labelled.value.status == 201
    expect(page.locator("li.msg.assistant").first.locator(".corrections")).to_contain_text(
        "Intent: track_order"
    )
    shot(page, "dashboard-desktop-corrected")

    # The metrics moved: an operator-verified intent now counts.
    page.get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("heading", name="Metrics", level=1)).to_be_visible()
    after = page.locator(".stat", has_text="Intent accuracy")
    expect(after).not_to_have_text(before_accuracy)
    expect(stat(page, "Intent accuracy")).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(stat(page, "Positive rating rate")).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(page.locator("svg.chart circle").first).to_be_visible()
    shot(page, "dashboard-desktop-metrics")

    # Every action is in the audit log.
    page.get_by_role("link", name="Admin").click()
    audit = page.get_by_role("region", name="Audit log table")
    expect(audit).to_contain_text("message.correct")
    expect(audit).to_contain_text("message.label_intent")
    shot(page, "dashboard-desktop-admin")
