"""Ratings -> reward: the AUC measure, rated and rejected replies in stage-2 data, and the
held-back scoring the reward bench uses (reward logits, reply log-probabilities). That the
reward head learns from real ratings is test_reward_learns.py (STAR, held-back AUC)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from distill_worker.data.building import SourceTokenizer, intents_with_references, reply_examples
from distill_worker.data.examples import ReplyExample
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.decoder_stage import collate_replies
from distill_worker.stages.reward_eval import reply_logprobs, reward_scores, roc_auc
from distill_worker.teacher.encoder import locate_minilm


def _pairwise_auc(scores: list[float], labels: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y >= 0.5]
    neg = [s for s, y in zip(scores, labels, strict=True) if y < 0.5]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_the_pairwise_definition_with_ties() -> None:
    rng = random.Random(0)
    for _ in range(20):
        scores = [float(rng.randint(0, 5)) for _ in range(30)]  # many ties
        labels = [float(rng.random() < 0.4) for _ in range(30)]
        if 0 < sum(labels) < 30:
            assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0 and roc_auc([0.9, 0.1], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="good and one bad"):
        roc_auc([0.1, 0.2], [1, 1])


def test_rated_and_rejected_replies_become_weighted_and_negative_examples() -> None:
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=64, context_turns=4)
    rows = [
        Utterance("where is my order", reply="it ships today", reward=1.0),
        Utterance("cancel it", reply="sure, cancelled", reward=0.0),
        Utterance("refund please", reply="refund issued", rejected="we sell shoes"),
        Utterance("hi", reply="hello! how can I help?"),  # a reference (not rated)
    ]
    examples = reply_examples(
        [],
        rows,
        source,
        lambda t: [len(w) for w in t.split()],
        eos_id=2,
        max_reply_tokens=8,
        seed=0,
    )
    got = [(e.source, e.weight, e.reward_label, e.reply_ids) for e in examples]
    assert got == [
        ("rated", 1.0, 1.0, [2, 5, 5]),
        ("rated", 0.0, 0.0, [5, 9]),  # rated bad: reward-head negative, never imitated
        ("reference", 1.0, 1.0, [6, 6]),
        ("reference", 1.0, 1.0, [6, 3, 3, 1, 5]),
        ("negative", 0.0, 0.0, [2, 4, 5]),  # the reply an operator replaced
    ]


def test_each_reference_gets_another_intents_reply_as_a_reward_negative() -> None:
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=64, context_turns=4)
    rows = [
        Utterance("where is my order", intent="track", reply="it ships today"),
        Utterance("where is it", intent="track", reply="it ships today"),
        Utterance("cancel it", intent="cancel", reply="cancelled for you"),
        Utterance("stop my order", intent="cancel", reply="cancelled", reward=1.0),  # rated
    ]
    examples = reply_examples(
        [], rows, source, lambda t: [len(w) for w in t.split()], eos_id=2, max_reply_tokens=8,
        seed=0,
    )  # fmt: skip
    got = [(e.source, e.weight, e.reward_label, e.reply_ids) for e in examples]
    assert got == [
        ("reference", 1.0, 1.0, [2, 5, 5]),
        ("negative", 0.0, 0.0, [9, 3, 3]),  # "cancelled for you" for a tracking question
        ("reference", 1.0, 1.0, [2, 5, 5]),
        ("negative", 0.0, 0.0, [9, 3, 3]),
        ("reference", 1.0, 1.0, [9, 3, 3]),
        ("negative", 0.0, 0.0, [2, 5, 5]),
        ("rated", 1.0, 1.0, [9]),  # a rated reply is its own signal: no negative
    ]


def test_intents_with_enough_references_are_found() -> None:
    rows = [
        Utterance("a", intent="track", reply="r"),
        Utterance("b", intent="track", reply="r"),
        Utterance("c", intent="cancel", reply="r"),
        Utterance("d", intent="cancel", reply="r", reward=1.0),  # rated: not a reference
        Utterance("e", intent="refund"),
    ]
    assert intents_with_references(rows, 2) == {"track"}
    assert intents_with_references(rows, 1) == {"track", "cancel"}
    assert intents_with_references(rows, 0) == set()


def test_reward_scores_and_reply_logprobs_match_the_student_forward() -> None:
    torch.manual_seed(0)
    cfg = StudentConfig(
        n_intents=2,
        enc_vocab_size=30,
        enc_layers=1,
        enc_hidden=32,
        enc_heads=2,
        enc_ffn=64,
        dec_vocab_size=12,
        dec_hidden=16,
        dec_heads=2,
        dec_ffn=32,
        dec_layers=1,
        dec_bos_id=1,
        dec_eos_id=2,
        dec_pad_id=0,
    )
    student = Student(cfg).train()
    examples = [
        ReplyExample(input_ids=[3, 4 + i, 5], reply_ids=[5 + i % 4, 6], reward_label=float(i % 2))
        for i in range(7)
    ]
    scores = reward_scores(student, examples, max_source=8, max_reply=4, batch=3)
    logps = reply_logprobs(student, examples, max_source=8, max_reply=4, batch=3)
    assert student.training  # given back in the mode it came in
    student.eval()
    b = collate_replies(examples, 8, 4, 1, 2, 0)
    with torch.no_grad():
        out = student(b.input_ids, b.attention_mask, b.decoder_input_ids, b.decoder_mask)
        token = torch.log_softmax(out["logits"], dim=-1).gather(-1, b.targets[..., None])[..., 0]
        mean = (token * b.decoder_mask).sum(1) / b.decoder_mask.sum(1)
    assert scores == pytest.approx(out["reward"].tolist(), abs=1e-5)
    assert logps == pytest.approx(mean.tolist(), abs=1e-5)
