"""The promotion gate's rules over two evaluations (pure logic)."""

from __future__ import annotations

from distill_worker.loop.gate import judge
from feedback.loop_settings import GateSettings

GATE = GateSettings(
    intent_accuracy_margin=0.01,
    oos_recall_margin=0.02,
    reply_chrf_margin=2.0,
    latency_budget_ms=100,
)
CHAMPION = {"intent_accuracy": 0.90, "oos_recall": 0.80, "reply_chrf": 40.0, "latency_p95_ms": 50.0}


def test_a_candidate_within_the_margins_and_budget_passes() -> None:
    candidate = {**CHAMPION, "intent_accuracy": 0.895, "reply_chrf": 38.5, "latency_p95_ms": 60.0}
    verdict = judge(candidate, CHAMPION, GATE)
    assert verdict.passed and verdict.reasons == []


def test_each_worse_figure_is_a_reason() -> None:
    candidate = {
        "intent_accuracy": 0.85,
        "oos_recall": 0.70,
        "reply_chrf": 30.0,
        "latency_p95_ms": 150.0,
    }
    verdict = judge(candidate, CHAMPION, GATE)
    assert not verdict.passed
    text = " | ".join(verdict.reasons)
    for part in (
        "intent accuracy 0.85",
        "out-of-scope recall 0.7",
        "reply chrF 30",
        "over the budget",
    ):
        assert part in text


def test_missing_figures_are_noted_not_compared_and_no_champion_needs_only_the_budget() -> None:
    candidate = {
        "intent_accuracy": 0.95,
        "oos_recall": None,
        "reply_chrf": None,
        "latency_p95_ms": 10.0,
    }
    verdict = judge(candidate, CHAMPION, GATE)
    assert verdict.passed and len(verdict.notes) == 3  # oos recall, chrF, degenerate replies
    first = judge({"latency_p95_ms": 10.0}, None, GATE)
    assert first.passed and "no champion" in first.notes[0]
    assert not judge({"latency_p95_ms": None}, None, GATE).passed


def test_a_compression_candidate_must_be_faster() -> None:
    same_speed = {**CHAMPION}
    verdict = judge(same_speed, CHAMPION, GATE, compression=True)
    assert not verdict.passed and "must be faster" in verdict.reasons[0]
    assert judge({**CHAMPION, "latency_p95_ms": 30.0}, CHAMPION, GATE, compression=True).passed


def test_on_a_small_split_one_row_behind_is_within_noise() -> None:
    # 40 held-out rows: one row is 0.025 of accuracy, more than the 0.01 margin.
    champion = {**CHAMPION, "rows": 40, "intent_accuracy": 0.9}
    one_row = {**champion, "intent_accuracy": 0.875}
    verdict = judge(one_row, champion, GATE)
    assert verdict.passed, verdict.reasons
    assert any("one row of 40" in note for note in verdict.notes)
    two_rows = {**champion, "intent_accuracy": 0.85}
    assert "intent accuracy 0.85" in judge(two_rows, champion, GATE).reasons[0]
    # A large split keeps the configured margin.
    big = {**CHAMPION, "rows": 1000}
    assert not judge({**big, "intent_accuracy": 0.885}, big, GATE).passed


def test_a_candidate_may_not_be_more_degenerate_than_the_champion() -> None:
    champion = {**CHAMPION, "degenerate_share": 0.05, "decoded_rows": 40}
    one_row_worse = {**champion, "degenerate_share": 0.075}  # 3 of 40 vs 2 of 40: noise
    assert judge(one_row_worse, champion, GATE).passed
    looping = {**champion, "degenerate_share": 0.25}
    verdict = judge(looping, champion, GATE)
    assert not verdict.passed
    assert verdict.reasons == ["degenerate replies 0.25 exceed the champion's 0.05 + 0.025"]
    unmeasured = judge({**CHAMPION, "degenerate_share": 0.5}, CHAMPION, GATE)
    assert unmeasured.passed and any(
        "degenerate replies not compared" in n for n in unmeasured.notes
    )
