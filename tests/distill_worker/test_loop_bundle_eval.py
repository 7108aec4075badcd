"""The gate's evaluator runs a bundle through ONNX Runtime on its own (no chat_api): its intents
and greedy replies match the torch student the bundle was exported from."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the tiny bundle needs the `train` extra (torch)")

from tokenizers import Tokenizer  # noqa: E402

from distill_worker.data.loaders import Utterance  # noqa: E402
from distill_worker.loop.bundle_eval import BundleEvaluator, evaluate_bundle  # noqa: E402
from distill_worker.stages.evaluate import generate_replies  # noqa: E402
from tests.fixtures.tiny_bundle import INTENTS, TOY, TinyBundle  # noqa: E402


def test_intents_and_replies_match_the_torch_student(tiny_bundle: TinyBundle) -> None:
    evaluator = BundleEvaluator(tiny_bundle.path, precision="fp32")
    decoder = Tokenizer.from_file(str(tiny_bundle.path / "decoder_tokenizer.json"))
    texts = [text for texts, _ in TOY.values() for text in texts]
    expected = generate_replies(tiny_bundle.student, tiny_bundle.samples, 16)
    for text, sample_tokens, label in zip(texts, expected, tiny_bundle.labels, strict=True):
        turns = [("customer", text)]
        assert evaluator.intent(turns) == INTENTS[label]
        assert evaluator.reply(turns) == decoder.decode(sample_tokens, skip_special_tokens=True)


def test_evaluate_bundle_reports_the_gate_figures(tiny_bundle: TinyBundle) -> None:
    rows = [
        Utterance(text=text, intent=intent, reply=reply)
        for intent, (texts, reply) in TOY.items()
        for text in texts
    ]
    wrong = Utterance(text=rows[0].text, intent="refund" if rows[0].intent != "refund" else "x")
    figures = evaluate_bundle(tiny_bundle.path, [*rows, wrong], max_replies=4)
    assert figures["model_version"] == "tiny-1" and figures["precision"] == "int8"
    assert figures["rows"] == len(rows) + 1
    assert figures["intent_accuracy"] < 1.0  # the relabelled row is wrong
    assert figures["oos_rows"] == len(TOY["out_of_scope"][0]) and figures["oos_recall"] == 1.0
    assert figures["reply_rows"] == 4 and figures["reply_chrf"] is not None
    assert 0 < figures["latency_median_ms"] <= figures["latency_p95_ms"]


def test_rated_student_replies_are_not_reply_references(tiny_bundle: TinyBundle) -> None:
    # A thumbs-up reply in the store is the champion's own output: scoring candidates against it
    # would favour the champion, so only reference replies (reward None) count for chrF.
    rated = [
        Utterance(text=text, intent=intent, reply=reply, reward=1.0)
        for intent, (texts, reply) in TOY.items()
        for text in texts
    ]
    figures = evaluate_bundle(tiny_bundle.path, rated, max_replies=4)
    assert figures["reply_rows"] == 0 and figures["reply_chrf"] is None
    reference = Utterance(text=rated[0].text, intent=rated[0].intent, reply=rated[0].reply)
    figures = evaluate_bundle(tiny_bundle.path, [*rated, reference], max_replies=4)
    assert figures["reply_rows"] == 1 and figures["reply_chrf"] is not None
