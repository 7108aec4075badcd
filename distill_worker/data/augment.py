"""Adversarial variants of labelled customer turns: the noise real customers type.

About `fraction` of the labelled rows get one extra row each, made in one of these ways (`KINDS`):

* Noise that keeps the intent, applied to a row of that intent (same intent and context):
  `typo` (two adjacent letters swapped, a letter dropped or doubled), `casing` (all upper, all
  lower), `punctuation` (removed, or a trailing "??" / "!!"), and `paraphrase`: one or two
  word-level edits a customer makes without changing what they ask: a politeness or filler word
  dropped ("please", "just", a leading "hi,") or added ("hi,", "quick question:", "pls",
  "thanks"), a word swapped for chat shorthand ("you" / "u", "account" / "acct"), or a
  contraction expanded or made ("can't" / "cannot"). Only words from the small tables below are
  touched, so the words that carry the intent stay. "thanks" is never dropped, a leading greeting
  only before at least three more words, and fillers are added only to texts of three words or
  more, so a short "hi" or "thanks for the help" (intents in CLINC150) keeps its meaning.
* Out-of-scope input, only when the rows carry the out-of-scope label (`oos`, CLINC150's and the
  demo corpus's): `oos_copy` (one of the data's own out-of-scope rows with typo, casing or
  punctuation noise), and two kinds a chat widget receives that carry no intent at all:
  `keyboard_mash` ("asdfg hjk") and `symbols` (punctuation and emoji only), made up, without
  context. Out-of-scope data sets hold well-formed questions on other topics, so a model trained
  on them alone has never seen garbage and may map it to any intent; a few made-up rows teach it
  that, the noisy copies keep the real out-of-scope rows in proportion. Without an out-of-scope
  label none are made: the model has no class to learn them as, and adding one would change the
  label set the run and its champion share.
  Not made out-of-scope: greetings and thanks alone (CLINC150 has them as intents, `greeting`
  and `thank_you`; in the demo corpus they open and close in-scope requests), emoji that answer
  (thumbs up, smile, wave), a bare "?" (CLINC150's `repeat` is "what?"), and bare numbers: after
  "what is your order number?" a number is an answer, and dates and amounts are parts of intents
  (CLINC150's `calendar`, `calculator`): with bare numbers as `oos`, a TF-IDF + LR trained on
  CLINC150 sent "do i have plans on 12/03/2019" and "multiply 7 and 42" there too.

Measured (`bench/augment_variants.py`, TF-IDF + LR on CLINC150, val + oos_val, fraction 0.05):
intent-keeping noise alone leaves accuracy (0.906) and OOS recall (0.34) as they were; the noisy
out-of-scope copies raise OOS recall to 0.42 at OOS precision 0.84 (0.85 before); the made-up
rows add no recall on real questions and cost precision (0.72), as short in-scope words
("perhaps", "scrap") then look like mash to a character n-gram model, while the noisy copies
alone already send most mash to `oos`. So none are made by default (`made_up_share` 0); a
deployment whose widget gets much garbage can ask for them, after checking them on its student.

Split: with an out-of-scope label, a fifth of the budget goes to out-of-scope variants
(`made_up_share` of those made up, mash and symbols in turn; the rest `oos_copy`, at most one
per out-of-scope row) and each other intent gets four fifths of its share; without one each
intent gets its share, as before. Every intent with rows gets at least one. Replies are not
copied: variants train the encoder (stage 1), not the decoder. Chosen and changed by a seeded
RNG, so a run is reproducible.
"""

from __future__ import annotations

import random
import re
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from distill_worker.data.demo_corpus import OOS
from distill_worker.data.loaders import Utterance

NOISE_KINDS = ("typo", "casing", "punctuation", "paraphrase")
OOS_KINDS = ("oos_copy", "keyboard_mash", "symbols")
KINDS = NOISE_KINDS + OOS_KINDS
OOS_SHARE = 0.2  # of the variant budget, when the rows have an out-of-scope label
MADE_UP_SHARE = 0.0  # of the out-of-scope variants; they cost OOS precision (see above)

