"""A handoff that reaches a human, in real browsers: a customer asks for a person in the widget;
an operator, in a second browser context, sees the conversation arrive in the dashboard's inbox,
claims it and replies; the customer sees the reply (and the agent typing) without reloading, and
answers; the operator sees that live and resolves the case. Once against one API process, once
with the customer on one process and the operator on another (one PostgreSQL, one Redis, the
database poll fallback slowed to a minute so only Redis carries the events in time).

Also: a widget whose event stream drops resumes from the last message it showed (nothing lost,
nothing twice), and axe-core finds no serious or critical issue on the inbox at desktop and
phone widths."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.actions import STORE, log_in, open_widget, send
from tests.browser.conftest import DESKTOP, PHONE, serious_axe_violations, shot, watch_errors
from tests.browser.proxy import cuttable_proxy
from tests.browser.stack import ADMIN_EMAIL, ADMIN_PASSWORD, Stack, running_stack

WITH_AGENT = "You are chatting with a human agent."
SIZES = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture(scope="module")
def pair_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two API processes on one database and one Redis."""
    pytest.importorskip("torch", reason="the tiny student bundle is built with the `train` extra")
    from tests.fixtures.tiny_bundle import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path_factory.mktemp("pair-bundle"))
    slow_poll = {"CHATDISTILL_LIVE__POLL_INTERVAL_S": "60"}
    with running_stack(
        tmp_path_factory.mktemp("pair-stack"), bundle.path, slow_poll, second_process=True
    ) as running:
        yield running


@pytest.fixture
def visitors(browser: Any) -> Iterator[tuple[Any, Any]]:
    """A customer's tab and an operator's tab, each in its own browser context."""
    contexts = [
        browser.new_context(viewport=DESKTOP, locale="en-GB", timezone_id="UTC") for _ in "co"
    ]
    tabs, errors = [], []
    for ctx in contexts:
        ctx.set_default_timeout(15_000)
        tab = ctx.new_page()
        errors.append(watch_errors(tab))
        tabs.append(tab)
    yield tabs[0], tabs[1]
    for ctx in contexts:
        ctx.close()
    assert errors == [[], []]


def ask_for_a_person(
    customer: Any, stack: Stack, host: str | None = None, api: str | None = None
) -> tuple[Any, str]:
    """The customer asks a question, then for a person; returns the panel and conversation id.
    `host` and `api`: a host page whose widget talks to the API through a proxy."""
    panel = open_widget(customer, stack, host)
    send(customer, panel, "where is my order")
    expect(panel.locator("li.assistant:has(.rate)")).to_have_count(1)
    panel.get_by_role("button", name="Talk to a person").click()
    expect(panel.get_by_role("status").filter(has_text="human agent")).to_be_visible()
    stored = customer.evaluate(f"localStorage.getItem({STORE.format(api=api or stack.api)!r})")
    return panel, str(json.loads(stored)["conversation_id"])


