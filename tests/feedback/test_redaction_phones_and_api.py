"""Tests for feedback.redaction: phone numbers, mixed text and precedence, placeholders,
idempotence, the API, and seeded property checks."""

from __future__ import annotations

import dataclasses
import random
import re
from itertools import pairwise

import pytest

from feedback.redaction import Redaction, RedactionResult, redact, redact_text
from tests.feedback.redaction_helpers import (
    assert_only,
    assert_untouched,
    luhn_complete,
)

# ------------------------------------------------------------------------------------------ phone


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "+33 1 23 45 67 89",
        "+49-30-123456",
        "+44 (0)20 7946 0958",
        "+442079460958",
        "0044 20 7946 0958",
        "(415) 555-2671",
        "(415)555-2671",
        "415-555-2671",
        "415.555.2671",
        "020 7946 0958",
        "07911 123456",
        "07911123456",
        "01 23 45 67 89",
        "01.23.45.67.89",
        "555-1234",
        "12345 67890",
    ],
)
def test_phone_alone(phone: str) -> None:
    assert_only(phone, "PHONE")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on +44 20 7946 0958.", "call me on [PHONE]."),
        ("Call customer service on 0800 123 4567", "Call customer service on [PHONE]"),
        ("my number: (415) 555-2671, evenings", "my number: [PHONE], evenings"),
        ("tel:+442079460958", "tel:[PHONE]"),
        ("Phone:07911123456", "Phone:[PHONE]"),
        ("or 020 7946 0958 020 7946 0959", "or [PHONE] [PHONE]"),
        ("415-555-2671 1234567", "[PHONE] 1234567"),
        ("+44 20 7946 0958 123 4567", "[PHONE] 4567"),
        # Bare digit runs and thousands-grouped numbers need a phone cue word.
        ("call me: 4155552671", "call me: [PHONE]"),
        ("my phone number is 4155552671", "my phone number is [PHONE]"),
        ("text 612 345 678", "text [PHONE]"),
        ("Mobile 12345678!", "Mobile [PHONE]!"),
    ],
)
def test_phone_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # dates
        "2024-03-15",
        "on 2024-03-15 at noon",
        "15/03/2024",
        "15.03.2024",
        "03-15-2024",
        "2024/03/15",
        # times
        "10:30",
        "10:30-11:45",
        "at 10:30:15",
        # money
        "$1,234.56",
        "1.234,56 EUR",
        "1.234.567,89 EUR",
        "€ 1 234 567",
        "1 234 567 EUR",
        "USD 1234567",
        "it cost 12345678 dollars",
        "$ 415 555 2671",
        # small numbers, years, versions
        "order #12345",
        "I have 3 items",
        "since 1999",
        "between 1999-2005",
        "in 1999 2005 2010",
        "v1.2.3",
        "version 10.0.19045.1234",
        # identifiers and other numerals
        "order 1234567890123",
        "order number is 12345678",
        "tracking number 123456789012",
        "invoice 2024-0042-7781",
        "ref: 0123 4567",
        "ticket #4155552671",
        "ISBN 978-3-16-148410-0",
        "12345678",
        "we sold 1234567 units",
        "1 000 000 people",
        "sizes 38 40 42 44",
        "IP 192.168.100.200",
        "pi is 3.14159265",
        "12.5% of 1234567",
        "https://example.com/orders/12345678",
        "?id=4155552671",
        "SKU-4155552671",
        "4155552671abc",
    ],
)
def test_not_phone(text: str) -> None:
    assert_untouched(text)


# ------------------------------------------------------------------------------ mixed / precedence


def test_mixed_text_offsets() -> None:
    email = "jane.doe@example.com"
    phone = "+44 20 7946 0958"
    card = "4111 1111 1111 1111"
    iban = "DE89 3704 0044 0532 0130 00"
    text = (
        f"Hi, I'm {email}, call {phone}. Card {card}, IBAN {iban}; "
        "order 1234567890123 on 2024-03-15 at 10:30 for $1,234.56."
    )
    result = redact(text)
    assert result.text == (
        "Hi, I'm [EMAIL], call [PHONE]. Card [CARD], IBAN [IBAN]; "
        "order 1234567890123 on 2024-03-15 at 10:30 for $1,234.56."
    )
    expected = [("EMAIL", email), ("PHONE", phone), ("CARD", card), ("IBAN", iban)]
    assert result.redactions == tuple(
        Redaction(kind, text.index(value), text.index(value) + len(value))
        for kind, value in expected
    )
    for item, (_, value) in zip(result.redactions, expected, strict=True):
        assert text[item.start : item.end] == value
    assert result.counts == {"EMAIL": 1, "PHONE": 1, "CARD": 1, "IBAN": 1}


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("4155552671@example.com", ["EMAIL"]),
        ("4111111111111111@example.com", ["EMAIL"]),
        ("DE89370400440532013000", ["IBAN"]),
        ("4111 1111 1111 1111", ["CARD"]),
        ("378282246310005", ["CARD"]),
        ("+378282246310005", ["PHONE"]),
        ("call 4111111111111111 now", ["CARD"]),
        ("a@b.com +44 20 7946 0958 a@b.com", ["EMAIL", "PHONE", "EMAIL"]),
    ],
)
def test_precedence(text: str, kinds: list[str]) -> None:
    assert [r.kind for r in redact(text).redactions] == kinds


