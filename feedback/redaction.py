"""PII redaction for customer text.

This module owns the one rule set that decides which parts of customer text are personal data.
It runs before any customer text is stored or enters training data, and replaces each finding
with a typed placeholder: ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` or ``[IBAN]``. It uses only the
standard library and works in roughly linear time.

Detectors run in a fixed order, and each one only sees text that earlier detectors left alone,
so findings never overlap: e-mail addresses first, then IBANs and payment cards (both
checksum-validated), then phone numbers.

E-mail
    ``local@domain.tld``: the local part holds letters, digits and ``. _ % + -``; the domain is
    one or more dot-separated labels and a final label of at least two letters. Surrounding
    punctuation (angle brackets, a full stop at the end of a sentence) is not part of the address.

IBAN
    Two letters, two check digits and the rest of the account number, written either with no
    spaces or in groups of four separated by single spaces (any letter case). It must pass the
    ISO 7064 mod-97 check, its check digits must be 02-98, and its length must match
    ``_IBAN_LENGTHS`` for the countries listed there (15-34 characters for any other country
    code). No letter or digit may touch it. Trailing words are never swallowed: the longest run
    of groups that validates is the one taken.

CARD
    13-19 digits, either in one run or in groups separated by one consistent separator (a single
    space or a dash), where the first group has 4 digits and every other group 3-6 (4-4-4-4,
    4-6-5, 4-4-4-4-3, ...). The digits must pass the Luhn check; anything that fails it is not a
    card (it may still be a phone number, or be left alone). A run glued to letters or to the
    rest of a decimal number (``0.4111...``) is not a card, and neither is one of up to 15 digits
    after a ``+`` (that is an international phone number).

PHONE
    Candidates are runs of digit groups. Inside a token the groups may be joined by ``-``, ``.``
    or parentheses (``(415)555-2671``); tokens are joined by single spaces; a ``+`` may open the
    run. A run of tokens is read as one number. It is split only before a token that starts with
    ``+`` or ``(``, on either side of a token that carries its own ``-``/``.``/``()`` punctuation,
    and straight after a phone number already found. A number that starts with ``+``, ``0`` or
    ``(`` may end before the end of the run (so two numbers written back to back are both found).

    A candidate is a phone number when it has 7-15 digits and none of these holds:

    * it is glued to other text: a letter or digit next to it, or it sits after ``# / = & ? @ %``,
      between digits and ``.``/``,``/``:`` (``1.234.567,89``, ``10:30``), or next to ``/``;
    * it is money: a currency symbol just before it, or a currency symbol, code (``EUR``,
      ``USD``...) or word (``dollars``...) just after it, or a currency code as the cue word
      (see below);
    * a token is a date (``2024-03-15``, ``15.03.2024``, ``03-15-24``), an IPv4 address, or a
      decimal number with a single dot (``3.14159``);
    * every digit group is a year (``1999-2005``, ``1999 2005 2010``).

    Numbers that start with ``+`` are phones once they pass those checks. For everything else the
    nearest cue word decides next. Cue words are looked for among the words before the number,
    at most 50 characters back and never across a digit or an earlier redaction; ``#`` counts as
    a word. Phone cues (``call``, ``phone``, ``tel``, ``mobile``, ``cell``, ``fax``,
    ``whatsapp``, ``sms``, ``text``, ``dial``, ``reach``, ``contact`` and close variants) count
    among the last five words; identifier cues (``order``, ``invoice``, ``ticket``, ``tracking``,
    ``ref``, ``id``, ``isbn``, ``#``...) and currency codes, which mean "not a phone", among the
    last three. ``number`` is neutral, so in "order number is 12345678" the cue is ``order``.

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

import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

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


# Stands in for text that an earlier detector claimed: it is neither a word character, a digit nor
# a separator, so later detectors treat it as a plain boundary (as they treat "[" and "]").
_MASK = "\x00"

_Span = tuple[int, int]

# --------------------------------------------------------------------------------------- e-mail

_EMAIL_BODY = r"[\w.%+-]++@(?:[^\W_]+(?:-+[^\W_]+)*\.)+[^\W\d_]{2,63}(?![\w-])"
_EMAIL_RE = re.compile(rf"(?<![\w.%+-]){_EMAIL_BODY}")
# An address glued to the end of the previous one ("a@x.com.b@y.com") starts where it ends.
_EMAIL_NEXT_RE = re.compile(_EMAIL_BODY)


def _find_emails(work: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    while (m := _EMAIL_RE.search(work, pos)) is not None:
        pos = m.end()
        while m is not None:
            start = m.start()
            while work[start] == ".":  # a leading dot is punctuation, not part of the address
                start += 1
            if work[start] == "@":
                break
            spans.append((start, m.end()))
            pos = m.end()
            m = _EMAIL_NEXT_RE.match(work, pos)
    return spans


# ----------------------------------------------------------------------------------------- IBAN

_IBAN_LENGTHS: dict[str, int] = {
    "AT": 20,
    "BE": 16,
    "CH": 21,
    "DE": 22,
    "DK": 18,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "IE": 22,
    "IT": 27,
    "LU": 20,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "SE": 24,
}

_IBAN_RE = re.compile(
    r"(?<!\w)[A-Za-z]{2}[0-9]{2}"
    r"(?:[A-Za-z0-9]{11,30}(?!\w)"
    r"|(?:\ [A-Za-z0-9]{4}(?!\w)){1,8}(?:\ [A-Za-z0-9]{1,3}(?!\w))?)"
)


# ISO 7064 mod-97 works on the number where each letter stands for two digits: A=10 ... Z=35.
_IBAN_LETTER_DIGITS = {ord(ch): str(10 + i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def _iban_length_ok(country: str, length: int) -> bool:
    expected = _IBAN_LENGTHS.get(country)
    return 15 <= length <= 34 if expected is None else length == expected


def _iban_valid(compact: str) -> bool:
    iban = compact.upper()
    if not _iban_length_ok(iban[:2], len(iban)) or not "02" <= iban[2:4] <= "98":
        return False
    rearranged = iban[4:] + iban[:4]
    return int(rearranged.translate(_IBAN_LETTER_DIGITS)) % 97 == 1


def _find_ibans(work: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    while (m := _IBAN_RE.search(work, pos)) is not None:
        start = m.start()
        parts = m.group().split(" ")
        country = parts[0][:2].upper()
        pos = start + 1
        # Longest prefix of whole groups first, so a trailing word never breaks a real IBAN.
        for count in range(len(parts), 0, -1):
            prefix = parts[:count]
            if _iban_length_ok(country, sum(map(len, prefix))) and _iban_valid("".join(prefix)):
                pos = start + len(" ".join(prefix))
                spans.append((start, pos))
                break
    return spans


# ----------------------------------------------------------------------------------------- card

_CARD_CHAIN_RE = re.compile(r"(?<!\w)\d++(?:[ -]\d++)*+")
_DIGITS_RE = re.compile(r"\d+")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, ch in enumerate(reversed(digits)):
        value = int(ch)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _glued_after(work: str, end: int) -> bool:
    """Whether the text right after ``end`` makes a number there part of something longer."""
    nxt = work[end : end + 1]
    after = work[end + 1 : end + 2]
    if nxt.isalnum() or nxt in {"_", "/", "\\", "=", "&", "@", "%"}:
        return True
    if nxt in {".", ",", ":"} and after.isdecimal():
        return True
    return nxt == "-" and after.isalnum()


def _card_window_ok(work: str, groups: list[re.Match[str]], first: int, last: int) -> bool:
    window = groups[first : last + 1]
    if len(window) > 1:
        if len(window[0].group()) != 4 or any(not 3 <= len(g.group()) <= 6 for g in window[1:]):
            return False
        seps = {work[a.end() : b.start()] for a, b in pairwise(window)}
        if len(seps) != 1:
            return False
    digits = "".join(g.group() for g in window)
    if not 13 <= len(digits) <= 19:
        return False
    # Context only matters at the ends of the whole run: inside it, the neighbours are groups
    # that may themselves be redacted.
    if first == 0:
        start = window[0].start()
        prev = work[start - 1 : start]
        before = work[start - 2 : start - 1] if start >= 2 else ""
        if (prev == "+" and len(digits) <= 15) or (prev in {".", ","} and before.isdecimal()):
            return False
    if last == len(groups) - 1 and _glued_after(work, window[-1].end()):
        return False
    return _luhn_valid(digits)


def _find_cards(work: str) -> list[_Span]:
    spans: list[_Span] = []
    for chain in _CARD_CHAIN_RE.finditer(work):
        groups = list(_DIGITS_RE.finditer(work, chain.start(), chain.end()))
        first = 0
        while first < len(groups):
            if len(groups[first].group()) != 4 and len(groups[first].group()) < 13:
                first += 1  # cannot open a card: too short alone, and not a 4-digit first group
                continue
            lasts: list[int] = []
            total = 0
            for last in range(first, len(groups)):
                total += len(groups[last].group())
                if total > 19:
                    break
                lasts.append(last)
            chosen = next(
                (last for last in reversed(lasts) if _card_window_ok(work, groups, first, last)),
                None,
            )
            if chosen is None:
                first += 1
            else:
                spans.append((groups[first].start(), groups[chosen].end()))
                first = chosen + 1
    return spans


# ---------------------------------------------------------------------------------------- phone

_PHONE_GROUP = r"(?:\(\d++\)|\d++)"
_PHONE_TOKEN = rf"{_PHONE_GROUP}(?:(?:[.\-]|(?<=\))){_PHONE_GROUP})*+"
_PHONE_CHAIN_RE = re.compile(rf"(?<![\w+])\+?{_PHONE_TOKEN}(?:\ {_PHONE_TOKEN})*+")
_TOKEN_RE = re.compile(r"\S+")

_DATE_YMD_RE = re.compile(r"(\d{4})([-./])(\d{1,2})\2(\d{1,2})")
_DATE_DMY_RE = re.compile(r"(\d{1,2})([-./])(\d{1,2})\2(\d{4}|\d{2})")
_IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DECIMAL_RE = re.compile(r"\d+\.\d+")
_YEAR_RE = re.compile(r"(?:19|20)\d\d")
_THOUSANDS_RE = re.compile(r"\d{1,3}([ .])\d{3}(?:\1\d{3})*")

_CURRENCY_SYMBOLS = frozenset("$€£¥₹₽₩¢")
_CURRENCY_CODES = frozenset(
    {"eur", "usd", "gbp", "chf", "jpy", "cad", "aud", "sek", "nok", "dkk", "pln", "inr", "cny"}
)
_MONEY_AFTER_RE = re.compile(
    r"\ ?(?:[$€£¥₹₽₩¢]"
    r"|(?:eur|usd|gbp|chf|jpy|cad|aud|sek|nok|dkk|pln|inr|cny|euros?|dollars?|pounds?|bucks)"
    r"(?![^\W\d_]))",
    re.IGNORECASE,
)

# fmt: off
_PHONE_CUES = frozenset({
    "call", "called", "calling", "callback", "phone", "phoned", "telephone", "tel", "ph", "mobile",
    "mob", "cell", "cellphone", "handy", "landline", "fax", "whatsapp", "sms", "text", "texting",
    "dial", "ring", "reach", "contact",
})
_ID_CUES = frozenset({
    "order", "orders", "invoice", "ticket", "tracking", "ref", "reference", "id", "sku", "isbn",
    "serial", "booking", "confirmation", "transaction", "txn", "parcel", "shipment", "receipt",
    "version", "build", "#",
})
# fmt: on
_CUE_WORD_RE = re.compile(r"[^\W\d_]+|#")
_CUE_STOP_RE = re.compile(r"[\d\[\]\x00]")
_CUE_LOOKBACK_CHARS = 50
_PHONE_CUE_WORDS = 5  # a phone cue counts among the last five words
_ID_CUE_WORDS = 3  # an identifier or currency cue only among the last three

_PHONE_CUE = "phone"
_NOT_PHONE_CUE = "not-phone"


def _nearest_cue(work: str, start: int) -> str | None:
    before = work[max(0, start - _CUE_LOOKBACK_CHARS) : start]
    cut = 0
    for stop in _CUE_STOP_RE.finditer(before):
        cut = stop.end()
    words = _CUE_WORD_RE.findall(before, cut)[-_PHONE_CUE_WORDS:]
    for distance, word in enumerate(reversed(words)):
        lowered = word.lower()
        if lowered in _PHONE_CUES:
            return _PHONE_CUE
        if distance < _ID_CUE_WORDS and (lowered in _ID_CUES or lowered in _CURRENCY_CODES):
            return _NOT_PHONE_CUE
    return None


def _phone_context_bad(work: str, start: int, end: int) -> bool:
    prev = work[start - 1 : start]
    before = work[start - 2 : start - 1] if start >= 2 else ""
    if prev.isalnum() or prev in {"_", "#", "/", "\\", "=", "&", "?", "@", "%"}:
        return True
    if prev in {".", ",", ":"} and before.isdecimal():
        return True
    if prev == "-" and before.isalnum():
        return True
    if prev in _CURRENCY_SYMBOLS or (prev == " " and before in _CURRENCY_SYMBOLS):
        return True
    return _glued_after(work, end) or _MONEY_AFTER_RE.match(work, end) is not None


def _is_date(token: str) -> bool:
    ymd = _DATE_YMD_RE.fullmatch(token)
    if ymd is not None:
        return 1 <= int(ymd.group(3)) <= 12 and 1 <= int(ymd.group(4)) <= 31
    dmy = _DATE_DMY_RE.fullmatch(token)
    if dmy is None:
        return False
    first, second = int(dmy.group(1)), int(dmy.group(3))
    day_first = 1 <= first <= 31 and 1 <= second <= 12
    month_first = 1 <= first <= 12 and 1 <= second <= 31
    return day_first or month_first


def _not_a_phone_token(token: str) -> bool:
    return (
        _is_date(token)
        or _IPV4_RE.fullmatch(token) is not None
        or _DECIMAL_RE.fullmatch(token) is not None
    )


def _phone_window_ok(work: str, start: int, end: int) -> bool:
    window = work[start:end]
    groups = _DIGITS_RE.findall(window)
    if not 7 <= sum(len(g) for g in groups) <= 15:
        return False
    if _phone_context_bad(work, start, end):
        return False
    if any(_not_a_phone_token(token) for token in window.lstrip("+").split(" ")):
        return False
    if len(groups) > 1 and all(_YEAR_RE.fullmatch(g) for g in groups):
        return False
    if window.startswith("+"):
        return True
    cue = _nearest_cue(work, start)
    if cue == _NOT_PHONE_CUE:
        return False
    if window[0] in {"0", "("} or cue == _PHONE_CUE:
        return True
    ambiguous = (
        len(groups) == 1
        or _THOUSANDS_RE.fullmatch(window) is not None
        or max(len(g) for g in groups) <= 2
    )
    return not ambiguous


def _opens_number(token: str) -> bool:
    return token[0] in {"+", "("}


def _has_clear_start(token: str) -> bool:
    return token[0] in {"+", "(", "0"}


def _self_punctuated(token: str) -> bool:
    return len(_DIGITS_RE.findall(token)) > 1


def _find_phones(work: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    while (chain := _PHONE_CHAIN_RE.search(work, pos)) is not None:
        pos = chain.end()
        tokens = list(_TOKEN_RE.finditer(work, chain.start(), chain.end()))
        texts = [t.group() for t in tokens]
        count = len(tokens)
        # split[k]: the run may be cut between token k - 1 and token k.
        split = [True] + [
            _opens_number(texts[k]) or _self_punctuated(texts[k]) or _self_punctuated(texts[k - 1])
            for k in range(1, count)
        ]
        split.append(True)
        first = 0
        while first < count:
            if not split[first]:
                first += 1
                continue
            free_end = _has_clear_start(texts[first])
            lasts: list[int] = []
            digits = 0
            for last in range(first, count):
                digits += sum(len(g) for g in _DIGITS_RE.findall(texts[last]))
                if digits > 15:
                    break
                if free_end or split[last + 1]:
                    lasts.append(last)
            chosen = next(
                (
                    last
                    for last in reversed(lasts)
                    if _phone_window_ok(work, tokens[first].start(), tokens[last].end())
                ),
                None,
            )
            if chosen is None:
                first += 1
            else:
                start, end = tokens[first].start(), tokens[chosen].end()
                spans.append((start, end))
                # Later checks must see this number as already redacted, as a second pass would.
                work = _masked(work, [(start, end)])
                first = chosen + 1
                if first < count:
                    split[first] = True
    return spans


# ------------------------------------------------------------------------------------ public API

_MAX_EXTRA_PASSES = 8

_DETECTORS = (
    (EMAIL, _find_emails),
    (IBAN, _find_ibans),
    (CARD, _find_cards),
    (PHONE, _find_phones),
)


def _masked(work: str, spans: list[_Span]) -> str:
    pieces: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        pieces.append(work[pos:start])
        pieces.append(_MASK * (end - start))
        pos = end
    pieces.append(work[pos:])
    return "".join(pieces)


def _detect(text: str) -> list[Redaction]:
    found: list[Redaction] = []
    work = text
    for kind, detector in _DETECTORS:
        spans = detector(work)
        if spans:
            found.extend(Redaction(kind, start, end) for start, end in spans)
            work = _masked(work, spans)
    return sorted(found, key=lambda r: r.start)


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
