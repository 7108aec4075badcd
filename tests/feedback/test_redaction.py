"""Tests for feedback.redaction: e-mail addresses, card numbers and IBANs (phones, mixed text and
the API in test_redaction_phones_and_api.py)."""

from __future__ import annotations

import re

import pytest

from feedback.redaction import redact, redact_text
from tests.feedback.redaction_helpers import (
    assert_only,
    assert_untouched,
    luhn_complete,
    luhn_ok,
    make_iban,
)

# ----------------------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    "address",
    [
        "jane@example.com",
        "a.b@x.co.uk",
        "John.Doe+tag@Mail.Example.COM",
        "first_last@sub.domain.example.com",
        "USER@EXAMPLE.COM",
        "jane-doe@my-company.io",
        "x%y@example.org",
        "4155552671@example.com",
        "josé@exämple.de",
    ],
)
def test_email_alone(address: str) -> None:
    assert_only(address, "EMAIL")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at a.b@x.co.uk.", "mail me at [EMAIL]."),
        ("<support@help.example.org>", "<[EMAIL]>"),
        ("Name <John.Doe+tag@Mail.Example.COM>, thanks", "Name <[EMAIL]>, thanks"),
        ("(jane@example.com)", "([EMAIL])"),
        ("is it jane@example.com?", "is it [EMAIL]?"),
        ("mailto:bob@example.de", "mailto:[EMAIL]"),
        ("a@x.com, b@y.org; c@z.net", "[EMAIL], [EMAIL]; [EMAIL]"),
        ("a@x.com.b@y.org", "[EMAIL].[EMAIL]"),
        ("...jane@example.com", "...[EMAIL]"),
    ],
)
def test_email_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    ["user@localhost", "a@b", "follow @handle", "5 @ 3 each", "meet @ 10", "x@y.1"],
)
def test_not_email(text: str) -> None:
    assert_untouched(text)


# ------------------------------------------------------------------------------------------- card


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "378282246310005",
        "3782 822463 10005",
        "3782-822463-10005",
        "5555555555554444",
        "5555 5555 5555 4444",
        "6011111111111117",
        "4222222222222",
        "6011 0009 9013 9424",
        "41 11 11 11 11 11 11 11",
        luhn_complete("423456789012345678"),
    ],
)
def test_card_alone(card: str) -> None:
    assert luhn_ok(re.sub(r"\D", "", card))
    assert_only(card, "CARD")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card: 4111 1111 1111 1111, exp 12/25", "card: [CARD], exp 12/25"),
        ("my amex is 378282246310005.", "my amex is [CARD]."),
        ("pay with 5555555555554444 please", "pay with [CARD] please"),
        ("cards 4111-1111-1111-1111-4111-1111-1111-1111", "cards [CARD]-[CARD]"),
        ("4111 1111 1111 1111 2024", "[CARD] 2024"),
        ("+4111111111111111", "+[CARD]"),
    ],
)
def test_card_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",
        "4111-1111-1111-1112",
        "4111111111111112",
        "5555555555554445",
        "order 1234567890123",
        "ref 1234 5678 9012 3456",
        "4111111111111111abc",
        # Luhn-valid, but no card network issues numbers starting with 1: an order number.
        luhn_complete("123456789012345678"),
    ],
)
def test_not_card(text: str) -> None:
    assert "CARD" not in redact(text).counts


@pytest.mark.parametrize(
    "number", ["4111111111111112", "5555555555554445", "1234567890123", "1234567890123456"]
)
def test_luhn_failing_numbers_are_not_cards(number: str) -> None:
    assert not luhn_ok(number)
    assert "CARD" not in redact(f"number {number}").counts


def test_luhn_failing_16_digits_is_not_a_phone_either() -> None:
    assert_untouched("Card 4111 1111 1111 1112 was declined")


def test_order_number_is_neither_card_nor_phone() -> None:
    assert not luhn_ok("1234567890123")
    assert_untouched("order 1234567890123")
    assert_untouched("Order number is 1234567890123.")


# ------------------------------------------------------------------------------------------- IBAN


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "gb82 west 1234 5698 7654 32",
        "gb82west12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "BE68 5390 0754 7034",
        "CH9300762011623852957",
        "NO93 8601 1117 947",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "AT611904300234573201",
        "PL61 1090 1014 0000 0712 1981 2874",
        "IE29AIBK93115212345678",
        "SE4550000000058398257466",
        "DK5000400440116243",
        "FI2112345600000785",
        "LU280019400644750000",
        "PT50000201231234567890154",
        make_iban("XK", "1212012345678906"),
    ],
)
def test_iban_alone(iban: str) -> None:
    assert_only(iban, "IBAN")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IBAN: DE89 3704 0044 0532 0130 00, thanks", "IBAN: [IBAN], thanks"),
        ("send to GB82WEST12345698765432.", "send to [IBAN]."),
        ("BE68 5390 0754 7034 from you", "[IBAN] from you"),
        ("(NL91ABNA0417164300)", "([IBAN])"),
    ],
)
def test_iban_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "DE88 3704 0044 0532 0130 00",
        "DE88370400440532013000",
        "GB82WEST12345698765431",
        "GB83 WEST 1234 5698 7654 32",
        # Checksum right, but too short / too long for the country.
        make_iban("DE", "3704004405320130"),
        make_iban("GB", "WEST123456987654321"),
        # Unknown country with a valid checksum but outside 15-34 characters.
        make_iban("XK", "12345678"),
        "XDE89370400440532013000",
    ],
)
def test_not_iban(text: str) -> None:
    assert "IBAN" not in redact(text).counts


def test_invalid_iban_left_as_is() -> None:
    assert_untouched("IBAN DE88 3704 0044 0532 0130 00 (typo)")


def test_iban_with_unlisted_country_accepts_15_to_34() -> None:
    for length in (15, 34):
        iban = make_iban("XK", "A" * (length - 4))
        assert len(iban) == length
        assert_only(iban, "IBAN")
