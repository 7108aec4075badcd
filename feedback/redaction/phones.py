"""Phone numbers: shape, context (cue words, money, dates) and digit counts decide. The rules are
described in `feedback.redaction`."""

from __future__ import annotations

import re

from feedback.redaction.identifiers import DIGITS_RE, Span, glued_after, masked

# ---------------------------------------------------------------------------------------- phone

_PHONE_GROUP = r"(?:\(\d++\)|\d++)"
# A slash only after a trunk-prefixed area code: "030/1234567" (not "04/12/2026", a date).
_AREA_SLASH = r"(?:0\d{1,4}/(?=\d))?+"
_PHONE_TOKEN = rf"{_AREA_SLASH}{_PHONE_GROUP}(?:(?:[.\-]|(?<=\))){_PHONE_GROUP})*+"
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
    "version", "build", "ean", "upc", "gtin", "barcode", "#",
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
    return glued_after(work, end) or _MONEY_AFTER_RE.match(work, end) is not None


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


def _not_a_phone_token(token: str, international: bool) -> bool:
    if _DECIMAL_RE.fullmatch(token) is not None:
        return True
    # Nobody writes a "+" before a date or an IP address: "+49.30.12.34" is a phone number.
    return not international and (_is_date(token) or _IPV4_RE.fullmatch(token) is not None)


def _phone_window_ok(work: str, start: int, end: int) -> bool:
    window = work[start:end]
    groups = DIGITS_RE.findall(window)
    if not 7 <= sum(len(g) for g in groups) <= 15:
        return False
    if _phone_context_bad(work, start, end):
        return False
    international = window.startswith("+")
    if any(_not_a_phone_token(t, international) for t in window.lstrip("+").split(" ")):
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
    return len(DIGITS_RE.findall(token)) > 1


def find_phones(work: str) -> list[Span]:
    spans: list[Span] = []
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
                digits += sum(len(g) for g in DIGITS_RE.findall(texts[last]))
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
                work = masked(work, [(start, end)])
                first = chosen + 1
                if first < count:
                    split[first] = True
    return spans
