"""The out-of-domain corpus, built from the real public sets in ../shared/data, and its use as
handoff negatives (never training rows)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill_worker.data.loaders import DataError, Utterance, load_utterances
from distill_worker.data.ood_corpus import build_ood_corpus, drop_near
from distill_worker.data.run_corpora import ood_negatives
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


def test_the_command_writes_to_the_data_folder_by_default(sqlite_env: dict[str, str]) -> None:
    done = run(sqlite_env, "ood-corpus", "--data-root", str(DATA), "--per-intent", "1")
    assert done.returncode == 0, done.stderr
    default = Path(sqlite_env["CHATDISTILL_DATA_DIR"]) / "ood_corpus.jsonl"
    assert str(default) in done.stdout and "every distill and loop run" in done.stdout
    assert len(load_utterances(default)) == 150 + 64 + 77  # one row per intent of each set


def test_corpus_rows_the_customers_own_data_has_are_never_negatives(tmp_path: Path) -> None:
    """A corpus built from the very public set a run trains on (the data folder's default
    corpus, no exclusions) holds the run's own rows, held-out ones and unlabelled KD ones
    included: they go first, whatever their case, counted apart from the filters' drops."""
    train = [Utterance(text="Cancel my order please", intent="cancel")]
    held_out = [Utterance(text="where is my parcel", intent="track")]
    report_rows = [Utterance(text="I need a refund", intent="refund")]
    kd_rows = [Utterance(text="is the shop open on sunday")]  # `--unlabelled`: trains stage 1
    corpus = [
        "cancel my order please ",
        "Where is my parcel",
        "i need a refund",
        "is the shop open on Sunday",
        "what's the weather like in Lisbon tomorrow",
        "play some jazz in the kitchen",
    ]
    path = tmp_path / "ood.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus), encoding="utf-8")
    lines: list[str] = []
    other = [*report_rows, *kd_rows]
    kept, report = ood_negatives(str(path), train, held_out, 0, lines.append, other=other)
    assert [r.text for r in kept] == corpus[4:]
    assert report == {"file": "ood.jsonl", "in_data": 4, "rows": 2, "near_words": 0, "kept": 2}
    assert "2 of 2 rows" in lines[0] and "4 in the run's own data" in lines[0]


def test_rows_close_in_meaning_are_dropped_by_a_cutoff_set_on_unseen_rows(tmp_path: Path) -> None:
    """A CLINC150 customer with alarms, timers, weather and the time: HWU64's alarm and weather
    questions share few words with its rows, yet they are its subjects; HWU64's e-mail and
    social questions, and CLINC150's own out-of-scope ones, are not."""
    mine = {"alarm", "timer", "weather", "date", "time"}
    data = json.loads((DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    rows = [Utterance(text=t, intent=i) for t, i in data["train"] if i in mine]
    train = [*rows[::2], Utterance(text="how do I bake sourdough", intent="oos")]
    held_out = rows[1::8]
    groups = {"hwu64:alarm", "hwu64:weather", "hwu64:email", "hwu64:social"}
    built = build_ood_corpus(DATA, per_group=10, seed=0, exclude=["clinc150", "banking77"])
    corpus = [r for r in built if r["source"] in groups]
    corpus += [{"text": t, "source": "oos"} for t, _ in data["oos_val"][:40]]
    path = tmp_path / "ood.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    lines: list[str] = []
    kept, report = ood_negatives(str(path), train, held_out, 0, lines.append)
    source = {r["text"]: r["source"] for r in corpus}
    share = {
        name: sum(source[r.text] == name for r in kept) / sum(s == name for s in source.values())
        for name in [*groups, "oos"]
    }
    assert report["rows"] == len(corpus) and report["kept"] == len(kept) and not report["in_data"]
    assert report["rows"] == report["near_words"] + report["near_meaning"] + report["kept"]
    assert 0.3 < report["cutoff"] < 0.9
    assert share["hwu64:alarm"] <= 0.3 and share["hwu64:weather"] <= 0.3
    assert share["hwu64:email"] >= 0.8 and share["hwu64:social"] >= 0.8 and share["oos"] >= 0.8
    assert f"{report['near_meaning']} in meaning (cosine >= " in lines[0]
    # Too few unseen rows to set a cutoff: the words filter alone, and the report says so.
    few, small = ood_negatives(str(path), train, held_out[:3], 0, lines.append)
    assert "cutoff" not in small and len(few) == small["kept"] > len(kept)
