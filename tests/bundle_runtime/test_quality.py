"""The degeneration checks on replies seen in real runs."""

from __future__ import annotations

import pytest

from bundle_runtime.quality import degenerate_counts, degenerate_reason


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("  ...  ", "stop", "empty"),
        (
            "I'm here to assist you with any questions or I'm here to assist you with any to "
            "assist you with any to assist you with any help.",
            "stop",
            "repeats",
        ),
        ("you you you you you", "stop", "repeats"),
        ("Your card arrives within 5 working days", "length", "cut_off"),
        ("Your card arrives within five...", "length", "cut_off"),
        ("Your card arrives within 5 working days.", "length", None),
        ("Your card arrives within 5 working days", "stop", None),
        ("You can track it in the app. Track it in the app, or track it by mail.", "stop", None),
        # a step list repeats its phrase once per step, far apart: not a loop
        (
            "1. Sign in and click on the Orders tab, where your recent purchases are listed "
            "with their dates and totals. 2. Find the order you want to change and look at "
            "its details. 3. Then click on the Edit button beside it, check the new address "
            "and save. 4. Finally click on the Confirm link in the e-mail we send you.",
            "stop",
            None,
        ),
        # the same three steps, close together: a loop
        ("click on the tab, click on the button, click on the link.", "stop", "repeats"),
        # a whole sentence said again is a loop whatever the distance
        (
            "Your refund is issued within five business days. You will get an e-mail when "
            "it is sent, and the amount appears on your statement soon after that, depending "
            "on your bank and its processing times. Your refund is issued within five "
            "business days.",
            "stop",
            "repeats",
        ),
    ],
)
def test_degenerate_reason(text: str, finish: str, reason: str | None) -> None:
    assert degenerate_reason(text, finish) == reason


def test_counts_by_reason() -> None:
    counts = degenerate_counts([("ok.", "stop"), ("", "stop"), ("a b c a b c a b c", "stop")])
    assert counts == {"rows": 3, "degenerate": 2, "empty": 1, "repeats": 1, "cut_off": 0}