# Word swaps a customer makes in chat, each pair usable both ways (our own list).
_SWAPS: tuple[tuple[str, str], ...] = (
    ("you", "u"),
    ("your", "ur"),
    ("are", "r"),
    ("please", "pls"),
    ("please", "plz"),
    ("thanks", "thx"),
    ("account", "acct"),
    ("information", "info"),
    ("message", "msg"),
    ("tomorrow", "tmrw"),
    ("because", "cuz"),
    ("okay", "ok"),
    ("want to", "wanna"),
    ("can't", "cant"),
    ("don't", "dont"),
    ("doesn't", "doesnt"),
    ("didn't", "didnt"),
    ("i'm", "im"),
    ("what's", "whats"),
    ("can't", "cannot"),
    ("can't", "can not"),
    ("don't", "do not"),
    ("doesn't", "does not"),
    ("didn't", "did not"),
    ("isn't", "is not"),
    ("won't", "will not"),
    ("haven't", "have not"),
    ("wasn't", "was not"),
    ("i'm", "i am"),
    ("i'd", "i would"),
    ("it's", "it is"),
    ("what's", "what is"),
    ("where's", "where is"),
)
# Swaps made one way only: "I have to pay" is not "I've to pay", "going to the shop" not "gonna".
_EXPANSIONS = (("i've", "i have"), ("gonna", "going to"), ("gotta", "got to"))
# Words that only soften a request; dropping one never changes what is asked.
_SOFTENER_WORDS = ("please", "pls", "plz", "kindly", "just", "actually", "really", "um", "uh")
# A greeting opener, dropped only when at least three words follow it.
_OPENER = re.compile(r"^(hi|hello|hey|hiya)(\s+there)?\s*[,!.:-]?\s+", re.IGNORECASE)
_PREFIXES = ("hi, ", "hey ", "hello, ", "quick question: ", "um ", "so ")
_SUFFIXES = (" please", " pls", " thanks", " thx", " thank you")
_MIN_WORDS_AROUND = 3
_QUOTES = "'\u2019"  # the apostrophe as typed and as phones curl it

_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# No intent alone. Left out: thumbs up, smiles, waves, hearts (they answer, thank or greet) and
# a bare "?" or thinking face ("what?" is CLINC150's `repeat`, "hmm" its `maybe`).
_SYMBOLS = ("...", "…", "!!", "-", "#", "*", "~", ";", "/", "😶", "👀", "🫠", "🙃")


def _phrase(words: str) -> re.Pattern[str]:
    """A whole-word, case-blind pattern for `words`; a ' in it also matches a curly one."""
    body = r"\s+".join(re.escape(w).replace("'", f"[{_QUOTES}]") for w in words.split())
    return re.compile(rf"(?<![\w{_QUOTES}]){body}(?![\w{_QUOTES}])", re.IGNORECASE)


def _swap_pattern(old: str, new: str) -> re.Pattern[str]:
    """`old` as a pattern; one that contracts ("it is" -> "it's") only where a word other than
    an added closer follows, as "what time it is (thanks)" does not contract."""
    pattern = _phrase(old)
    if " " in old and "'" in new:
        closers = "|".join(sorted({w for s in _SUFFIXES for w in s.split()}))
        return re.compile(pattern.pattern + rf"(?=\s+(?!(?:{closers})\b)\w)", re.IGNORECASE)
    return pattern


_SWAP_PATTERNS = [
    *((_swap_pattern(old, new), new) for a, b in _SWAPS for old, new in ((a, b), (b, a))),
    *((_phrase(short), long) for short, long in _EXPANSIONS),
]
_SOFTENERS = [re.compile(_phrase(w).pattern + r"\s*,?\s*", re.I) for w in _SOFTENER_WORDS]


def _typo(text: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 3:
        return text + text[-1:]
    i = rng.choice(letters[:-1])
    how = rng.randrange(3)
    if how == 0 and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if how == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _casing(text: str, rng: random.Random) -> str:
    changed = text.upper() if rng.random() < 0.5 else text.lower()
    return changed if changed != text else text.swapcase()


def _punctuation(text: str, rng: random.Random) -> str:
    stripped = text.translate(str.maketrans("", "", string.punctuation)).strip()
    if stripped != text and rng.random() < 0.5:
        return stripped
    return text.rstrip(string.punctuation + " ") + rng.choice(("??", "!!", "?!", "..."))


def _like(match: re.Match[str], new: str) -> str:
    """`new` in the casing of the matched words: all upper stays upper, a capital stays."""
    found = match.group(0)
    if found.isupper() and len(found) > 1:
        return new.upper()
    if found[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))


def _paraphrases(text: str, rng: random.Random) -> list[str]:
    """`text` after each single word-level edit that applies to it (see the module docstring)."""
    out = []
    for old, new in _SWAP_PATTERNS:
        if old.search(text):
            out.append(old.sub(partial(_like, new=new), text))
    if _word_count(text) - 1 >= _MIN_WORDS_AROUND:
        out.extend(p.sub(" ", text, count=1).strip(" ,") for p in _SOFTENERS if p.search(text))
    opener = _OPENER.match(text)
    if opener and _word_count(text[opener.end() :]) >= _MIN_WORDS_AROUND:
        out.append(text[opener.end() :])
    if _word_count(text) >= _MIN_WORDS_AROUND:
        if not opener and not text.lower().startswith(tuple(p.strip() for p in _PREFIXES)):
            out.append(rng.choice(_PREFIXES) + text)
        body = text.rstrip(" .!?")  # a suffix goes before the closing punctuation
        if not body.lower().endswith(tuple(s.strip() for s in _SUFFIXES)):
            out.append(body + rng.choice(_SUFFIXES) + text[len(body) :])
    return [" ".join(t.split()) for t in out]


def _paraphrase(text: str, rng: random.Random) -> str:
    """One word-level edit, a second one a third of the time (never one that undoes the first);
    `text` itself when no edit applies."""
    first = _paraphrases(text, rng)
    if not first:
        return text
    out = rng.choice(first)
    if rng.random() < 1 / 3:
        second = [t for t in _paraphrases(out, rng) if t != text]
        if second:
            out = rng.choice(second)
    return out