def test_spans_sorted_and_disjoint() -> None:
    text = "x@y.com 4111111111111111 DE89370400440532013000 +44 20 7946 0958 x@y.com"
    spans = [(r.start, r.end) for r in redact(text).redactions]
    assert len(spans) == 5
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))


# ------------------------------------------------------------------- placeholders, idempotence, API


@pytest.mark.parametrize(
    "text",
    [
        "[EMAIL] [PHONE] [CARD] [IBAN]",
        "call [PHONE] or mail [EMAIL]",
        "[PHONE][PHONE]",
    ],
)
def test_placeholders_not_redacted(text: str) -> None:
    assert_untouched(text)


IDEMPOTENCE_CASES = [
    "mail me at a.b@x.co.uk.",
    "a@x.com.b@y.org",
    "Hi, I'm jane@example.com, call +44 20 7946 0958. Card 4111 1111 1111 1111.",
    "1234567 (415),001234567 79463704-",
    "+44 20 7946 0958+44 20 7946 0958@",
    "378282246310005-378282246310005",
    "call [PHONE] 4155552671",
    "IBAN DE89 3704 0044 0532 0130 00 and 4111-1111-1111-1111",
    "tracking 123456789012 and phone 020 7946 0958",
]


@pytest.mark.parametrize("text", IDEMPOTENCE_CASES)
def test_idempotent(text: str) -> None:
    once = redact(text).text
    assert redact(once).text == once
    assert redact(once).redactions == ()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, how can I help you today?",
        "Grüße aus München — 日本語のテキスト 🙂",
        "Order #12345 shipped on 2024-03-15 at 10:30; total $1,234.56 (3 items).",
        "Привет! Это обычный текст без личных данных.",
        "مرحبا بكم",
        "line one\nline two\ttabbed",
    ],
)
def test_text_without_pii_is_the_same_object(text: str) -> None:
    assert_untouched(text)


def test_counts() -> None:
    result = redact("a@x.com, b@y.org, call 020 7946 0958, card 4111 1111 1111 1111")
    assert result.counts == {"EMAIL": 2, "PHONE": 1, "CARD": 1}
    assert redact("nothing here").counts == {}


def test_redact_text_matches_redact() -> None:
    text = "call 020 7946 0958 or a@b.com"
    assert redact_text(text) == redact(text).text == "call [PHONE] or [EMAIL]"


def test_results_are_frozen() -> None:
    result = redact("a@b.com")
    assert isinstance(result, RedactionResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.redactions[0].start = 3  # type: ignore[misc]


def test_long_input() -> None:
    chunk = "Hi, call +44 20 7946 0958 or mail a.b@x.co.uk; order 1234567890123 on 2024-03-15. "
    text = chunk * 125
    assert len(text) > 10_000
    result = redact(text)
    assert result.counts == {"PHONE": 125, "EMAIL": 125}
    assert redact(result.text).text == result.text


# --------------------------------------------------------------------- seeded property-style checks
# (hypothesis is not installed in the project environment; this is a deterministic stand-in.)

_FILLERS = [
    "hello",
    "order 1234567890123",
    "on 2024-03-15",
    "at 10:30",
    "$1,234.56",
    "1.234,56 EUR",
    "since 1999",
    "v1.2.3",
    "call",
    "phone",
    "#12345",
    "+44 20 7946 0958",
    "020 7946 0958",
    "(415) 555-2671",
    "a.b@x.co.uk",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "4111 1111 1111 1112",
    "7946",
    "12",
    "Grüße 🙂",
    "[PHONE]",
]
_JOINERS = [" ", " ", ", ", "; ", "\n", " - ", ": "]


def _random_card(rng: random.Random) -> tuple[str, str]:
    prefix = rng.choice(["4", "5", "6", "34", "36", "37", "3530", "2221"])  # real networks
    digits = luhn_complete(prefix + "".join(rng.choices("0123456789", k=15 - len(prefix))))
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return digits, digits
    groups = [digits[i : i + 4] for i in range(0, 16, 4)]
    return digits, (" " if style == "space" else "-").join(groups)


def _random_text(rng: random.Random) -> tuple[str, list[str]]:
    parts: list[str] = []
    cards: list[str] = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.3:
            digits, shown = _random_card(rng)
            cards.append(digits)
            parts.append(shown)
        else:
            parts.append(rng.choice(_FILLERS))
        parts.append(rng.choice(_JOINERS))
    return "".join(parts), cards


@pytest.mark.parametrize("seed", range(25))
def test_property_cards_never_survive_and_redaction_is_idempotent(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        text, cards = _random_text(rng)
        result = redact(text)
        leftover_digits = re.sub(r"\D", "", result.text)
        for digits in cards:
            # The middle of every generated card is gone (the whole card is, in practice).
            assert digits[4:12] not in leftover_digits, (text, result.text)
        assert redact(result.text).text == result.text, text
        previous_end = 0
        for item in result.redactions:
            assert previous_end <= item.start < item.end <= len(text)
            previous_end = item.end
