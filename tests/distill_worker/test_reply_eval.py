"""`eval replies` scores what a customer reads: slots rephrased on every side, the guard's
choice as served, and the real teacher on the same rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")

from bundle_runtime.onnx_student import OnnxStudent
from distill_worker.data.loaders import Utterance
from distill_worker.stages.reply_eval import evaluate_replies, retrieval_replies, served
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.local import LocalResponder
from tests.fixtures.tiny_bundle import TOY, TinyBundle

SLOTTED = "Open {{Order Details}} on {{Website Name}} and enter {{Order Number}}."


def _rows() -> list[Utterance]:
    return [Utterance(text=t, intent=i, reply=r) for i, (texts, r) in TOY.items() for t in texts]


def test_the_baseline_answers_with_slots_rephrased_as_served() -> None:
    index = [Utterance(text="where is my order", intent="track_order", reply=SLOTTED)]
    (reply,) = retrieval_replies([Utterance(text="where is my order now")], index)
    assert reply == "Open Order Details on our website and enter your order number."


def test_references_are_scored_with_their_slots_rephrased(tiny_bundle: TinyBundle) -> None:
    from distill_worker.stages.evaluate import corpus_chrf

    raw = "your order is on its way to {{Delivery Address}}"
    rows = [replace(r, reply=raw) for r in _rows() if r.intent == "track_order"]
    report = evaluate_replies(tiny_bundle.path, rows, precision="fp32")
    assert report["scored_as"].startswith("references and baseline with template slots")
    rephrased = "your order is on its way to your delivery address"
    assert report["examples"][0]["reference"] == rephrased
    hyps = [e["student"] for e in report["examples"]]
    assert hyps[0] == "your order is on its way"
    as_read = corpus_chrf(hyps, [rephrased] * len(hyps))
    assert report["student"]["chrf"] == pytest.approx(as_read, abs=0.01)


def test_an_unfit_reply_is_scored_as_the_approved_answer_it_becomes(
    tiny_bundle: TinyBundle,
) -> None:
    student = OnnxStudent(tiny_bundle.path, precision="fp32")
    row = Utterance(text="i want a refund", intent="refund")
    answer = student.reply(row.turns())
    assert answer.intent == "refund" and answer.handoff_reason is None
    looping = replace(answer, text="refund refund refund refund refund")
    decision = served(student, looping, row)
    assert decision.source == "approved" and decision.reason == "degenerate_repeats"
    assert decision.text == "We will refund you within five days."
    # A fit reply goes out as generated; an intent without a seed hands off.
    assert served(student, answer, row).source == "generated"
    unseeded = replace(looping, intent="track_order")
    assert served(student, unseeded, row).source == "handoff"
    # A number the student made up goes out as the customer's own (and is then no unsupported
    # figure), as the API sends it.
    ask = Utterance(text="i want a refund for order 3707955617", intent="refund")
    made_up = replace(answer, text="We will refund order 013842 within five days.")
    sent = served(student, made_up, ask)
    assert (sent.source, sent.text) == (
        "generated",
        "We will refund order 3707955617 within five days.",
    )


def test_served_figures_follow_the_guard(tiny_bundle: TinyBundle) -> None:
    report = evaluate_replies(tiny_bundle.path, _rows(), precision="fp32")
    served_figures, student = report["served"], report["student"]
    # The toy student answers every row with its right reply: nothing to replace.
    assert served_figures["fallback_share"] == 0.0 and served_figures["guard_reasons"] == {}
    handed_off = round(served_figures["handoff_share"] * len(_rows()))
    assert served_figures["answered"] == len(_rows()) - handed_off
    assert served_figures["chrf"] is not None and student["chrf"] > 95
    assert {e["served"] for e in report["examples"]} <= {"generated", "handoff"}


@pytest.mark.slow
def test_the_real_teacher_answers_the_same_rows(
    tiny_bundle: TinyBundle, responder_dir: Path, tmp_path: Path
) -> None:
    cache = TeacherCache.in_sqlite_file(tmp_path / "cache.db")
    try:
        report = evaluate_replies(
            tiny_bundle.path,
            _rows(),
            precision="fp32",
            teacher=(LocalResponder(responder_dir), 2, cache),
        )
        again = evaluate_replies(
            tiny_bundle.path,
            _rows(),
            precision="fp32",
            teacher=(LocalResponder(responder_dir), 2, cache),
        )
    finally:
        cache.close()
    side = report["same_rows_as_teacher"]
    assert side["rows"] == 2 and side["teacher_id"].startswith("local:")
    assert side["student"]["reference_rows"] == side["teacher"]["reference_rows"] == 2
    assert side["retrieval"]["reference_rows"] == 2
    # SmolLM2 writes its own sentences, not the toy's: it scores, but below the student that
    # learned the toy replies word for word.
    assert 0 < side["teacher"]["chrf"] < side["student"]["chrf"]
    assert all(e["teacher"] for e in side["examples"])
    assert again["same_rows_as_teacher"]["cache"]["hits"] == 2  # the replies were cached
    assert json.dumps(report)  # the report is plain JSON


def test_eval_replies_needs_a_prepared_teacher_for_teacher_rows(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    import os

    from tests.fixtures.cli import run

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    env["CHATDISTILL_DATA_DIR"] = str(tmp_path / "data")
    data = tmp_path / "toy.jsonl"
    data.write_text(
        "".join(json.dumps({"text": r.text, "intent": r.intent, "reply": r.reply}) + "\n"
                for r in _rows()),
        encoding="utf-8",
    )  # fmt: skip
    result = run(
        env, "eval", "replies", "--bundle", str(tiny_bundle.path), "--data", str(data),
        "--teacher", "2",
    )  # fmt: skip
    assert result.returncode != 0
    assert "chatdistill teacher prepare" in result.stderr