def _keyboard_mash(rng: random.Random) -> str:
    chunks = []
    for _ in range(rng.choice((1, 1, 2))):
        row = rng.choice(_KEY_ROWS)
        length = rng.randint(3, min(7, len(row)))
        start = rng.randrange(len(row) - length + 1)
        chunk = row[start : start + length]
        chunks.append(chunk[::-1] if rng.random() < 0.3 else chunk)
    return " ".join(chunks)


def _symbols(rng: random.Random) -> str:
    return " ".join(rng.choice(_SYMBOLS) for _ in range(rng.randint(1, 3)))


def variant(text: str, kind: str, rng: random.Random) -> str:
    """`text` changed as `kind` says. The `keyboard_mash` and `symbols` kinds replace it with
    input that carries no intent; `oos_copy` is typo, casing or punctuation noise."""
    if kind == "typo":
        return _typo(text, rng)
    if kind == "casing":
        return _casing(text, rng)
    if kind == "punctuation":
        return _punctuation(text, rng)
    if kind == "paraphrase":
        return _paraphrase(text, rng)
    if kind == "oos_copy":
        return variant(text, rng.choice(("typo", "casing", "punctuation")), rng)
    if kind == "keyboard_mash":
        return _keyboard_mash(rng)
    if kind == "symbols":
        return _symbols(rng)
    raise ValueError(f"unknown variant kind {kind!r}; one of {KINDS}")


def _noisy_copy(
    row: Utterance, kinds: Sequence[str], rng: random.Random, seen: set[str]
) -> tuple[str, Utterance] | None:
    """The first of `kinds` (shuffled, twice over) that changes `row` into a text not yet seen;
    None when none does (a one-letter text, say)."""
    order = list(kinds)
    rng.shuffle(order)
    for kind in order * 2:
        text = variant(row.text, kind, rng)
        if text.strip() and text not in seen:
            seen.add(text)
            return kind, replace(row, text=text, reply=None, reward=None, rejected=None)
    return None


def adversarial_variants_by_kind(
    rows: Sequence[Utterance],
    fraction: float = 0.05,
    seed: int = 0,
    *,
    oos_label: str | None = OOS,
    made_up_share: float = MADE_UP_SHARE,
) -> dict[str, list[Utterance]]:
    """New rows (not including `rows`) by kind, every kind of `KINDS` a key in that order.

    `oos_label` names the out-of-scope intent; out-of-scope variants are made only when some row
    carries it (None: never). `made_up_share` of them are made-up mash and symbols."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"adversarial fraction must be in [0, 1], got {fraction}")
    if not 0.0 <= made_up_share <= 1.0:
        raise ValueError(f"made_up_share must be in [0, 1], got {made_up_share}")
    by_kind: dict[str, list[Utterance]] = {kind: [] for kind in KINDS}
    if fraction == 0.0:
        return by_kind
    rng = random.Random(seed)
    by_intent: dict[str, list[Utterance]] = defaultdict(list)
    for row in rows:
        if row.intent:
            by_intent[row.intent].append(row)
    oos_rows = by_intent.pop(oos_label, []) if oos_label is not None else []
    labelled = sum(len(group) for group in by_intent.values()) + len(oos_rows)
    share = fraction * (1 - OOS_SHARE) if oos_rows else fraction
    seen = {row.text for row in rows}
    for intent in sorted(by_intent):
        group = by_intent[intent]
        for row in rng.sample(group, max(1, round(len(group) * share))):
            made = _noisy_copy(row, NOISE_KINDS, rng, seen)
            if made is not None:
                by_kind[made[0]].append(made[1])
    if oos_rows:
        budget = max(1, round(labelled * fraction * OOS_SHARE))
        made_up = round(budget * made_up_share)
        for row in rng.sample(oos_rows, min(budget - made_up, len(oos_rows))):
            made = _noisy_copy(row, ("oos_copy",), rng, seen)
            if made is not None:
                by_kind["oos_copy"].append(made[1])
        for i in range(made_up):
            kind = ("keyboard_mash", "symbols")[i % 2]
            for _ in range(5):  # repeats of a short symbol string add nothing
                text = variant("", kind, rng)
                if text not in seen:
                    seen.add(text)
                    by_kind[kind].append(Utterance(text=text, intent=oos_label))
                    break
    return by_kind


def adversarial_variants(
    rows: Sequence[Utterance],
    fraction: float = 0.05,
    seed: int = 0,
    *,
    oos_label: str | None = OOS,
    made_up_share: float = MADE_UP_SHARE,
) -> list[Utterance]:
    """New rows (not including `rows`): adversarial variants of ~`fraction` of the labelled rows,
    all kinds together (see `adversarial_variants_by_kind`)."""
    by_kind = adversarial_variants_by_kind(
        rows, fraction, seed, oos_label=oos_label, made_up_share=made_up_share
    )
    return [row for kind in KINDS for row in by_kind[kind]]
