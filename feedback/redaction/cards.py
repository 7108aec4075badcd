"""Payment card numbers: a card layout, the Luhn check and the prefix of a real card network.
The rules are described in `feedback.redaction`."""

from __future__ import annotations

import re
from itertools import pairwise

from feedback.redaction.identifiers import DIGITS_RE, Span, glued_after

# Digit groups joined by separators: a dash, dot or slash (spaces around it allowed), a line
# break (with spaces around it), or one to three spaces.
_SEPARATOR = r"(?:[ \t]{0,2}[-./][ \t]{0,2}|[ \t]*\n[ \t]*|[ \t]{1,3})"
_CARD_CHAIN_RE = re.compile(rf"(?<!\w)\d++(?:{_SEPARATOR}\d++)*+")

_MIN_DIGITS = 12
_MAX_DIGITS = 19

# (first digits, lowest, highest): the issuer ranges of the card networks.
_ISSUER_RANGES: tuple[tuple[int, int, int], ...] = (
    (1, 4, 4),  # Visa
    (2, 51, 55),  # Mastercard
    (4, 2221, 2720),  # Mastercard 2-series
    (2, 34, 34),  # American Express
    (2, 37, 37),  # American Express
    (4, 6011, 6011),  # Discover
    (3, 644, 649),  # Discover
    (2, 65, 65),  # Discover
    (6, 622126, 622925),  # Discover (co-branded UnionPay)
    (4, 3528, 3589),  # JCB
    (3, 300, 305),  # Diners Club
    (2, 36, 36),  # Diners Club
    (2, 38, 39),  # Diners Club
    (2, 62, 62),  # UnionPay
    (2, 50, 50),  # Maestro
    (2, 56, 69),  # Maestro
    (4, 2200, 2204),  # Mir
)


def issuer_known(digits: str) -> bool:
    """Whether ``digits`` starts with the prefix of a card network."""
    return any(lo <= int(digits[:size]) <= hi for size, lo, hi in _ISSUER_RANGES)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, ch in enumerate(reversed(digits)):
        value = int(ch)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def gs1_valid(digits: str) -> bool:
    """Whether ``digits`` end in a GS1 check digit (EAN-13, UPC-A): weights 3, 1 from the right."""
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(ch) * (3 if index % 2 == 0 else 1) for index, ch in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _kind(separator: str) -> str:
    """What joins two groups: ``"-"``, ``"."``, ``"/"``, or ``" "`` for any run of whitespace."""
    return separator.strip(" \t\n") or " "


def _layout(lengths: list[int]) -> str | None:
    """``"one"`` (a single run), ``"wide"`` (4 digits, then groups of 3-6: 4-4-4-4, 4-6-5...),
    ``"pairs"`` (2-digit groups, the last one may have 1), or None for any other grouping."""
    if len(lengths) == 1:
        return "one"
    if lengths[0] == 4 and all(3 <= n <= 6 for n in lengths[1:]):
        return "wide"
    if all(n == 2 for n in lengths[:-1]) and 1 <= lengths[-1] <= 2:
        return "pairs"
    return None


def _window_ok(work: str, groups: list[re.Match[str]], first: int, last: int) -> bool:
    window = groups[first : last + 1]
    digits = "".join(g.group() for g in window)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS or not issuer_known(digits):
        return False
    layout = _layout([len(g.group()) for g in window])
    if layout is None or (layout == "one" and len(digits) <= 13 and gs1_valid(digits)):
        return False  # a run of 12 or 13 digits with a GS1 check digit is a product barcode
    kinds = {_kind(work[a.end() : b.start()]) for a, b in pairwise(window)}
    if len(kinds) > 1:
        return False
    kind = kinds.pop() if kinds else None
    # 2-digit groups and 12-digit numbers are only read as a whole run of digit groups, never
    # out of a longer one ("ref 1234 5678 9012 3456", "030/1234 5678 9012" hold no card).
    if (layout == "pairs" or len(digits) == _MIN_DIGITS) and (first, last) != (0, len(groups) - 1):
        return False
    start, end = window[0].start(), window[-1].end()
    if first == 0:
        prev = work[start - 1 : start]
        before = work[start - 2 : start - 1] if start >= 2 else ""
        if (prev == "+" and len(digits) <= 15) or (prev in {".", ","} and before.isdecimal()):
            return False
    elif work[groups[first - 1].end() : start] == "." and kind != ".":
        return False  # a decimal point, not a separator
    if last == len(groups) - 1:
        if glued_after(work, end):
            return False
    elif work[end : groups[last + 1].start()] == "." and kind != ".":
        return False
    return luhn_valid(digits)


def _can_open(length: int, first: int) -> bool:
    """Whether a group of ``length`` digits, the ``first``-th of its run, can start a card
    (2-digit groups only start the whole run)."""
    return length == 4 or length >= _MIN_DIGITS or (length == 2 and first == 0)


def find_cards(work: str) -> list[Span]:
    spans: list[Span] = []
    for chain in _CARD_CHAIN_RE.finditer(work):
        groups = list(DIGITS_RE.finditer(work, chain.start(), chain.end()))
        digit_count = sum(len(g.group()) for g in groups)
        if work[chain.start() - 1 : chain.start()] == "+" and digit_count <= 15:
            continue  # all of it is one international phone number, no card inside it
        first = 0
        while first < len(groups):
            if not _can_open(len(groups[first].group()), first):
                first += 1
                continue
            lasts: list[int] = []
            total = 0
            for last in range(first, len(groups)):
                total += len(groups[last].group())
                if total > _MAX_DIGITS:
                    break
                lasts.append(last)
            chosen = next(
                (last for last in reversed(lasts) if _window_ok(work, groups, first, last)),
                None,
            )
            if chosen is None:
                first += 1
            else:
                spans.append((groups[first].start(), groups[chosen].end()))
                first = chosen + 1
    return spans
