"""The quickstart stores its demo corpus as seed data, so the loop's first snapshot holds every
intent the quickstart student knows (a run from feedback alone would forget them)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from distill_worker.cli import _seed_demo_corpus
from distill_worker.data.demo_corpus import demo_utterances
from distill_worker.data.snapshots import create_snapshot, load_snapshot


def test_the_demo_corpus_becomes_seed_data_once(db: Session, tmp_path: Path) -> None:
    rows = demo_utterances(seed=0, with_replies=True)
    assert _seed_demo_corpus(db, 0) == len({(r.text, r.intent, r.reply) for r in rows})
    assert _seed_demo_corpus(db, 0) == 0  # a second quickstart adds nothing
    info = create_snapshot(db, tmp_path / "snapshots", run_id=None)
    train, heldout = load_snapshot(info.path)
    assert {r.intent for r in [*train, *heldout]} == {r.intent for r in rows}
    assert heldout and all(r.intent for r in heldout)
    # The shop's reference replies come along: the loop's runs learn from them too.
    replied = {r.intent for r in [*train, *heldout] if r.reply}
    assert replied == {r.intent for r in rows}
