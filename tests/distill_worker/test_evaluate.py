"""Evaluation metrics on hand-computed values, and the student helpers."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch", reason="evaluation needs the `train` extra (torch)")

from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.evaluate import (  # noqa: E402
    chrf,
    corpus_chrf,
    generate_replies,
    intent_metrics,
    measure_latency,
    predict_intents,
    reply_latency,
    rouge_l,
)

torch.set_num_threads(1)
LABELS = ["order", "refund", "oos"]


def test_intent_metrics_known_values() -> None:
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    m = intent_metrics(pred, gold, LABELS, oos_label="oos")
    assert m["accuracy"] == pytest.approx(4 / 6)
    # order P 1/2 R 1/2 F 1/2; refund P 2/3 R 1 F 4/5; oos P 1 R 1/2 F 2/3
    assert m["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert m["oos_recall"] == pytest.approx(1 / 2)
    assert m["oos_precision"] == pytest.approx(1.0)
    assert m["in_scope_accuracy"] == pytest.approx(3 / 4)


def test_intent_metrics_macro_f1_only_over_gold_classes_and_undefined_oos() -> None:
    m = intent_metrics([0, 0, 2], [0, 0, 0], LABELS, oos_label="oos")
    assert m["macro_f1"] == pytest.approx(0.8)  # class 0 only: P 1, R 2/3
    assert m["oos_recall"] is None and m["oos_precision"] == 0.0
    plain = intent_metrics([1, 1], [1, 0], LABELS)
    assert "oos_recall" not in plain and plain["in_scope_accuracy"] == plain["accuracy"] == 0.5
    with pytest.raises(ValueError):
        intent_metrics([0], [0], LABELS, oos_label="nope")
    with pytest.raises(ValueError):
        intent_metrics([], [], LABELS)


def test_chrf_hand_computed() -> None:
    assert chrf("same text", "same text") == pytest.approx(100.0)
    assert chrf("a b", "ab") == pytest.approx(100.0)  # whitespace is removed
    # abc vs abd: 1-grams 2/3, 2-grams 1/2, 3-grams 0 (orders 4..6 too long): P = R = 7/18
    assert chrf("abc", "abd") == pytest.approx(100 * 7 / 18)
    # ab vs abc: P = (1 + 1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12; F2 = 5PR / (4P + R) = 7/11
    assert chrf("ab", "abc") == pytest.approx(100 * 7 / 11)
    assert chrf("", "abc") == 0.0 and chrf("xyz", "abc") == 0.0


def test_chrf_matches_sacrebleu_published_examples() -> None:
    hyp = "The relationship between Obama and Netanyahu is not exactly friendly."
    ref = "The ties between Obama and Netanyahu are not particularly friendly."
    assert chrf(hyp, ref) == pytest.approx(61.576379378113785, abs=1e-9)
    hyps = [
        "The relationship between cats and dogs is not exactly friendly.",
        "a good bookshop is just a genteel black hole that knows how to read.",
    ]
    refs = [
        "The relationship between dogs and cats is not exactly friendly.",
        "A good bookshop is just a genteel Black Hole that knows how to read.",
    ]
    assert corpus_chrf(hyps, refs) == pytest.approx(84.64214891738334, abs=1e-9)


def test_rouge_l_hand_computed() -> None:
    # LCS "the cat on the mat" = 5: P 5/6, R 1, F1 10/11
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)
    assert rouge_l("", "a") == 0.0 and rouge_l("x", "y") == 0.0


def tiny_student() -> Student:
    torch.manual_seed(0)
    cfg = StudentConfig(
        n_intents=3, enc_vocab_size=50, enc_hidden=32, enc_heads=2, enc_layers=1, enc_ffn=64,
        dec_vocab_size=60, dec_hidden=32, dec_heads=2, dec_layers=1, dec_ffn=64,
        dec_max_positions=32, dropout=0.1,
    )  # fmt: skip
    return Student(cfg)


def test_predict_intents_and_generate_replies_use_eval_mode() -> None:
    student = tiny_student()
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    preds, conf = predict_intents(student, [(ids, mask), (ids[:1], mask[:1])])
    assert len(preds) == 3 and preds[0] == preds[2] and all(0 < c <= 1 for c in conf)
    assert conf[0] == pytest.approx(conf[2], abs=1e-6)  # no dropout noise
    assert student.training  # the mode is given back
    replies = generate_replies(student, [[1, 5, 6, 2], [1, 7, 2]], max_new_tokens=5, batch_size=1)
    student.eval()
    assert replies[0] == student.generate(ids[:1], mask[:1], 5)[0]
    assert all(len(r) <= 5 for r in replies)


def test_measure_latency_median_and_p95() -> None:
    durations = [float(d) for d in range(1, 21)]  # ms
    ticks = itertools.chain.from_iterable((0.0, d / 1000.0) for d in durations)
    calls: list[int] = []
    out = measure_latency(lambda: calls.append(1), runs=20, warmup=3, clock=lambda: next(ticks))
    assert len(calls) == 23
    assert out["median_ms"] == pytest.approx(10.5)
    assert out["p95_ms"] == pytest.approx(19.05)  # 0.95 * 19 = 18.05 between 19 and 20
    assert out["mean_ms"] == pytest.approx(10.5)


def test_reply_latency_runs_at_batch_one() -> None:
    out = reply_latency(tiny_student(), [1, 5, 2], max_new_tokens=3, runs=3, warmup=1)
    assert 0 < out["median_ms"] <= out["p95_ms"]
