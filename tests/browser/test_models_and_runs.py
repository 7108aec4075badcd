"""Operators act on models and runs from the dashboard, with a confirmation each time, and the
action goes through the operator API into the audit log."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.actions import log_in
from tests.browser.stack import ADMIN_EMAIL, ADMIN_PASSWORD, Stack


def audit_actions(stack: Stack) -> list[str]:
    token = httpx.post(
        f"{stack.api}/v1/operator/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    entries = httpx.get(
        f"{stack.api}/v1/admin/audit", headers={"Authorization": f"Bearer {token}"}
    ).json()
    return [e["action"] for e in entries]


def production_row(page: Any) -> Any:
    return page.locator("tbody tr", has=page.locator(".badge", has_text="production"))


def test_roll_back_then_promote_with_confirmation(page: Any, stack: Stack) -> None:
    log_in(page, stack)
    page.get_by_role("link", name="Models").click()
    expect(production_row(page).locator("th")).to_contain_text("tiny-1")
    # Reply quality from the run's report sits beside the flat evaluation figures.
    header = page.locator("thead th")
    expect(header.filter(has_text="Eval: replies.degenerate")).to_have_count(1)
    column = header.all_inner_texts().index("Eval: replies.degenerate")
    older = page.locator("tbody tr", has=page.locator("th", has_text="tiny-0"))
    expect(older.locator("th, td").nth(column)).to_have_text("25.0%")

    # Cancelling the confirmation changes nothing.
    page.get_by_role("button", name="Roll back production").click()
    dialog = page.get_by_role("dialog", name="Roll back production?")
    expect(dialog).to_contain_text("from tiny-1 to tiny-0")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(production_row(page).locator("th")).to_contain_text("tiny-1")

    page.get_by_role("button", name="Roll back production").click()
    dialog = page.get_by_role("dialog", name="Roll back production?")
    dialog.get_by_label("Reason (kept in the audit log)").fill("replies got worse")
    with page.expect_response(re.compile(r"/models/rollback$")) as rolled:
        dialog.get_by_role("button", name="Roll back").click()
    assert rolled.value.status == 200
    assert rolled.value.json()["serving"] == "tiny-0"
    expect(production_row(page).locator("th")).to_contain_text("tiny-0")
    expect(page.locator(".history li").first).to_contain_text("replies got worse")

    page.get_by_role("button", name="Promote tiny-1").click()
    dialog = page.get_by_role("dialog", name="Promote tiny-1?")
    dialog.get_by_label("Reason (kept in the audit log)").fill("fixed")
    with page.expect_response(re.compile(r"/promote$")) as promoted:
        dialog.get_by_role("button", name="Promote").click()
    assert promoted.value.status == 200
    expect(production_row(page).locator("th")).to_contain_text("tiny-1")
    assert {"model.rollback", "model.promote"} <= set(audit_actions(stack))

    # The promotions are drawn on the metrics charts.
    page.get_by_role("link", name="Metrics").click()
    expect(page.locator("svg.chart .promotion-label", has_text="tiny-0").first).to_be_attached()


def test_runs_show_progress_and_an_active_run_can_be_cancelled(page: Any, stack: Stack) -> None:
    log_in(page, stack)
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Distillation runs")).to_be_visible()
    running = page.locator("article.run", has=page.locator(".badge", has_text="running"))
    if running.count() == 0:  # another test in this session cancelled it already
        expect(page.locator("article.run .badge", has_text="cancelled")).to_have_count(1)
        return
    expect(running.get_by_text("Stage: stage2_decoder")).to_be_visible()
    expect(running.locator("progress")).to_have_attribute("value", "45")
    finished = page.locator("article.run", has=page.locator(".badge", has_text="succeeded"))
    expect(finished.locator("svg.chart path.series")).to_be_visible()
    running.get_by_role("button", name="Cancel run").click()
    page.get_by_role("dialog", name="Cancel this run?").get_by_role(
        "button", name="Cancel run"
    ).click()
    expect(page.locator("article.run .badge", has_text="cancelled")).to_have_count(1)
    assert "run.cancel" in audit_actions(stack)
