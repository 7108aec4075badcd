"""PII redaction for customer text.

This module owns the one rule set that decides which parts of customer text are personal data.
It runs before any customer text is stored or enters training data, and replaces each finding
with a typed placeholder: ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` or ``[IBAN]``. It uses only the
standard library and works in roughly linear time.

Detectors run in a fixed order, and each one only sees text that earlier detectors left alone,
so findings never overlap: e-mail addresses first, then IBANs and payment cards (both
checksum-validated), then phone numbers.

They read a folded copy of the text (`feedback.redaction.normalise`): NFKC, every space variant
as a space, every dash variant as ``-``, the digits of any script as ASCII digits, invisible
format characters dropped. Findings are mapped back to spans of the original text, so what is
replaced is exactly what the customer typed.

E-mail
    ``local@domain.tld``: the local part holds letters, digits and ``. _ % + -``; the domain is
    one or more dot-separated labels and a final label of at least two letters. Surrounding
    punctuation (angle brackets, a full stop at the end of a sentence) is not part of the address.
    Spelled-out addresses count too: ``name (at) domain (dot) com``, ``name [at] domain.com``
    (any of ``() [] {} <>`` around ``at``, ``@``, ``dot`` or ``.``, any letter case), and
    ``name at domain dot com`` or ``name @ domain dot com``. A bare word ``at`` (or a spaced
    ``@``) needs every dot of the domain spelled out, so "meet at home" and "bought it at
    shop.com" are not addresses.

IBAN
    Two letters and two check digits, then the rest of the account number in any grouping: no
    separators, or groups separated by one to three spaces or a dash (any letter case). It must
    pass the ISO 7064 mod-97 check, its check digits must be 02-98, and its length must match
    ``_IBAN_LENGTHS`` for the countries listed there (15-34 characters for any other country
    code). No letter or digit may touch it. Trailing words are never swallowed: the longest run
    of groups that validates is the one taken.

CARD
    12-19 digits, either in one run or in groups joined by one kind of separator (a dash, dot or
    slash; one to three spaces or a line break), where either the first group has 4 digits and
    every other group 3-6 (4-4-4-4, 4-6-5, 4-4-4-4-3, ...) or all groups have 2 digits (the last
    may have 1). The digits must pass the Luhn check AND start with the prefix of a card network
    (``cards._ISSUER_RANGES``: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro,
    Mir), so an order number such as ``113542617735902`` is never a card. A run glued to letters
    or to the rest of a decimal number (``0.4111...``) is not a card, nor is any part of a run
    of up to 15 digits after a ``+`` (an international phone number), nor a run of 12 or 13
    digits with a GS1 check digit (an EAN-13 or UPC-A barcode). 2-digit groups and 12-digit
    numbers are only read as a whole run of digit groups, never out of a longer one.

PHONE
    Candidates are runs of digit groups. Inside a token the groups may be joined by ``-``, ``.``
    or parentheses (``(415)555-2671``), and a trunk-prefixed area code by ``/`` (``030/1234567``);
    tokens are joined by single spaces; a ``+`` may open the run. A run of tokens is read as one
    number. It is split only before a token that starts with ``+`` or ``(``, on either side of a
    token that carries its own ``-``/``.``/``/``/``()`` punctuation, and straight after a phone
    number already found. A number that starts with ``+``, ``0`` or ``(`` may end before the end
    of the run (so two numbers written back to back are both found).

    A candidate is a phone number when it has 7-15 digits and none of these holds:

    * it is glued to other text: a letter or digit next to it, or it sits after ``# / = & ? @ %``,
      between digits and ``.``/``,``/``:`` (``1.234.567,89``, ``10:30``), or next to ``/``;
    * it is money: a currency symbol just before it, or a currency symbol, code (``EUR``,
      ``USD``...) or word (``dollars``...) just after it, or a currency code as the cue word
      (see below);
    * a token is a decimal number with a single dot (``3.14159``), or, in a number that does not
      start with ``+``, a date (``2024-03-15``, ``15.03.2024``, ``03-15-24``) or an IPv4
      address;
    * every digit group is a year (``1999-2005``, ``1999 2005 2010``).

    Numbers that start with ``+`` are phones once they pass those checks. For everything else the
    nearest cue word decides next. Cue words are looked for among the words before the number,
    at most 50 characters back and never across a digit or an earlier redaction; ``#`` counts as
    a word. Phone cues (``call``, ``phone``, ``tel``, ``mobile``, ``cell``, ``fax``,
    ``whatsapp``, ``sms``, ``text``, ``dial``, ``reach``, ``contact`` and close variants) count
    among the last five words; identifier cues (``order``, ``invoice``, ``ticket``, ``tracking``,
    ``ref``, ``id``, ``isbn``, ``ean``, ``#``...) and currency codes, which mean "not a phone",
    among the last three. ``number`` is neutral, so in "order number is 12345678" the cue is
    ``order``.

    Then: a number starting with ``0`` (trunk or ``00`` international prefix) or ``(`` is a
    phone. Ambiguous shapes are phones only after a phone cue: a bare run of digits with no
    separators (``12345678`` reads as an order or tracking number), a thousands-grouped number
    (``1 234 567``, ``612 345 678``) and runs of one- or two-digit groups (``38 40 42 44``). All
    other separated shapes (``415-555-2671``, ``415.555.2671``, ``12345 67890``) are phones.

Placeholders contain no digits and no ``@``, so they are never redacted again. ``redact`` also
re-applies the rules to its own output until nothing new turns up (one extra pass in practice,
capped at ``_MAX_EXTRA_PASSES``), because a placeholder can be a cleaner boundary than the text
it replaced; this makes ``redact(redact(x).text).text == redact(x).text``. Text without findings
is returned as the very same string object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from feedback.redaction.cards import find_cards
from feedback.redaction.identifiers import find_emails, find_ibans, masked
from feedback.redaction.normalise import normalise
from feedback.redaction.phones import find_phones

__all__ = [
    "CARD",
    "EMAIL",
    "IBAN",
    "KINDS",
    "PHONE",
    "Redaction",
    "RedactionResult",
    "redact",
    "redact_text",
]

EMAIL = "EMAIL"
PHONE = "PHONE"
CARD = "CARD"
IBAN = "IBAN"
KINDS: tuple[str, ...] = (EMAIL, PHONE, CARD, IBAN)


@dataclass(frozen=True)
class Redaction:
    """One redacted span; ``start``/``end`` are offsets into the original text."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class RedactionResult:
    """The redacted text and what was taken out of it, in text order."""

    text: str
    redactions: tuple[Redaction, ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many findings of each kind (only kinds that occur)."""
        return dict(Counter(r.kind for r in self.redactions))


# ------------------------------------------------------------------------------------ public API

_MAX_EXTRA_PASSES = 8

_DETECTORS = (
    (EMAIL, find_emails),
    (IBAN, find_ibans),
    (CARD, find_cards),
    (PHONE, find_phones),
)


def _detect(text: str) -> list[Redaction]:
    folded = normalise(text)
    found: list[Redaction] = []
    work = folded.text
    for kind, detector in _DETECTORS:
        spans = detector(work)
        if spans:
            found.extend(Redaction(kind, *folded.original_span(start, end)) for start, end in spans)
            work = masked(work, spans)
    found.sort(key=lambda r: r.start)
    # Two findings can meet inside one character that folding expanded ("ﬀ" -> "ff"): merge them.
    merged: list[Redaction] = []
    for item in found:
        if merged and item.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Redaction(last.kind, last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged


def _render(text: str, found: list[Redaction]) -> str:
    pieces: list[str] = []
    pos = 0
    for item in found:
        pieces.append(text[pos : item.start])
        pieces.append(f"[{item.kind}]")
        pos = item.end
    pieces.append(text[pos:])
    return "".join(pieces)


def _to_original(found: list[Redaction], item: Redaction) -> Redaction | None:
    """Map a finding in the rendered text back to the original; None if it touches a placeholder."""
    rendered_pos = original_pos = 0
    for done in found:
        gap_end = rendered_pos + done.start - original_pos
        if item.start < gap_end:
            break
        rendered_pos = gap_end + len(done.kind) + 2
        original_pos = done.end
    else:
        gap_end = None
    if item.start < rendered_pos or (gap_end is not None and item.end > gap_end):
        return None
    shift = original_pos - rendered_pos
    return Redaction(item.kind, item.start + shift, item.end + shift)


def redact(text: str) -> RedactionResult:
    """Replace e-mail addresses, IBANs, payment cards and phone numbers with placeholders.

    The rules are applied again to their own output until it stops changing (a few passes at
    most; one is the norm), so that redacting redacted text never finds anything new: a
    placeholder can be a cleaner boundary than the digits or letters it replaced.
    """
    found = _detect(text)
    if not found:
        return RedactionResult(text=text, redactions=())
    rendered = _render(text, found)
    for _ in range(_MAX_EXTRA_PASSES):
        mapped = [_to_original(found, item) for item in _detect(rendered)]
        extra = [item for item in mapped if item is not None]
        if not extra:
            break
        found = sorted(found + extra, key=lambda r: r.start)
        rendered = _render(text, found)
    return RedactionResult(text=rendered, redactions=tuple(found))


def redact_text(text: str) -> str:
    """The redacted text alone: ``redact(text).text``."""
    return redact(text).text
