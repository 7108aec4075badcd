"""The reward head learns something real from real ratings.

STAR's satisfaction answers (a dialogue's yes/no verdict on every one of its agent replies),
from ../shared/data, go through the real stage 2 (`DecoderStage`) on a small student whose
encoder layer starts from MiniLM's; the reward head's AUC on held-back conversations (split by
a stable hash of the dialogue id, so no dialogue is on both sides) must beat the same student
before training by a margin, and chance by more. The data preparation is the one
bench/reward_head.py uses (`distill_worker.stages.reward_data`); the bench has the full-size
figures and the Taskmaster-4 / objective ablation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_worker.config import DistillConfig
from distill_worker.data.importers.records import SeedRecord
from distill_worker.stages.decoder_stage import DecoderStage
from distill_worker.stages.reward_data import (
    build_reply_examples,
    rated_paths,
    rated_records,
    small_reward_student,
    split_by_conversation,
)
from distill_worker.stages.reward_eval import reward_scores, roc_auc

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
STAR = DATA / "star" / "dialogues.jsonl"
needs_star = pytest.mark.skipif(
    not STAR.is_file(), reason=f"STAR is not at {STAR}: the shared data folder is missing"
)


def test_split_by_conversation_keeps_each_dialogue_on_one_side() -> None:
    rows = [
        (f"c{c}", SeedRecord(text=f"c{c} turn {t}", reply=f"reply {t}", reward=float(c % 2)))
        for c in range(40)
        for t in range(5)
    ]
    train, held = split_by_conversation(rows, 0.25, 10_000, 10_000)
    assert len(train) + len(held) == 200
    train_convs = {u.text.split()[0] for u in train}
    held_convs = {u.text.split()[0] for u in held}
    assert train_convs and held_convs and not train_convs & held_convs
    assert 0.1 < len(held_convs) / 40 < 0.4  # about the fraction asked for
    again = split_by_conversation(list(reversed(rows)), 0.25, 10_000, 10_000)
    assert again == (train, held)  # a fixed, order-free sample
    with pytest.raises(ValueError, match="heldback_fraction"):
        split_by_conversation(rows, 1.0, 10, 10)


def test_rated_records_name_the_unknown_data_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'tm5' is unknown"):
        rated_records("tm5", tmp_path)


@needs_star
def test_star_records_are_rated_replies_by_dialogue() -> None:
    rows = rated_records("star", DATA)
    assert len(rows) > 1000
    assert {r.reward for _, r in rows} == {0.0, 1.0}
    assert all(conv.startswith("star:") and r.reply for conv, r in rows)
    by_dialogue: dict[str, set[float | None]] = {}
    for conv, r in rows:
        by_dialogue.setdefault(conv, set()).add(r.reward)
    assert all(len(v) == 1 for v in by_dialogue.values())  # one verdict per dialogue


@pytest.mark.parametrize(("name", "n_held", "floor"), [("star", 1500, 0.65), ("tm4", 700, 0.62)])
def test_reward_head_learns_real_ratings_in_stage_2(
    name: str, n_held: int, floor: float, tmp_path: Path
) -> None:
    """Measured on STAR (seeds 0/1/2, one thread): untrained 0.540/0.523/0.534, trained
    0.727/0.741/0.751, so at least +0.19 with a 0.03 spread across seeds; the assertions ask
    for about half that gain and a floor 0.08 under the lowest trained AUC. Taskmaster-4's
    rated agent actions in the same setting, 700 held-back pairs: 0.502 -> 0.670 and 0.515 ->
    0.679 (seeds 0/1), hence its lower floor.
    Stage 2 trains for 25-50 s on one shared core. The encoder stays frozen: training it at
    5e-5 took 6x as long for +0.01 AUC. bench/reward_head.py has both at full size."""
    if not rated_paths(name, DATA).exists():
        pytest.skip(f"{rated_paths(name, DATA)} is missing: the shared data folder is not there")
    max_source, max_reply = 48, 32
    train_rows, held_rows = split_by_conversation(rated_records(name, DATA), 0.25, 2000, n_held)
    train, held, enc_vocab, dec_vocab = build_reply_examples(
        train_rows, held_rows, max_source, max_reply
    )
    labels = [e.reward_label or 0.0 for e in held]
    assert len(train) == 2000 and len(held) == n_held
    assert 50 < labels.count(0.0) < n_held - 50  # enough of both verdicts held back for an AUC
    student = small_reward_student(enc_vocab, dec_vocab, enc_layers=1, seed=0)
    untrained = roc_auc(
        reward_scores(student, held, max_source=max_source, max_reply=max_reply), labels
    )
    config = DistillConfig(
        seed=0,
        max_source_tokens=max_source,
        max_reply_tokens=max_reply,
        enc_layers=1,
        stage2_epochs=3,
        stage2_batch_size=32,
        stage2_lr=1e-3,
        stage2_encoder_lr=0.0,  # frozen MiniLM layer
        token_kd_weight=0.0,
        seq_kd_weight=0.3,
        reward_weight=3.0,
        checkpoint_every=10_000,
    )
    stage = DecoderStage(student, config, train, tmp_path / "log.jsonl", tmp_path / "ckpt")
    stage.setup()
    metrics = stage.train()
    stage.cleanup()
    trained = roc_auc(
        reward_scores(student, held, max_source=max_source, max_reply=max_reply), labels
    )
    assert metrics["completed"] and not metrics["stopped_early"]  # every epoch ran
    assert trained >= untrained + 0.1, (untrained, trained)
    assert trained >= floor, (untrained, trained)
