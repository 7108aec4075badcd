"""The formats people actually paste, as a corpus: each must come out as its placeholder with no
digit run of it left; and the identifiers, dates, amounts and codes that must come out unchanged.
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from feedback.redaction import redact, redact_text
from tests.feedback.redaction_helpers import assert_untouched, luhn_ok

NBSP, NNBSP, THIN, EN_DASH = "\u00a0", "\u202f", "\u2009", "\u2013"
# The zero of some digit scripts.
ARABIC_INDIC, EASTERN_ARABIC_INDIC, DEVANAGARI, FULL_WIDTH = "\u0660", "\u06f0", "\u0966", "\uff10"


def _digits(text: str, zero: str) -> str:
    """``text`` with its ASCII digits written in the script whose zero is ``zero``."""
    return "".join(chr(ord(zero) + int(ch)) if ch.isdigit() else ch for ch in text)


def _full_width(text: str) -> str:
    """``text`` (printable ASCII, no spaces) in full-width forms: "a" -> U+FF41."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


# (what the customer typed, its kind, the sentence around it: "{}" stands for it)
REDACTED: list[tuple[str, str, str]] = [
    # cards: networks and the common ways of writing them
    ("4111 1111 1111 1111", "CARD", "card {} thanks"),
    ("4111-1111-1111-1111", "CARD", "card {} thanks"),
    ("4111111111111111", "CARD", "card {} thanks"),
    ("5555 5555 5555 4444", "CARD", "{}"),
    ("2223 0031 2200 3222", "CARD", "{}"),
    ("3782 822463 10005", "CARD", "amex: {}."),
    ("378282246310005", "CARD", "{}"),
    ("6011 1111 1111 1117", "CARD", "{}"),
    ("3530 1113 3330 0000", "CARD", "{}"),
    ("3056 930902 5904", "CARD", "{}"),
    ("6200 0000 0000 0005", "CARD", "{}"),
    ("2200 0000 0000 0004", "CARD", "mir {}"),
    ("6759 6498 2643 8453 003", "CARD", "maestro {}"),
    # cards: what the probe found stored unredacted
    (f"4111{NBSP}1111{NBSP}1111{NBSP}1111", "CARD", "card {} thanks"),
    (f"4111{NNBSP}1111{NNBSP}1111{NNBSP}1111", "CARD", "{}"),
    (f"4111{THIN}1111{THIN}1111{THIN}1111", "CARD", "{}"),
    ("4111  1111  1111  1111", "CARD", "card {} thanks"),
    ("4111\n1111\n1111\n1111", "CARD", "card:\n{}\nthanks"),
    ("5555 5555\n5555 4444", "CARD", "{}"),
    ("4111.1111.1111.1111", "CARD", "card {} thanks"),
    ("4111/1111/1111/1111", "CARD", "card {} thanks"),
    (f"4111{EN_DASH}1111{EN_DASH}1111{EN_DASH}1111", "CARD", "{}"),
    ("41 11 11 11 11 11 11 11", "CARD", "card {} thanks"),
    ("37 82 82 24 63 10 00 5", "CARD", "{}"),
    (_digits("4111 1111 1111 1111", FULL_WIDTH), "CARD", "{}"),
    # IBANs of several countries and groupings
    ("DE89 3704 0044 0532 0130 00", "IBAN", "IBAN: {}, thanks"),
    ("DE89370400440532013000", "IBAN", "{}"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN", "{}"),
    ("FR14 2004 1010 0505 0001 3M02 606", "IBAN", "{}"),
    ("NL91ABNA0417164300", "IBAN", "to {}."),
    ("ES91 2100 0418 4502 0005 1332", "IBAN", "{}"),
    ("IT60 X054 2811 1010 0000 0123 456", "IBAN", "{}"),
    ("CH93 0076 2011 6238 5295 7", "IBAN", "{}"),
    ("PL61 1090 1014 0000 0712 1981 2874", "IBAN", "{}"),
    ("BE68 5390 0754 7034", "IBAN", "{} from you"),
    ("GB82 WEST 123456 98765432", "IBAN", "{}"),
    ("DE89-3704-0044-0532-0130-00", "IBAN", "IBAN {} please"),
    (f"DE89{NBSP}3704{NBSP}0044{NBSP}0532{NBSP}0130{NBSP}00", "IBAN", "IBAN {} please"),
    (f"AT61{EN_DASH}1904{EN_DASH}3002{EN_DASH}3457{EN_DASH}3201", "IBAN", "{}"),
    # phones: international and national
    ("+44 20 7946 0958", "PHONE", "call me on {}."),
    ("+1 (415) 555-2671", "PHONE", "{}"),
    ("+49 30 1234567", "PHONE", "{}"),
    ("+33 1 23 45 67 89", "PHONE", "{}"),
    ("0044 20 7946 0958", "PHONE", "{}"),
    ("020 7946 0958", "PHONE", "ring {} tonight"),
    ("(415) 555-2671", "PHONE", "{}"),
    ("415-555-2671", "PHONE", "{}"),
    ("07911 123456", "PHONE", "{}"),
    ("4155552671", "PHONE", "call me: {}"),
    # phones: what the probe found stored unredacted
    (_digits("03012345678", ARABIC_INDIC), "PHONE", "\u0631\u0642\u0645\u064a {}"),
    (_digits("03012345678", EASTERN_ARABIC_INDIC), "PHONE", "{}"),
    (_digits("03012345678", DEVANAGARI), "PHONE", "{}"),
    (_digits("+49 30 1234567", ARABIC_INDIC), "PHONE", "{}"),
    ("030/1234567", "PHONE", "Tel. {}"),
    ("089/12345-678", "PHONE", "{}"),
    (f"+44{NBSP}20{NBSP}7946{NBSP}0958", "PHONE", "{}"),
    (f"030{EN_DASH}1234567", "PHONE", "{}"),
    # e-mail addresses, plain and spelled out
    ("jane@example.com", "EMAIL", "mail {}."),
    ("John.Doe+tag@Mail.Example.COM", "EMAIL", "<{}>"),
    (_full_width("jane@example.com"), "EMAIL", "{}"),
    ("jane (at) example (dot) com", "EMAIL", "write to {} please"),
    ("jane [at] example.com", "EMAIL", "write to {} please"),
    ("jane at example dot com", "EMAIL", "write to {} please"),
    ("jane.doe(at)example(dot)co(dot)uk", "EMAIL", "{}"),
    ("jane {at} example {dot} org", "EMAIL", "{}"),
    ("JANE AT EXAMPLE DOT COM", "EMAIL", "{}"),
    ("john dot smith at gmail dot com", "EMAIL", "{}"),
    ("jane @ example dot com", "EMAIL", "{}"),
]

SURVIVE: list[str] = [
    # order numbers and other identifiers
    "113542617735902",
    "order 113542617735902",
    "order 1135 4261 7735 902",
    "#A-10042",
    "order 4523 8876",
    _digits("order 12345678", ARABIC_INDIC),
    "ticket 4111 1111 1111 1112",
    "1Z999AA10123456784",
    "tracking 9400111899223197428490",
    "SKU-4155552671",
    "ISBN 978-3-16-148410-0",
    "EAN 5901234123457",
    "UPC 036000291452",
    "product 4006381333931",
    "Model XR-2000",
    "v1.2.3",
    "IP 192.168.100.200",
    # dates and times
    "2026-12-04",
    "04/12/2026",
    "04.12.2026",
    f"2026{EN_DASH}12{EN_DASH}04",
    "exp 12/2026",
    "10:30",
    "at 10:30-11:45",
    "14:05:59",
    "04/12/2026 10:30",
    # amounts
    "€1,234.56",
    "1.234,56 EUR",
    "1 234 567,89 €",
    f"1{NNBSP}234{NNBSP}567 EUR",
    _digits("1\u066c234\u066b56", ARABIC_INDIC),  # Arabic thousands and decimal separators
    # postcodes and sizes
    "SW1A 1AA",
    "75008 Paris",
    "10115 Berlin",
    "90210",
    "sizes 38 40 42 44",
    # plain English around "at" and "dot"
    "meet at home",
    "see you at 5",
    "I bought it at shop.com",
    "I'm at home dot",
]


def _ascii_digits(text: str) -> str:
    """The digits of ``text`` in any script, as ASCII digits (runs kept apart by spaces)."""
    folded = "".join(
        str(unicodedata.digit(ch)) if unicodedata.digit(ch, None) is not None else " "
        for ch in text
    )
    return " ".join(folded.split())


@pytest.mark.parametrize(("pii", "kind", "sentence"), REDACTED)
def test_pasted_pii_is_redacted(pii: str, kind: str, sentence: str) -> None:
    text = sentence.format(pii)
    out = redact_text(text)
    assert out == sentence.format(f"[{kind}]"), (text, out)
    pii_digits = re.sub(r"\D", "", _ascii_digits(pii))
    for run in re.findall(r"\d{3,}", _ascii_digits(out)):
        assert run not in pii_digits, (text, out)
    if kind == "EMAIL":
        assert re.split(r"[\s.@(\[{]", pii)[0] not in out, (text, out)


@pytest.mark.parametrize("text", SURVIVE)
def test_identifiers_dates_and_amounts_survive(text: str) -> None:
    assert_untouched(text)


def test_the_corpus_covers_what_was_asked() -> None:
    kinds = [kind for _, kind, _ in REDACTED]
    assert len(REDACTED) >= 53 and len(set(REDACTED)) == len(REDACTED)
    assert all(kinds.count(kind) >= 10 for kind in ("CARD", "IBAN", "PHONE", "EMAIL"))


def test_the_order_number_is_luhn_valid_yet_no_card() -> None:
    # The probe's example passes the Luhn check: only the issuer prefix tells it from a card.
    assert luhn_ok("113542617735902")
    assert_untouched("113542617735902")
    assert redact("order 4111 1111 1111 1111").counts == {"CARD": 1}


def test_replacement_covers_exactly_the_original_span() -> None:
    pii = f"4111{NBSP}1111{NBSP}1111{NBSP}1111"
    text = f"Grüße 🙂 card {pii} ok"
    (item,) = redact(text).redactions
    assert text[item.start : item.end] == pii


def test_spans_map_back_through_length_changing_folding() -> None:
    # NFKC turns "ﬁ" into two characters and composes "e" + U+0301 into one.
    text = "ﬁle: jose\u0301@exa\u0301mple.com, call 020 7946 0958"
    result = redact(text)
    assert result.text == "ﬁle: [EMAIL], call [PHONE]"
    assert [text[r.start : r.end] for r in result.redactions] == [
        "jose\u0301@exa\u0301mple.com",
        "020 7946 0958",
    ]
