"""Admins manage operators and API keys from the dashboard; the new key is shown once, and
revoking asks for confirmation."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.actions import log_in
from tests.browser.conftest import shot
from tests.browser.stack import Stack


def test_admin_adds_an_operator_and_manages_an_api_key(page: Any, stack: Stack) -> None:
    log_in(page, stack)
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()

    page.get_by_label("Name", exact=True).first.fill("Otto Operator")
    page.get_by_label("E-mail").fill("otto@example.com")
    page.get_by_label("Initial password").fill("otto's long password")
    with page.expect_response(re.compile(r"/v1/admin/operators$")) as created:
        page.get_by_role("button", name="Add").click()
    assert created.value.status == 201
    operators = page.get_by_role("region", name="Operators table")
    expect(operators).to_contain_text("otto@example.com")
    operators.get_by_role("button", name="Deactivate otto@example.com").click()
    expect(operators.locator("tr", has_text="otto@example.com")).to_contain_text("inactive")

    page.locator("#key-name").fill("crm integration")
    page.get_by_role("button", name="Create").click()
    secret = page.locator(".secret")
    expect(secret).to_contain_text("not shown again")
    key = secret.locator("code").inner_text()
    assert len(key) > 20
    keys = page.get_by_role("region", name="API keys table")
    expect(keys).to_contain_text("crm integration")
    shot(page, "dashboard-desktop-admin-key-created")
    page.reload()
    expect(keys).to_contain_text("crm integration")
    expect(page.locator("body")).not_to_contain_text(key)  # shown once only
    keys.get_by_role("button", name="Revoke crm integration").click()
    page.get_by_role("dialog", name="Revoke crm integration?").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(keys.locator("tr", has_text="crm integration")).to_contain_text("revoked")
    audit = page.get_by_role("region", name="Audit log table")
    for action in ("operator.create", "operator.update", "api_key.create", "api_key.revoke"):
        expect(audit).to_contain_text(action)
