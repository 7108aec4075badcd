"""Data loading and building: formats, line-numbered errors, splits, prompts, the decoder
vocabulary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bundle_runtime.vocab import build_decoder_vocab
from distill_worker.data.building import (
    ReplyQuota,
    sample_prompts,
    stratified_split,
    wanted_prompts,
)
from distill_worker.data.demo_corpus import OOS, demo_intents, demo_knowledge_path, demo_utterances
from distill_worker.data.loaders import DataError, Utterance, load_utterances
from distill_worker.prepare_steps import teacher_prompts
from distill_worker.run_config import RunConfig
from distill_worker.teacher.grounding import load_knowledge

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_banking77_csv_loads() -> None:
    rows = load_utterances(SHARED / "banking77" / "train.csv")
    assert len(rows) == 10003
    assert len({r.intent for r in rows}) == 77
    assert rows[0] == Utterance(text="I am still waiting on my card?", intent="card_arrival")


def test_clinc150_splits_include_oos() -> None:
    path = SHARED / "clinc150" / "data_full.json"
    train = load_utterances(path, split="train")
    val = load_utterances(path, split="val")
    assert (len(train), len(val)) == (15100, 3100)
    assert Counter(r.intent for r in val)["oos"] == 100
    with pytest.raises(DataError, match="no split 'test'"):
        load_utterances(path, split="test")


def test_jsonl_with_context_and_reply(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [
        {
            "text": "and the refund?",
            "intent": "refund_status",
            "reply": "Within 5 days.",
            "context": [
                {"role": "customer", "text": "I sent it back"},
                {"role": "assistant", "text": "Thanks, we got it."},
            ],
        },
        {"text": "hi"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    rows = load_utterances(path)
    assert rows[0].turns() == [
        ("customer", "I sent it back"),
        ("assistant", "Thanks, we got it."),
        ("customer", "and the refund?"),
    ]
    assert rows[0].reply == "Within 5 days." and rows[1].intent is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "text,category\nhello,greet\n,greet\n", r"bad.csv:3: empty text"),
        ("bad.csv", "words,category\nhello,greet\n", r"bad.csv:1: no text column"),
        ("bad.csv", "text,category\nhello,greet,extra\n", r"bad.csv:2: more fields"),
        ("bad.jsonl", '{"text": "a"}\n{oops}\n', r"bad.jsonl:2: not valid JSON"),
        ("bad.jsonl", '{"text": "a"}\n[1, 2]\n', r"bad.jsonl:2: each line must be a JSON object"),
        (
            "bad.jsonl",
            '{"text": "a", "context": [{"role": "bot", "text": "x"}]}\n',
            r"bad.jsonl:1: context\[0\] must be",
        ),
        ("bad.json", '{"train": [["a", "x"], ["b"]]}', r"train\[1\]: expected \[text, label\]"),
        ("bad.txt", "a\n", r"unknown format"),
        ("empty.csv", "text,category\n", r"no rows"),
    ],
)
def test_malformed_files_name_the_line_and_load_nothing(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_utterances(path)


def test_demo_corpus_is_deterministic_and_balanced() -> None:
    rows = demo_utterances(seed=3)
    assert rows == demo_utterances(seed=3)
    counts = Counter(r.intent for r in rows)
    assert set(counts) == set(demo_intents()) and OOS in counts
    assert min(counts.values()) == max(counts.values()) == 48
    assert len({r.text for r in rows}) == len(rows)
    knowledge = load_knowledge(demo_knowledge_path())
    assert knowledge.retrieve("where is my refund", k=1)[0].title == "Refunds"


def test_stratified_split_holds_out_every_intent() -> None:
    rows = [Utterance(text=f"{i} {k}", intent=k) for k in ("a", "b", "c") for i in range(20)]
    train, dev = stratified_split(rows, 0.1, seed=0)
    assert Counter(r.intent for r in dev) == {"a": 2, "b": 2, "c": 2}
    assert len(train) == 54 and not {r.text for r in train} & {r.text for r in dev}
    assert stratified_split(rows, 0.1, seed=0) == (train, dev)


def test_sample_prompts_round_robin_over_intents() -> None:
    rows = [Utterance(text=f"{k} {i}", intent=k) for k in ("a", "b") for i in range(10)]
    rows += [Utterance(text="a 1", intent="a")]  # duplicate text is skipped
    chosen = sample_prompts(rows, 6, seed=0)
    assert Counter(r.intent for r in chosen) == {"a": 3, "b": 3}
    assert len({r.text for r in chosen}) == 6


def test_reply_quota_is_a_share_of_each_intent_with_a_floor() -> None:
    quota = ReplyQuota(floor=4, share=0.05)
    assert [quota.of(n) for n in (0, 2, 4, 10, 80, 81, 200)] == [0, 2, 4, 4, 4, 5, 10]
    # a large intent and a small one: the large one gets its share, the small one the floor
    rows = [Utterance(text=f"big {i}", intent="big") for i in range(200)]
    rows += [Utterance(text=f"small {i}", intent="small") for i in range(6)]
    chosen = sample_prompts(rows, 1000, seed=0, quota=quota)
    assert Counter(r.intent for r in chosen) == {"big": 10, "small": 4}
    assert wanted_prompts(rows, 0, quota) == 14
    # the budget is a ceiling: round robin under it, still within each quota
    capped = sample_prompts(rows, 6, seed=0, quota=quota)
    assert Counter(r.intent for r in capped) == {"big": 3, "small": 3}
    # one priority order: what a lower ceiling takes is what a higher one takes first
    assert {r.text for r in capped} < {r.text for r in chosen}


def test_the_run_asks_each_intent_its_quota_under_the_ceiling() -> None:
    rows = [Utterance(text=f"{k} {i}", intent=k) for k in ("a", "b", "c") for i in range(50)]
    prompts, wanted, how = teacher_prompts(rows, RunConfig(), seed=0)
    assert len(prompts) == wanted == 12 and "at least 4" in how  # 3% of 50 is under the floor
    prompts, wanted, how = teacher_prompts(rows, RunConfig(reply_share=0.1), seed=0)
    assert len(prompts) == wanted == 15
    prompts, wanted, how = teacher_prompts(rows, RunConfig(reply_budget=7), seed=0)
    assert len(prompts) == 7 and wanted == 12 and "cut by --reply-budget 7" in how
    prompts, wanted, how = teacher_prompts(rows, RunConfig(reply_budget=0), seed=0)
    assert prompts == [] and "the teacher writes none" in how


def test_decoder_vocab_keeps_specials_replies_and_teacher_alternatives() -> None:
    vocab = build_decoder_vocab([2, 1, 2], [[10, 11, 10], [12]], [[[10, 50, 51]], [[51, 52]]])
    assert vocab.ids[:2] == (2, 1)
    assert set(vocab.ids) == {1, 2, 10, 11, 12, 50, 51, 52}
    student = vocab.to_student([10, 12, 2])
    assert vocab.to_responder(student) == [10, 12, 2]
    mapped = vocab.map_topk([([10, 99, 51], [-0.1, -2.0, -3.0])])
    assert mapped == [([vocab.index()[10], vocab.index()[51]], [-0.1, -3.0])]
    with pytest.raises(ValueError, match="do not fit"):
        build_decoder_vocab([0], [[1, 2, 3]], limit=2)


def test_approved_seeds_are_the_central_reference_reply_without_raw_slots() -> None:
    from distill_worker.data.approved_seeds import central_replies

    rows = [
        Utterance("where is it", "track", "Your parcel ships in two days. Track it in the app."),
        Utterance("where is my box", "track", "Your parcel ships in two days."),
        Utterance("tracking?", "track", "Track your parcel in the app or on our website."),
        Utterance("status", "track", "Weather is nice."),
        Utterance("liked", "track", "A rated reply of the bot.", reward=1.0),
        Utterance("refund", "refund", "Go to {{Order Details}} on {{Website Name}}."),
        Utterance("money back", "refund", "Open {{Order History}} on our {{Website Name}}."),
        Utterance("weather", "oos", "I can only help with orders."),
        Utterance("cancel 732201349959", "cancel", "Order 732201349959 is cancelled."),
    ]
    seeds = central_replies(rows, oos_label="oos")
    # No seed for the out-of-scope label, nor from a reply with one customer's order number.
    assert set(seeds) == {"track", "refund"}
    assert seeds["track"] == "Your parcel ships in two days. Track it in the app."
    assert "{{" not in seeds["refund"] and "website" in seeds["refund"]


def test_demo_replies_state_the_policy_files_facts() -> None:
    from distill_worker.data.demo_corpus import REPLIES_PER_INTENT, demo_reply

    rows = demo_utterances(seed=1, per_intent=20, with_replies=True)
    answered = [r for r in rows if r.reply]
    assert all(r.reply == demo_reply(r.intent or "") for r in answered)
    intents = {r.intent for r in rows}
    assert len(answered) == REPLIES_PER_INTENT * len(intents)
    policy = demo_knowledge_path().read_text(encoding="utf-8")
    for fact in ("30 days", "9.90 euros", "Account > Privacy > Delete account", "15 minutes"):
        assert fact in policy and any(fact in r.reply for r in rows if r.reply)
    assert demo_utterances(seed=1, per_intent=4)[0].reply is None  # replies on request only
