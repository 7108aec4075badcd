"""The text the detectors read: pasted text folded to plain ASCII shapes, and a map back.

People paste numbers with non-breaking or thin spaces, en dashes or minus signs, full-width
characters, or in the digits of their own script (``٠٣٠١٢٣٤٥٦٧٨``). The detectors are written
for plain ASCII shapes, so they read a folded copy of the text:

* each character with the marks that follow it (a cluster) gets Unicode NFKC, so full-width
  forms, compatibility spaces and decomposed accents become their plain forms;
* any digit of any script becomes its ASCII digit (``unicodedata.digit``);
* every space separator (``Zs``: NBSP, narrow NBSP, thin space, ideographic space...) becomes
  ``" "``, line and paragraph separators become ``"\\n"``;
* every dash (``Pd``: en/em dash, non-breaking hyphen...) and the minus sign become ``"-"``;
  the fraction and division slashes ``"/"``; ideographic full stops and the Arabic decimal
  separator ``"."``, the Arabic thousands separator ``","``;
* invisible format characters (``Cf``: zero-width space, soft hyphen, direction marks...) are
  dropped, so they neither join nor split anything.

NFKC can change the length of a cluster, so `Normalised` keeps, for every folded character, the
span of the original cluster it came from; `Normalised.original_span` maps a match back. ASCII
text is already folded and is used as it is.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_FIRST_MARK = "\u0300"  # no combining mark sorts before this one

_PUNCTUATION: dict[str, str] = {
    "\u2212": "-",  # minus sign
    "\u2043": "-",  # hyphen bullet
    "\u2044": "/",  # fraction slash
    "\u2215": "/",  # division slash
    "\u3002": ".",  # ideographic full stop
    "\u066b": ".",  # Arabic decimal separator
    "\u066c": ",",  # Arabic thousands separator
}


@dataclass(frozen=True)
class Normalised:
    """The folded text; ``starts[i]:ends[i]`` is the original cluster of folded character i
    (both None when the text needed no folding)."""

    text: str
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that the folded span ``start:end`` came from."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def _fold_char(ch: str) -> str:
    if ch.isascii():
        return ch
    digit = unicodedata.digit(ch, None)
    if digit is not None:
        return str(digit)
    category = unicodedata.category(ch)
    if category == "Zs":
        return " "
    if category in {"Zl", "Zp"}:
        return "\n"
    if category == "Cf":
        return ""
    if category == "Pd":
        return "-"
    return _PUNCTUATION.get(ch, ch)


@lru_cache(maxsize=4096)
def _fold_cluster(cluster: str) -> str:
    return "".join(_fold_char(ch) for ch in unicodedata.normalize("NFKC", cluster))


def normalise(text: str) -> Normalised:
    """Fold ``text`` for matching (see the module docstring)."""
    if text.isascii():
        return Normalised(text)
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos, size = 0, len(text)
    while pos < size:
        end = pos + 1
        while (
            end < size
            and text[end] >= _FIRST_MARK
            and unicodedata.category(text[end]).startswith("M")
        ):
            end += 1
        cluster = text[pos:end]
        folded = cluster if cluster.isascii() else _fold_cluster(cluster)
        pieces.append(folded)
        starts.extend([pos] * len(folded))
        ends.extend([end] * len(folded))
        pos = end
    return Normalised("".join(pieces), tuple(starts), tuple(ends))
