"""The out-of-domain corpus, built from the real public sets in ../shared/data, and its use as
handoff negatives (never training rows)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill_worker.data.loaders import DataError, Utterance, load_utterances
from distill_worker.data.ood_corpus import build_ood_corpus, drop_near
from tests.fixtures.cli import run

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_built_from_every_set_with_its_domains_and_exclusions() -> None:
    rows = build_ood_corpus(DATA, per_group=3, seed=0)
    sources = Counter(row["source"].split(":", 1)[0] for row in rows)
    assert set(sources) == {"clinc150", "hwu64", "banking77"}
    # 3 rows a group: CLINC150's 150 intents, HWU64's 64, BANKING77's 77 (grouped by intent).
    assert sources["clinc150"] == 150 * 3 and sources["banking77"] == 77 * 3
    assert "clinc150:travel" in {row["source"] for row in rows}
    assert rows == build_ood_corpus(DATA, per_group=3, seed=0)  # seeded
    banking = build_ood_corpus(
        DATA, per_group=3, exclude=["banking77", "clinc150:banking", "clinc150:credit_cards"]
    )
    kept = {row["source"] for row in banking}
    assert "banking77" not in kept and "clinc150:banking" not in kept
    assert "clinc150:credit_cards" not in kept and "clinc150:travel" in kept
    with pytest.raises(DataError, match="unknown sources"):
        build_ood_corpus(DATA, exclude=["imdb"])
    with pytest.raises(DataError, match="none of"):
        build_ood_corpus(DATA / "nothing-here")


def test_rows_close_to_the_customers_own_are_dropped() -> None:
    train = [Utterance(text="I want to cancel my order", intent="cancel")]
    ood = [
        Utterance(text="I want to cancel my order"),  # the customer's subject: not a negative
        Utterance(text="what's the weather like in Lisbon tomorrow"),
    ]
    assert [r.text for r in drop_near(ood, train)] == ["what's the weather like in Lisbon tomorrow"]


def test_the_command_writes_a_file_every_loader_reads(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    out = tmp_path / "ood.jsonl"
    args = ["ood-corpus", "--data-root", str(DATA), "--out", str(out), "--per-intent", "2"]
    done = run(sqlite_env, *args, "--exclude", "banking77")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines and all(set(line) == {"text", "source"} for line in lines)
    assert not any(line["source"] == "banking77" for line in lines)
    assert f"{len(lines)} messages" in done.stdout
    rows = load_utterances(out)
    assert len(rows) == len(lines) and all(r.intent is None for r in rows)
    bad = run(sqlite_env, *args, "--exclude", "imdb")
    assert bad.returncode != 0 and "unknown sources" in bad.stderr
