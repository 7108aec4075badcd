"""Unlabelled customer messages as stage 1 KD rows (`RunConfig.unlabelled_corpus`), on the real
public sets in ../shared/data: BANKING77 as the customer's labelled data, CLINC150's banking
questions as the messages nobody labelled."""

from __future__ import annotations

import json
from pathlib import Path

from distill_worker.data.building import SourceTokenizer, intent_examples, stratified_split
from distill_worker.data.loaders import Utterance, load_utterances
from distill_worker.data.run_corpora import UNLABELLED_ROWS, unlabelled_messages
from distill_worker.run_state import RunData
from distill_worker.teacher.encoder import locate_minilm

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _clinc_banking(tmp_path: Path, extra: list[dict[str, str]]) -> Path:
    """CLINC150's train questions of its banking domain (labels kept in the file: the run must
    drop them), with `extra` rows first."""
    full = json.loads((DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    banking = set(json.loads((DATA / "clinc150" / "domains.json").read_text())["banking"])
    rows = [*extra, *({"text": t, "intent": i} for t, i in full["train"] if i in banking)]
    out = tmp_path / "unlabelled.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def test_messages_lose_their_labels_and_never_repeat_a_train_or_held_out_row(
    tmp_path: Path,
) -> None:
    rows = load_utterances(DATA / "banking77" / "train.csv")[:3000]
    train, held_out = stratified_split(rows, 0.1, 0)
    path = _clinc_banking(
        tmp_path,
        [
            {"text": train[0].text.upper(), "intent": "x"},  # a train row (case aside)
            {"text": held_out[0].text, "intent": "x"},  # a held-out row
            {"text": held_out[1].text + " please", "intent": "x"},  # close to one
        ],
    )
    logged: list[str] = []
    kept = unlabelled_messages(str(path), train, held_out, 3, logged.append)
    texts = [r.text for r in kept]
    assert all(r.intent is None for r in kept)
    assert 1000 < len(kept) <= 1500  # CLINC150 has 1,500 banking train questions
    lowered = {t.lower() for t in texts}
    assert not lowered & {r.text.lower() for r in [*train, *held_out]}
    assert held_out[1].text + " please" not in texts
    assert len(lowered) == len(texts)
    assert "unlabelled messages for stage 1 KD" in logged[0] and str(len(kept)) in logged[0]
    assert unlabelled_messages(str(path), train, held_out, 3, logged.append) == kept  # seeded
    assert unlabelled_messages(None, train, held_out, 3, logged.append) == []
    assert UNLABELLED_ROWS >= 10_000


def test_stage1_rows_carry_them_as_kd_only_examples(tmp_path: Path) -> None:
    train = [
        Utterance(text="what is my card's balance", intent="balance"),
        Utterance(text="my card was stolen", intent="lost_card"),
    ]
    unlabelled = [Utterance(text="how much money is left on my account")]
    data = RunData(
        train=train,
        dev=[],
        labels=["balance", "lost_card"],
        oos_label=None,
        adversarial={},
        champion=None,
        warm_start_skipped=None,
        unlabelled=unlabelled,
    )
    assert data.stage1_rows == [*train, *unlabelled]
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=32, context_turns=0)
    examples = intent_examples(data.stage1_rows, data.labels, source, None)
    assert [e.label for e in examples] == [0, 1, -1]
