"""The reply token budget, from the data when the config leaves it at 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_worker.config import DistillConfig
from distill_worker.data.loaders import Utterance
from distill_worker.data.reply_length import FLOOR, reply_tokens_from_data


def _words(text: str) -> list[int]:
    return list(range(len(text.split())))


def _rows(lengths: list[int]) -> list[Utterance]:
    return [Utterance(text="q", intent="a", reply=" ".join(["w"] * n)) for n in lengths]


def test_long_references_get_their_95th_percentile_rounded_up_to_16() -> None:
    lengths = [100] * 90 + [150] * 5 + [400] * 5  # p95: 150
    tokens, how = reply_tokens_from_data(_rows(lengths), _words, ceiling=255)
    assert tokens == 160 and how["quantile_tokens"] == 150 and how["median_tokens"] == 100
    assert how["cut_share"] == 0.05 and how["from"] == "p95 of 100 reference replies"


def test_short_or_missing_references_keep_the_floor_and_the_decoder_caps_it() -> None:
    assert reply_tokens_from_data(_rows([5, 9, 12]), _words, ceiling=255)[0] == FLOOR
    tokens, how = reply_tokens_from_data([Utterance(text="q", intent="a")], _words, ceiling=255)
    assert tokens == FLOOR and how["from"].startswith("floor")
    assert reply_tokens_from_data(_rows([600] * 10), _words, ceiling=255)[0] == 255


def test_the_config_takes_0_for_from_the_data_and_refuses_negatives() -> None:
    assert DistillConfig().max_reply_tokens == 0
    assert DistillConfig(max_reply_tokens=48).max_reply_tokens == 48
    with pytest.raises(ValueError, match="max_reply_tokens must be an integer >= 0"):
        DistillConfig(max_reply_tokens=-1)


@pytest.mark.slow
def test_a_run_left_at_0_takes_its_budget_from_the_reference_replies(
    responder_dir: Path, tmp_path: Path
) -> None:
    from distill_worker.prepare_steps import resolve_reply_tokens
    from distill_worker.run_config import RunConfig
    from distill_worker.run_request import DistillRequest
    from distill_worker.run_state import RunData

    reply = "Thank you for reaching out about your order, we are glad to help you today. " * 8
    rows = [Utterance(text=f"question {i}", intent="ab"[i % 2], reply=reply) for i in range(20)]
    data = RunData(
        train=rows, dev=[], labels=["a", "b"], oos_label=None, adversarial={}, champion=None,
        warm_start_skipped=None,
    )  # fmt: skip
    req = DistillRequest(
        out_dir=tmp_path / "b", work_dir=tmp_path / "w", responder_dir=responder_dir,
        config=RunConfig(),
    )  # fmt: skip
    logs: list[str] = []
    resolved = resolve_reply_tokens(req, data, logs.append)
    tokens = resolved.config.distill.max_reply_tokens
    assert tokens % 16 == 0 and 128 <= tokens <= 255  # about 16 tokens a sentence, 8 sentences
    assert data.reply_length["tokens"] == tokens and data.reply_length["cut_share"] == 0.0
    assert resolved.config.distill.stage2_epochs == req.config.distill.stage2_epochs
    assert logs == [f"      replies: up to {tokens} tokens (p95 of 20 reference replies)"]
    # A config that sets it keeps it.
    fixed = DistillRequest(**{**req.__dict__, "config": RunConfig().with_changes(
        distill={"max_reply_tokens": 32})})  # fmt: skip
    assert resolve_reply_tokens(fixed, data, logs.append) is fixed
