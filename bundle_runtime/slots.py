"""Template slots (Bitext's `{{Order Number}}` style) never reach a customer raw.

Reference replies of public and company data sets carry placeholders for values the writer did
not have. A reply the student learned from them, or an approved answer seeded from them, gets
them rephrased: a slot that stands for a value (a name, number, address, e-mail, URL, hours)
becomes a plain phrase ("our website", "your order number"); a slot that names a screen or a
button ("{{Order Details}}") keeps its words without the braces.
"""

from __future__ import annotations

import re

_SLOT = re.compile(r"\{\{\s*([^{}]{1,80}?)\s*\}\}")
_DETERMINER = re.compile(r"\b(?:our|your|the|a|an|my)\s+$", re.IGNORECASE)
# Value slots seen in Bitext, as a phrase without its determiner, and who owns the value.
_PHRASES: dict[str, tuple[str, str]] = {
    "website name": ("our", "website"),
    "website url": ("our", "website"),
    "company name": ("our", "company"),
    "customer support phone number": ("our", "customer support line"),
    "support phone number": ("our", "support line"),
    "customer support email": ("our", "support e-mail address"),
    "customer support availability": ("our", "support opening hours"),
    "customer support hours": ("our", "support opening hours"),
    "order number anonymized": ("your", "order number"),
    "purchase id anonymized": ("your", "purchase number"),
}
_VALUE_ENDINGS = ("name", "number", "url", "email", "e-mail", "address", "hours", "id", "date")


def has_slots(text: str) -> bool:
    return _SLOT.search(text) is not None


def rephrase_slots(text: str) -> str:
    """`text` with every `{{...}}` slot rephrased (see the module docstring)."""

    def phrase(match: re.Match[str]) -> str:
        name = " ".join(match.group(1).split())
        key = name.lower().removesuffix(" anonymized")
        owner, words = _PHRASES.get(name.lower(), ("", ""))
        if not words:
            if not key.endswith(_VALUE_ENDINGS):
                return name  # a screen, section or button: its label, as written
            owner, words = (
                ("our" if key.startswith(("customer support", "company")) else "your"),
                key,
            )
        before = text[: match.start()]
        return words if _DETERMINER.search(before) else f"{owner} {words}"

    return _SLOT.sub(phrase, text)
