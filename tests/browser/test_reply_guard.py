"""The serving guard in a real browser: with a guard threshold no generated reply meets, a
customer gets the intent's approved answer (the bundle's seed) or a human; an operator turns
a corrected reply into the approved answer from the dashboard, and the next customer asking
the same thing gets it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.actions import log_in, open_widget, send
from tests.browser.stack import Stack, running_stack

APPROVED = "Your parcel is on its way. Track it under My orders."


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pytest.importorskip("torch", reason="the tiny student bundle is built with the `train` extra")
    from tests.fixtures.tiny_bundle import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path_factory.mktemp("guarded-bundle"))
    env = {"CHATDISTILL_SERVING__GUARD_MIN_REWARD": "1.0"}  # every generated reply is unfit
    with running_stack(tmp_path_factory.mktemp("guarded"), bundle.path, env) as running:
        yield running


def test_operator_approves_an_answer_and_the_next_customer_gets_it(
    page: Any, guarded: Stack
) -> None:
    panel = open_widget(page, guarded)
    # The refund intent has the answer deploying the bundle seeded from its references.
    send(page, panel, "i want a refund")
    replies = panel.locator("li.assistant:has(.rate)")
    expect(replies.first.locator(".bubble")).to_have_text("We will refund you within five days.")
    # Tracking has none yet: a human takes over instead of an unfit reply (a new visitor, so
    # that the refund turns do not colour the intent).
    panel = open_widget(page, guarded)
    send(page, panel, "where is my order")
    expect(panel.get_by_role("status").filter(has_text="human agent")).to_be_visible()

    log_in(page, guarded)
    page.get_by_label("Search text").fill("where is my order")
    page.get_by_role("button", name="Apply").click()
    page.locator('a[href^="#/conversations/"]').first.click()
    reply = page.locator("li.msg.assistant", has_text="your order is on its way")
    expect(reply.locator("dl.meta")).to_contain_text("Handoff")  # what the guard sent
    reply.get_by_role("button", name=re.compile("^Correct reply")).click()
    reply.get_by_label("Corrected reply").fill(APPROVED)
    with page.expect_response(re.compile(r"/correction$")) as corrected:
        reply.get_by_role("button", name="Save correction").click()
    assert corrected.value.status == 201
    reply = page.locator("li.msg.assistant", has_text="your order is on its way")
    with page.expect_response(re.compile(r"/approved-answers/track_order$")) as approved:
        reply.get_by_role(
            "button", name=re.compile("^Use as approved answer for track_order")
        ).click()
    assert approved.value.status == 200 and approved.value.json()["text"] == APPROVED
    expect(page.get_by_text("Approved answer for track_order saved.")).to_be_visible()

    page.get_by_role("link", name="Models").click()
    answers = page.get_by_role("region", name="Approved answers table")
    expect(answers.locator("tr", has_text="track_order")).to_contain_text("Operator")
    expect(answers.locator("tr", has_text="refund")).to_contain_text("Seeded")

    # A new customer asks the same thing and gets the operator's answer.
    panel = open_widget(page, guarded)
    send(page, panel, "where is my order")
    replies = panel.locator("li.assistant:has(.rate)")
    expect(replies.first.locator(".bubble")).to_have_text(APPROVED)
    expect(panel.get_by_role("status").filter(has_text="human agent")).to_have_count(0)
