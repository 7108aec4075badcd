"""E-mail addresses, IBANs (mod-97) and payment card numbers (Luhn): the detectors whose matches
carry their own proof (a shape or a checksum). The rules are described in `feedback.redaction`."""

from __future__ import annotations

import re
from itertools import pairwise

# Stands in for text that an earlier detector claimed: it is neither a word character, a digit nor
# a separator, so later detectors treat it as a plain boundary (as they treat "[" and "]").
MASK = "\x00"

Span = tuple[int, int]

# --------------------------------------------------------------------------------------- e-mail

_EMAIL_BODY = r"[\w.%+-]++@(?:[^\W_]+(?:-+[^\W_]+)*\.)+[^\W\d_]{2,63}(?![\w-])"
_EMAIL_RE = re.compile(rf"(?<![\w.%+-]){_EMAIL_BODY}")
# An address glued to the end of the previous one ("a@x.com.b@y.com") starts where it ends.
_EMAIL_NEXT_RE = re.compile(_EMAIL_BODY)


def find_emails(work: str) -> list[Span]:
    spans: list[Span] = []
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


def find_ibans(work: str) -> list[Span]:
    spans: list[Span] = []
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
DIGITS_RE = re.compile(r"\d+")


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


def glued_after(work: str, end: int) -> bool:
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
    if last == len(groups) - 1 and glued_after(work, window[-1].end()):
        return False
    return _luhn_valid(digits)


def find_cards(work: str) -> list[Span]:
    spans: list[Span] = []
    for chain in _CARD_CHAIN_RE.finditer(work):
        groups = list(DIGITS_RE.finditer(work, chain.start(), chain.end()))
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


def masked(work: str, spans: list[Span]) -> str:
    pieces: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        pieces.append(work[pos:start])
        pieces.append(MASK * (end - start))
        pos = end
    pieces.append(work[pos:])
    return "".join(pieces)
