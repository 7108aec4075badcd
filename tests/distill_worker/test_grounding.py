"""The knowledge file: parsing and its errors, BM25 retrieval, the grounded prompt."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from distill_worker.teacher.grounding import (
    Knowledge,
    KnowledgeFileError,
    Section,
    build_messages,
    load_knowledge,
    parse_knowledge,
    tokenize,
)

POLICY = """# Acme Bank

## Card delivery
keywords: card, arrive, post, delivery
New cards arrive within 5 working days by post.
If a card has not arrived after 10 days, we cancel it and send a new one for free.

## Refunds
Card payments can be refunded within 30 days of purchase.
Refunds take 3-5 working days to reach the account.

## Exchange rates
keywords: currency, exchange, fx
We use the daily interbank rate plus a 0.5% fee on weekends.
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "knowledge.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_parses_company_sections_and_keywords(tmp_path: Path) -> None:
    knowledge = load_knowledge(write(tmp_path, POLICY))
    assert knowledge.company == "Acme Bank"
    assert [s.title for s in knowledge.sections] == ["Card delivery", "Refunds", "Exchange rates"]
    card = knowledge.sections[0]
    assert card.keywords == ("card", "arrive", "post", "delivery")
    assert card.line == 3
    assert card.body.startswith("New cards arrive") and "keywords" not in card.body
    assert knowledge.sections[1].keywords == ()


def test_company_name_is_optional_and_subheadings_are_body() -> None:
    knowledge = parse_knowledge("## Fees\nNo monthly fee.\n### Details\nATM: free.\n")
    assert knowledge.company is None
    assert knowledge.sections[0].body == "No monthly fee.\n### Details\nATM: free."


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("# Acme\n\nJust some text\n", "<knowledge>:3: text before the first '## ' section"),
        ("# Acme\n", "no sections found"),
        (
            "## Fees\nNone.\n## Card delivery\n\n  \n## Other\nx\n",
            ":3: section 'Card delivery' has no",
        ),
        ("## Fees\nNone.\n## fees\nSome.\n", ":3: section title 'fees' is already used on line 1"),
        ("# Acme\n## Fees\nNone.\n# Other\n", ":4: a '# ' heading is only allowed as the first"),
        ("## \nbody\n", ":1: a '## ' heading needs a title"),
    ],
)
def test_errors_name_the_line_and_the_fix(text: str, fragment: str) -> None:
    with pytest.raises(KnowledgeFileError) as info:
        parse_knowledge(text)
    assert fragment in str(info.value)


def test_refuses_files_over_one_megabyte(tmp_path: Path) -> None:
    path = write(tmp_path, "## Big\n" + "x" * 1_000_001)
    with pytest.raises(KnowledgeFileError, match="over the 1000000 byte limit"):
        load_knowledge(path)


def test_refuses_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeFileError, match="cannot read"):
        load_knowledge(tmp_path / "missing.md")
    path = tmp_path / "latin1.md"
    path.write_bytes("## Caf\xe9\nbody\n".encode("latin-1"))
    with pytest.raises(KnowledgeFileError, match="not UTF-8"):
        load_knowledge(path)


def test_tokenize_lowercases_drops_stopwords_and_folds_plurals() -> None:
    assert tokenize("Where are MY Cards? The fees, policies & 2 PINs") == [
        "card",
        "fee",
        "policy",
        "2",
        "pin",
    ]
    assert tokenize("access status bus") == ["access", "status", "bus"]


def test_bm25_scores_match_the_formula() -> None:
    knowledge = Knowledge(
        sections=(Section("a", "apple apple banana"), Section("b", "banana cherry"))
    )
    # Documents after tokenization (title and keywords counted twice):
    # d0 = [a, a, apple, apple, banana] (the title "a" is a stopword -> dropped): apple x2, banana
    # d1 = [b, b, banana, cherry]: "b" is kept (not a stopword)
    d0 = {"apple": 2, "banana": 1}
    d1 = {"b": 2, "banana": 1, "cherry": 1}
    avg = (3 + 4) / 2

    def idf(df: int) -> float:
        return math.log((2 - df + 0.5) / (df + 0.5) + 1.0)

    def term(tf: int, length: int, df: int) -> float:
        return idf(df) * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * length / avg))

    expected0 = term(d0["apple"], 3, 1) + term(d0["banana"], 3, 2)
    expected1 = term(d1["banana"], 4, 2)
    got = knowledge.scores("apple banana")
    assert got == pytest.approx([expected0, expected1], rel=1e-12)


def test_retrieve_ranks_the_right_section_first(tmp_path: Path) -> None:
    knowledge = load_knowledge(write(tmp_path, POLICY))
    assert [s.title for s in knowledge.retrieve("my new card still hasn't arrived", k=1)] == [
        "Card delivery"
    ]
    assert knowledge.retrieve("how long does a refund take?", k=1)[0].title == "Refunds"
    assert knowledge.retrieve("what exchange rate do you use for currency?")[0].title == (
        "Exchange rates"
    )
    assert len(knowledge.retrieve("card refund", k=2)) == 2
    assert knowledge.retrieve("the and of") == []  # only stopwords: nothing matches
    with pytest.raises(ValueError):
        knowledge.retrieve("card", k=0)


def test_build_messages_grounds_the_system_prompt(tmp_path: Path) -> None:
    knowledge = load_knowledge(write(tmp_path, POLICY))
    turns = [
        ("customer", "Hi, my card hasn't arrived yet."),
        ("assistant", "Sorry to hear that. When did you order it?"),
        ("customer", "Twelve days ago, what now?"),
    ]
    messages = build_messages(knowledge, turns, k=1)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in messages[1:]] == [text for _, text in turns]
    system = messages[0]["content"]
    assert "customer-service agent of Acme Bank" in system
    assert "2-3 short sentences" in system
    assert "only the policy excerpts" in system
    assert "human" in system
    # The follow-up alone says nothing about cards: the previous customer turn finds the topic.
    assert "### Card delivery" in system and "cancel it and send a new one" in system
    assert "Refunds" not in system


def test_build_messages_without_a_match_and_with_an_operator(tmp_path: Path) -> None:
    knowledge = load_knowledge(write(tmp_path, POLICY))
    messages = build_messages(
        knowledge,
        [("customer", "Do you sell bicycles?"), ("operator", "Let me check.")],
        company="Acme Europe",
    )
    assert "agent of Acme Europe" in messages[0]["content"]
    assert "no policy excerpt matches" in messages[0]["content"]
    assert messages[2] == {"role": "assistant", "content": "Let me check."}
    with pytest.raises(ValueError, match="unknown speaker 'system'"):
        build_messages(knowledge, [("system", "x")])
    with pytest.raises(ValueError):
        build_messages(knowledge, [])
