"""Helpers of the redaction tests: build valid card numbers and IBANs, check what was redacted."""

from __future__ import annotations

from feedback.redaction import Redaction, redact


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit to ``body``."""
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def make_iban(country: str, bban: str) -> str:
    """A compact IBAN with correct ISO 7064 check digits, independent of the module under test."""
    digits = "".join(str(int(ch, 36)) for ch in (bban + country + "00").upper())
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def assert_only(text: str, kind: str) -> None:
    result = redact(text)
    assert result.text == f"[{kind}]", (text, result)
    assert result.redactions == (Redaction(kind, 0, len(text)),)


def assert_untouched(text: str) -> None:
    result = redact(text)
    assert result.text is text, (text, result)
    assert result.redactions == ()
