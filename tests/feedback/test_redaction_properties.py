"""Property-based checks of the redaction (hypothesis): generated cards, IBANs, phone numbers and
spelled-out e-mail addresses, written the ways people paste them, are redacted whole; Luhn-valid
numbers that no card network issues are left alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from feedback.redaction import redact
from tests.feedback.redaction_helpers import luhn_complete, make_iban

FAST = settings(max_examples=200, deadline=None)

# Prefixes at both ends of every issuer range the module knows.
ISSUER_PREFIXES = [
    "4", "51", "55", "2221", "2720", "34", "37", "6011", "644", "649", "65", "622126", "622925",
    "3528", "3589", "300", "305", "36", "38", "39", "62", "50", "56", "69", "2200", "2204",
]  # fmt: skip
NON_ISSUER_PREFIXES = ["1", "7", "8", "9", "31", "32", "33", "306", "3527", "20", "2210", "28"]
# The zero of each digit script: ASCII, full-width, Arabic-Indic, Eastern Arabic-Indic,
# Devanagari, Bengali.
ZEROS = ["0", "\uff10", "\u0660", "\u06f0", "\u0966", "\u09e6"]
CARD_SEPARATORS = [
    " ", "  ", "-", ".", "/", "\n", " - ", "\u00a0", "\u202f", "\u2009", "\u2013", "\u2212",
]  # fmt: skip
IBAN_SEPARATORS = [" ", "  ", "-", "", "\u00a0", "\u202f", "\u2013", "\u2011"]
PHONE_SEPARATORS = [" ", "-", ".", "\u00a0", "\u2013", "\u2009"]
BEFORE = ["", "my card is ", "Pay with ", "Grüße 🙂 ", "(", "number: ", "use\n"]
AFTER = ["", " thanks", ".", ", ok?", ")", " 🙂", " please"]

# IBAN lengths of some countries (the module checks these exactly).
IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "BE": 16, "ES": 24, "IT": 27, "PL": 28}


def _script(digits: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in digits)


def _group(text: str, sizes: list[int]) -> list[str]:
    groups, pos = [], 0
    for size in sizes:
        if pos >= len(text):
            break
        groups.append(text[pos : pos + size])
        pos += size
    if pos < len(text):
        groups.append(text[pos:])
    return groups


def _card_groups(digits: str, layout: str) -> list[str]:
    if layout == "pairs":
        return _group(digits, [2] * 10)
    if layout == "amex" and 13 <= len(digits) <= 16:
        return _group(digits, [4, 6])
    if layout in {"fours", "amex"}:
        groups = _group(digits, [4] * 5)
        if len(groups[-1]) < 3:  # 4-4-4-2 is no card layout: 4-4-6 is
            groups[-2:] = [groups[-2] + groups[-1]]
        return groups
    return [digits]


def _assert_redacted_whole(text: str, shown: str, kind: str) -> None:
    result = redact(text)
    start = text.index(shown)
    assert (kind, start, start + len(shown)) in [
        (r.kind, r.start, r.end) for r in result.redactions
    ]
    assert redact(result.text).text == result.text  # idempotent


@st.composite
def cards(draw: st.DrawFn, prefixes: list[str]) -> str:
    prefix = draw(st.sampled_from(prefixes))
    length = draw(st.integers(14, 19))
    body = prefix + draw(st.text("0123456789", min_size=length - len(prefix) - 1, max_size=19))
    return luhn_complete(body[: length - 1])


@FAST
@given(
    digits=cards(ISSUER_PREFIXES),
    layout=st.sampled_from(["one", "fours", "amex", "pairs"]),
    separator=st.sampled_from(CARD_SEPARATORS),
    zero=st.sampled_from(ZEROS),
    before=st.sampled_from(BEFORE),
    after=st.sampled_from(AFTER),
)
def test_cards_of_real_networks_are_redacted(
    digits: str, layout: str, separator: str, zero: str, before: str, after: str
) -> None:
    shown = separator.join(_script(g, zero) for g in _card_groups(digits, layout))
    _assert_redacted_whole(f"{before}{shown}{after}", shown, "CARD")


@FAST
@given(
    digits=cards(NON_ISSUER_PREFIXES),
    layout=st.sampled_from(["one", "fours"]),
    before=st.sampled_from(["", "order ", "Invoice ", "tracking number "]),
    after=st.sampled_from(["", " thanks", "."]),
)
def test_luhn_valid_numbers_of_no_network_survive(
    digits: str, layout: str, before: str, after: str
) -> None:
    # Grouped numbers are phone-shaped, so they get the identifier cue a customer would write.
    # They are kept to 16 digits: in a longer run of 4-digit groups, the last 13 or more digits
    # may themselves be a card (a card is looked for from every group on).
    if layout == "fours":
        before, digits = before or "order ", luhn_complete(digits[:15])
    text = f"{before}{' '.join(_card_groups(digits, layout))}{after}"
    result = redact(text)
    assert result.text is text and result.redactions == (), text


@FAST
@given(
    country=st.sampled_from(sorted(IBAN_LENGTHS)),
    bban=st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=30, max_size=30),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=12),
    separator=st.sampled_from(IBAN_SEPARATORS),
    lower=st.booleans(),
    before=st.sampled_from(["", "IBAN ", "send it to ", "IBAN: "]),
    after=st.sampled_from(["", " thanks", ".", ", from you"]),
)
def test_ibans_in_any_grouping_are_redacted(
    country: str,
    bban: str,
    sizes: list[int],
    separator: str,
    lower: bool,
    before: str,
    after: str,
) -> None:
    iban = make_iban(country, bban[: IBAN_LENGTHS[country] - 4])
    groups = _group(iban[4:], sizes)
    shown = separator.join([iban[:4] + groups[0], *groups[1:]])
    shown = shown.lower() if lower else shown
    _assert_redacted_whole(f"{before}{shown}{after}", shown, "IBAN")


@st.composite
def phones(draw: st.DrawFn) -> tuple[str, list[str], bool]:
    """(``"+"`` or ``""``, the digit groups, whether a ``/`` follows the area code): an
    international number (country code, groups of 1-4 digits) or a national one (trunk 0 and
    area code, then groups of 3-4 digits and a last one of 4: "0100.000" reads as a decimal
    number and "010.000.000.000" as an IP address), 7-15 digits."""
    international = draw(st.booleans())
    if international:
        head = draw(st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True))
        sizes = draw(st.lists(st.integers(1, 4), min_size=2, max_size=6))
    else:
        head = draw(st.from_regex(r"0[1-9][0-9]{1,3}", fullmatch=True))
        sizes = [*draw(st.lists(st.integers(3, 4), min_size=1, max_size=2)), 4]
    groups = [head]
    for size in sizes:
        if sum(map(len, groups)) + size > 15:
            break
        groups.append(draw(st.text("0123456789", min_size=size, max_size=size)))
    if sum(map(len, groups)) < 7:
        groups.append(draw(st.text("0123456789", min_size=4, max_size=4)))
    slash = not international and draw(st.booleans())
    return ("+" if international else ""), groups, slash


@FAST
@given(
    phone=phones(),
    separator=st.sampled_from(PHONE_SEPARATORS),
    zero=st.sampled_from(ZEROS),
    before=st.sampled_from(["", "call me on ", "Tel. ", "my number is ", "رقمي "]),
    after=st.sampled_from(["", " thanks", ".", ", evenings"]),
)
def test_phones_with_any_separator_and_digits_are_redacted(
    phone: tuple[str, list[str], bool], separator: str, zero: str, before: str, after: str
) -> None:
    plus, groups, slash = phone
    written = [_script(g, zero) for g in groups]
    if slash:  # 030/1234567
        written[:2] = [written[0] + "/" + written[1]]
    shown = plus + separator.join(written)
    _assert_redacted_whole(f"{before}{shown}{after}", shown, "PHONE")


WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10).filter(
    lambda w: w not in {"at", "dot"}
)
LABEL = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=10).filter(
    lambda w: w not in {"at", "dot"}
)
BRACKET_ATS = ["(at)", " (at) ", "[at]", " [at] ", "{at}", " <at> ", " (AT) ", "[@]", " ( at ) "]
SPELLED_DOTS = ["(dot)", " (dot) ", " [dot] ", " dot ", " DOT ", "{.}", " (.) "]


@FAST
@given(
    local=st.lists(WORD, min_size=1, max_size=3),
    labels=st.lists(LABEL, min_size=2, max_size=4),
    at_form=st.sampled_from(["bracket", "word", "plain"]),
    at_index=st.integers(0, len(BRACKET_ATS) - 1),
    dot=st.sampled_from(SPELLED_DOTS),
    mix_plain_dots=st.booleans(),
    before=st.sampled_from(["", "write to ", "mail: ", "Email me at "]),
    after=st.sampled_from(["", " please", ".", ", thanks"]),
)
def test_spelled_out_email_addresses_are_redacted(
    local: list[str],
    labels: list[str],
    at_form: str,
    at_index: int,
    dot: str,
    mix_plain_dots: bool,
    before: str,
    after: str,
) -> None:
    at = {"bracket": BRACKET_ATS[at_index], "word": " at ", "plain": "@"}[at_form]
    # A bare " at " needs spelled-out dots; after a bracketed or plain @ a real dot is fine too.
    domain_dot = "." if mix_plain_dots and at_form != "word" else dot
    if at_form == "plain" and domain_dot == ".":
        domain_dot = dot  # a plain address is the plain detector's job, tested elsewhere
    shown = ".".join(local) + at + domain_dot.join(labels)
    _assert_redacted_whole(f"{before}{shown}{after}", shown, "EMAIL")
