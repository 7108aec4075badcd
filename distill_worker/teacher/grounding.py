"""The company knowledge file, its retrieval, and the grounded prompt the responder sees.

The knowledge file is Markdown, kept simple on purpose:

    # Acme Bank                          optional, first non-blank line only: the company name
    ## Card delivery                     each `## ` line starts a section, titles are unique
    keywords: card, arrive, post         optional, one line anywhere inside a section
    New cards arrive within 5 working    the body: free text, any number of lines
    days. ...

Every section needs a non-empty body. Text before the first section (other than the company
name), a second `# ` heading, or a file over 1 MB is refused with the line number to fix.
`###` and deeper headings are ordinary body text.

Retrieval is BM25 (k1 = 1.5, b = 0.75) over title + keywords + body, the title and keywords
counted twice (they are written to be matched). Tokens are lowercase words and numbers, a small
English stopword list removed, a plural `s` / `ies` folded (cards -> card, fees -> fee,
policies -> policy).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 1_000_000
K1 = 1.5
B = 0.75

_STOPWORD_TEXT = """
    a about above after again all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    please hi hello thanks thank"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[a-z0-9]+")
_KEYWORDS = re.compile(r"^keywords:\s*(.*)$", re.IGNORECASE)


class KnowledgeFileError(ValueError):
    """The knowledge file cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Section:
    title: str
    body: str
    keywords: tuple[str, ...] = ()
    line: int = 0  # 1-based line of the `## ` heading in the file


def tokenize(text: str) -> list[str]:
    """Lowercase words and numbers, stopwords removed, a plural `s`/`ies` folded."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        out.append(word)
    return out


@dataclass(frozen=True)
class Knowledge:
    """The parsed file with a BM25 index over its sections."""

    sections: tuple[Section, ...]
    company: str | None = None
    _docs: list[Counter[str]] = field(init=False, repr=False, compare=False)
    _lengths: list[int] = field(init=False, repr=False, compare=False)
    _idf: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        docs = []
        for s in self.sections:
            boosted = " ".join([s.title, *s.keywords] * 2)
            docs.append(Counter(tokenize(f"{boosted} {s.body}")))
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        n = len(docs)
        idf = {t: math.log((n - c + 0.5) / (c + 0.5) + 1.0) for t, c in df.items()}
        object.__setattr__(self, "_docs", docs)
        object.__setattr__(self, "_lengths", [sum(d.values()) for d in docs])
        object.__setattr__(self, "_idf", idf)

    def scores(self, query: str) -> list[float]:
        """BM25 score of every section for `query`, in file order."""
        terms = tokenize(query)
        avg = sum(self._lengths) / max(len(self._lengths), 1)
        out = []
        for doc, length in zip(self._docs, self._lengths, strict=True):
            score = 0.0
            for term in terms:
                tf = doc.get(term, 0)
                if tf:
                    norm = tf + K1 * (1.0 - B + B * length / avg)
                    score += self._idf[term] * tf * (K1 + 1.0) / norm
            out.append(score)
        return out

    def retrieve(self, query: str, k: int = 2) -> list[Section]:
        """The (at most) `k` best-matching sections, best first; none when nothing matches."""
        if k < 1:
            raise ValueError("k must be at least 1")
        ranked = sorted(enumerate(self.scores(query)), key=lambda item: (-item[1], item[0]))
        return [self.sections[i] for i, score in ranked[:k] if score > 0.0]