def round_trip(customer: Any, operator: Any, stack: Stack, dashboard: str, name: str) -> None:
    panel, conversation_id = ask_for_a_person(customer, stack)
    customer.evaluate("window.__sameDocument = true")  # gone if the widget's page reloads

    # The operator finds it in the inbox: waiting, with why, the count in the nav and the title.
    log_in(operator, stack, dashboard)
    operator.get_by_role("link", name=re.compile("^Inbox")).click()
    expect(operator.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    item = operator.locator(f'li.queue-item[data-conversation-id="{conversation_id}"]')
    expect(item).to_contain_text("Customer asked")
    expect(item).to_contain_text("where is my order")
    expect(item).to_contain_text("Waiting")
    expect(operator.locator("#inbox-count")).to_be_visible()
    expect(operator).to_have_title(re.compile(r"^\(\d+\) Inbox"))
    item.get_by_role("link").click()
    pane = operator.get_by_role("region", name="Conversation", exact=True)
    expect(pane.locator("li.msg.customer")).to_have_count(1)
    expect(pane.get_by_role("textbox", name="Reply to the customer")).to_be_hidden()

    # Claim: the customer is told an agent joined.
    pane.get_by_role("button", name="Claim").click()
    expect(pane.locator(".state")).to_have_text("With an agent")
    expect(panel.locator("li.system").filter(has_text="An agent joined")).to_have_count(1)
    expect(panel.locator(".notice")).to_have_text(WITH_AGENT)
    expect(item).to_have_count(0)  # no longer waiting

    # Typing, then the reply: both reach the widget live.
    box = pane.get_by_role("textbox", name="Reply to the customer")
    box.press_sequentially("Hello")
    expect(panel.locator(".agent-typing")).to_have_text("An agent is typing\u2026")
    reply = "Hello, this is Sam from support: your parcel left our warehouse yesterday."
    box.fill(reply)
    pane.get_by_role("button", name="Send reply").click()
    expect(panel.locator("li.agent .bubble")).to_have_text([reply])
    expect(panel.locator("li.agent .who")).to_contain_text("Agent")
    expect(pane.locator("li.msg.agent")).to_have_count(1)  # its own POST and its stream: once
    assert customer.evaluate("window.__sameDocument") is True
    shot(customer, f"handoff-{name}-widget")

    # The customer answers; the operator sees it live, and the widget shows it once.
    send(customer, panel, "great, thank you")
    expect(pane.locator("li.msg.customer").filter(has_text="great, thank you")).to_have_count(1)
    expect(panel.locator("li.customer")).to_have_count(2)
    shot(operator, f"handoff-{name}-inbox")

    # Resolve: the customer is told, and may ask for a person again.
    pane.get_by_role("button", name="Resolve").click()
    expect(pane.locator(".state")).to_have_text("Resolved")
    expect(panel.locator("li.system").filter(has_text="resolved")).to_have_count(1)
    expect(panel.get_by_role("button", name="Talk to a person")).to_be_enabled()
    operator.get_by_role("link", name="Resolved", exact=True).click()
    expect(item).to_contain_text("Resolved")


def test_handoff_round_trip_on_one_process(visitors: tuple[Any, Any], stack: Stack) -> None:
    round_trip(*visitors, stack, stack.api, "one-process")


def test_handoff_round_trip_across_two_processes(
    visitors: tuple[Any, Any], pair_stack: Stack
) -> None:
    assert pair_stack.other_api and pair_stack.other_api != pair_stack.api
    round_trip(*visitors, pair_stack, pair_stack.other_api, "two-processes")


def _operator_token(api: str) -> str:
    out = httpx.post(
        f"{api}/v1/operator/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert out.status_code == 200, out.text
    return str(out.json()["access_token"])


def test_a_dropped_widget_stream_resumes_without_loss_or_repeats(
    visitors: tuple[Any, Any], stack: Stack
) -> None:
    customer, _ = visitors
    with cuttable_proxy(stack.api) as proxy:
        host = stack.host_page_for(proxy.url, "through-proxy.html")
        panel, conversation_id = ask_for_a_person(customer, stack, host=host, api=proxy.url)
        auth = {"Authorization": f"Bearer {_operator_token(stack.api)}"}
        base = f"{stack.api}/v1/operator/conversations/{conversation_id}"
        assert httpx.post(f"{base}/claim", headers=auth, timeout=10).status_code == 200
        joined = panel.locator("li.system").filter(has_text="An agent joined")
        expect(joined).to_have_count(1)
        cursor = int(joined.get_attribute("data-seq") or 0)

        proxy.down = True
        proxy.cut()  # the widget's event stream drops, and reconnecting fails for now
        texts = [f"Update {n} on your order." for n in range(1, 4)]
        for text in texts:
            sent = httpx.post(f"{base}/messages", headers=auth, json={"text": text}, timeout=10)
            assert sent.status_code == 201, sent.text
        customer.wait_for_timeout(1500)
        expect(panel.locator("li.agent")).to_have_count(0)  # really cut off

        with customer.expect_request(re.compile(rf"/events\?after={cursor}$"), timeout=30_000):
            proxy.down = False
        expect(panel.locator("li.agent .bubble")).to_have_text(texts)  # all, in order, once
        seqs = panel.locator("li[data-seq]").evaluate_all("items => items.map(i => i.dataset.seq)")
        assert len(seqs) == len(set(seqs))


@pytest.mark.parametrize("size", SIZES)
def test_inbox_has_no_serious_violations(page: Any, stack: Stack, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    customer = page.context.new_page()
    _, conversation_id = ask_for_a_person(customer, stack)
    customer.close()
    log_in(page, stack)
    page.goto(f"{stack.api}/dashboard/#/inbox")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    item = page.locator(f'li.queue-item[data-conversation-id="{conversation_id}"]')
    expect(item).to_be_visible()
    assert serious_axe_violations(page) == []
    item.get_by_role("link").click()
    pane = page.get_by_role("region", name="Conversation", exact=True)
    expect(pane.get_by_role("button", name="Claim")).to_be_visible()
    assert serious_axe_violations(page) == []
    pane.get_by_role("button", name="Claim").click()
    expect(pane.get_by_role("textbox", name="Reply to the customer")).to_be_visible()
    assert serious_axe_violations(page) == []
    shot(page, f"inbox-{size}")
