"""Intent figures with the handoff applied as serving applies it (`bundle_runtime.intents`)."""

from __future__ import annotations

import pytest

from bundle_runtime.intents import as_served, scores


def test_with_out_of_scope_rows_a_handed_off_message_counts_as_out_of_scope() -> None:
    predicted = ["refund", "refund", "oos", "track", "track"]
    confidence = [0.9, 0.3, 0.8, 0.95, 0.4]
    gold = ["refund", "oos", "oos", "track", "refund"]
    served, handoff = as_served(
        predicted, confidence, gold, threshold=0.5, oos="oos", counts_as_oos="oos"
    )
    assert served == ["refund", "oos", "oos", "track", "oos"]
    assert handoff == {"threshold": 0.5, "share": 0.6, "answered_accuracy": 1.0}
    figures = scores(served, gold)
    assert figures["oos_recall"] == 1.0 and figures["in_scope_accuracy"] == pytest.approx(2 / 3)
    # The classifier alone would have answered both low-confidence messages.
    assert scores(predicted, gold)["oos_recall"] == 0.5


def test_without_out_of_scope_rows_the_accuracy_stays_the_classifiers() -> None:
    predicted, gold = ["a", "b", "b"], ["a", "b", "a"]
    served, handoff = as_served(
        predicted, [0.9, 0.2, 0.6], gold, threshold=0.5, oos=None, counts_as_oos=None
    )
    assert served == predicted
    assert handoff == {"threshold": 0.5, "share": pytest.approx(1 / 3, abs=1e-4),
                       "answered_accuracy": 0.5}  # fmt: skip
    nothing_answered = as_served(["a"], [0.1], ["a"], threshold=0.5, oos=None, counts_as_oos=None)
    assert nothing_answered[1]["answered_accuracy"] is None