def load_knowledge(path: Path) -> Knowledge:
    """Parse a knowledge file (format in the module docstring); KnowledgeFileError if unusable."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise KnowledgeFileError(f"{path}: cannot read the knowledge file ({exc})") from exc
    if size > MAX_BYTES:
        raise KnowledgeFileError(
            f"{path}: the knowledge file is {size} bytes, over the {MAX_BYTES} byte limit; "
            "keep only the policies and FAQ the assistant needs"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeFileError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
    return parse_knowledge(text, source=str(path))


def parse_knowledge(text: str, *, source: str = "<knowledge>") -> Knowledge:
    """Parse knowledge-file text; `source` names it in error messages."""
    company: str | None = None
    sections: list[Section] = []
    titles: dict[str, int] = {}
    current: tuple[str, int] | None = None  # (title, line)
    seen_name = False
    body: list[str] = []
    keywords: tuple[str, ...] = ()

    def close() -> None:
        if current is None:
            return
        title, line = current
        content = "\n".join(body).strip()
        if not content:
            raise KnowledgeFileError(
                f"{source}:{line}: section '{title}' has no text; write its policy or remove it"
            )
        sections.append(Section(title=title, body=content, keywords=keywords, line=line))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line == "##" or line.startswith("## "):
            close()
            title = line[2:].strip()
            if not title:
                raise KnowledgeFileError(f"{source}:{number}: a '## ' heading needs a title")
            key = title.lower()
            if key in titles:
                raise KnowledgeFileError(
                    f"{source}:{number}: section title '{title}' is already used on line "
                    f"{titles[key]}; give each section a distinct title or merge them"
                )
            titles[key] = number
            current, body, keywords = (title, number), [], ()
        elif line == "#" or line.startswith("# "):
            if current is not None or seen_name:
                raise KnowledgeFileError(
                    f"{source}:{number}: a '# ' heading is only allowed as the first line "
                    "(the company name); use '## ' to start a section"
                )
            company, seen_name = line[1:].strip() or None, True
        elif current is None:
            if line.strip():
                raise KnowledgeFileError(
                    f"{source}:{number}: text before the first '## ' section; "
                    "put it inside a section"
                )
        elif (match := _KEYWORDS.match(line.strip())) and not keywords:
            keywords = tuple(w.strip() for w in match.group(1).split(",") if w.strip())
        else:
            body.append(line)
    close()
    if not sections:
        raise KnowledgeFileError(
            f"{source}: no sections found; start each policy or FAQ entry with a '## Title' line"
        )
    return Knowledge(sections=tuple(sections), company=company)


_ROLES = {
    "customer": "user",
    "assistant": "assistant",
    "agent": "assistant",
    "operator": "assistant",
}


def build_messages(
    knowledge: Knowledge,
    turns: list[tuple[str, str]],
    *,
    k: int = 2,
    company: str | None = None,
) -> list[dict[str, str]]:
    """A grounded chat for the responder: system prompt with the retrieved sections, then turns.

    `turns` are (speaker, text) with speaker "customer" (-> user), "assistant" or "operator"
    (both -> assistant: an operator speaks for the company). Retrieval uses the last two
    customer messages, so a short follow-up still finds the topic of the conversation.
    """
    if not turns:
        raise ValueError("build_messages needs at least one turn")
    for speaker, _ in turns:
        if speaker not in _ROLES:
            raise ValueError(f"unknown speaker {speaker!r}; use one of {sorted(_ROLES)}")
    name = company or knowledge.company or "the company"
    customer_texts = [text for speaker, text in turns if speaker == "customer"]
    found = knowledge.retrieve(" ".join(customer_texts[-2:]), k=k) if customer_texts else []
    if found:
        excerpts = "\n\n".join(f"### {s.title}\n{s.body}" for s in found)
    else:
        excerpts = "(no policy excerpt matches this question)"
    system = (
        f"You are the customer-service agent of {name}. Answer in at most 2-3 short sentences. "
        "Use only the policy excerpts below; do not invent policies, amounts or dates. "
        "If the excerpts do not answer the question, or you are unsure, say so and offer to "
        "connect the customer with a human colleague.\n\n"
        f"Policy excerpts:\n{excerpts}"
    )
    return [
        {"role": "system", "content": system},
        *({"role": _ROLES[speaker], "content": text} for speaker, text in turns),
    ]
