"""E-mail addresses (written plainly or spelled out) and IBANs (mod-97): detectors whose matches
carry their own proof (a shape or a checksum), and the helpers the number detectors share. The
rules are described in `feedback.redaction`."""

from __future__ import annotations

import re

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
    if spans:
        work = masked(work, spans)
    spans.extend(m.span() for m in _SPELLED_EMAIL_RE.finditer(work))
    return sorted(spans)


# Spelled-out addresses: "name (at) domain (dot) com", "name [at] domain.com",
# "name at domain dot com". A bare word "at" or a spaced "@" needs every dot spelled out too, so
# plain English ("meet at home", "bought it at shop.com") is left alone.
_OPEN, _CLOSE = r"[(\[{<]", r"[)\]}>]"
_BRACKET_AT = rf"[ \t]*{_OPEN}[ \t]*(?i:at|@)[ \t]*{_CLOSE}[ \t]*"
_WORD_AT = r"(?:[ \t]+(?i:at)[ \t]+|[ \t]+@[ \t]*|[ \t]*@[ \t]+)"
_SPELLED_DOT = rf"(?:{_OPEN}[ \t]*(?i:dot|\.)[ \t]*{_CLOSE}|(?i:dot)(?!\w))"
_SPELLED_DOT_SEP = rf"(?:[ \t]*{_SPELLED_DOT}[ \t]*)"
_LOCAL_WORD = r"[\w%+-]++(?:\.[\w%+-]++)*+"
# Bounded repeats keep the search linear: an unbounded chain of "a dot a dot ..." would be
# read again from every word in it.
_LOCAL = rf"{_LOCAL_WORD}(?:{_SPELLED_DOT_SEP}{_LOCAL_WORD}){{0,4}}+"
_LABEL = r"[^\W_]++(?:-++[^\W_]++)*+"
_TLD = r"[^\W\d_]{2,63}(?![\w-])"
_SPELLED_EMAIL_RE = re.compile(
    rf"(?<![\w.%+-]){_LOCAL}"
    rf"(?:(?:{_BRACKET_AT}|@)(?:{_LABEL}(?:\.|{_SPELLED_DOT_SEP})){{1,8}}"
    rf"|{_WORD_AT}(?:{_LABEL}{_SPELLED_DOT_SEP}){{1,8}}){_TLD}"
)


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

_IBAN_MAX_CHARS = 34
# The first group holds the country code and the check digits; the others follow after one to
# three spaces or a dash (spaces around it allowed), in any grouping.
_IBAN_START_RE = re.compile(r"(?<!\w)[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]*+(?!\w)")
_IBAN_NEXT_RE = re.compile(r"(?:[ \t]{1,3}|[ \t]?-[ \t]?)([A-Za-z0-9]++)(?!\w)")


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
    while (m := _IBAN_START_RE.search(work, pos)) is not None:
        start, pos = m.span()
        parts = [m.span()]
        total = m.end() - start
        while total <= _IBAN_MAX_CHARS and (nxt := _IBAN_NEXT_RE.match(work, parts[-1][1])):
            parts.append(nxt.span(1))
            total += len(nxt.group(1))
        country = work[start : start + 2].upper()
        # Longest run of whole groups first, so a trailing word never breaks a real IBAN.
        for count in range(len(parts), 0, -1):
            compact = "".join(work[a:b] for a, b in parts[:count])
            if _iban_length_ok(country, len(compact)) and _iban_valid(compact):
                pos = parts[count - 1][1]
                spans.append((start, pos))
                break
    return spans


# ------------------------------------------------------------------------------- digit helpers

DIGITS_RE = re.compile(r"\d+")


def glued_after(work: str, end: int) -> bool:
    """Whether the text right after ``end`` makes a number there part of something longer."""
    nxt = work[end : end + 1]
    after = work[end + 1 : end + 2]
    if nxt.isalnum() or nxt in {"_", "/", "\\", "=", "&", "@", "%"}:
        return True
    if nxt in {".", ",", ":"} and after.isdecimal():
        return True
    return nxt == "-" and after.isalnum()


def masked(work: str, spans: list[Span]) -> str:
    pieces: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        pieces.append(work[pos:start])
        pieces.append(MASK * (end - start))
        pos = end
    pieces.append(work[pos:])
    return "".join(pieces)
