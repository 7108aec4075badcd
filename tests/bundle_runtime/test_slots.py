"""Template slots from Bitext replies, rephrased so that none reaches a customer raw."""

from __future__ import annotations

import pytest

from bundle_runtime.slots import has_slots, rephrase_slots


@pytest.mark.parametrize(
    ("raw", "served"),
    [
        ("Log in to our {{Website Name}}.", "Log in to our website."),
        ("Call {{Customer Support Phone Number}} now.", "Call our customer support line now."),
        ("Open the {{Order Details}} section.", "Open the Order Details section."),
        ("Quote {{Order Number Anonymized}} please.", "Quote your order number please."),
        (
            "We answer during {{Customer Support Hours}}.",
            "We answer during our support opening hours.",
        ),
        ("Ship to {{Shipping Address}}.", "Ship to your shipping address."),
        ("Use {{ Live   Chat }}.", "Use Live Chat."),
        ("No slots here.", "No slots here."),
    ],
)
def test_slots_are_rephrased(raw: str, served: str) -> None:
    assert rephrase_slots(raw) == served
    assert not has_slots(rephrase_slots(raw))
