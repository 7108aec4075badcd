"""The importers on small slices of the real public files in ../shared/data (cut at test time,
never copied into the repository), and on malformed files; stored on real PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.data.importers import FORMATS, SeedRecord
from distill_worker.data.importers.store import import_into_store, write_jsonl
from distill_worker.data.loaders import DataError, load_utterances
from feedback.models import SeedExample, SeedImport

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def head_lines(src: Path, dest: Path, n: int) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as handle:
        dest.write_text("".join(next(handle) for _ in range(n)), encoding="utf-8")
    return dest


def csv_slice(src: Path, dest: Path, n: int) -> list[dict[str, str]]:
    with src.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = [row for _, row in zip(range(n), reader, strict=False)]
        fields = list(reader.fieldnames or [])
    with dest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_banking77_slice(tmp_path: Path) -> None:
    path = head_lines(DATA / "banking77" / "train.csv", tmp_path / "train.csv", 41)
    records = FORMATS["banking77"](path)
    assert len(records) == 40
    assert (records[0].text, records[0].intent) == (
        "I am still waiting on my card?",
        "card_arrival",
    )
    assert {r.split for r in records} == {"train"} and all(r.reply is None for r in records)


def test_clinc150_slice_keeps_every_split(tmp_path: Path) -> None:
    full = json.loads((DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    part = {split: items[:7] for split, items in full.items()}
    path = tmp_path / "data_full.json"
    path.write_text(json.dumps(part), encoding="utf-8")
    records = FORMATS["clinc150"](path)
    assert len(records) == 7 * len(part)
    assert {r.split for r in records} == set(part) >= {"train", "val", "oos_train"}
    assert {r.intent for r in records if r.split == "oos_train"} == {"oos"}
    assert records[0].text == part["train"][0][0]


def test_hwu64_slice_pairs_lines(tmp_path: Path) -> None:
    folder = tmp_path / "valid"
    for name in ("seq.in", "label"):
        head_lines(DATA / "hwu64" / "valid" / name, folder / name, 30)
    records = FORMATS["hwu64"](folder)
    labels = (folder / "label").read_text(encoding="utf-8").split()
    assert [r.intent for r in records] == labels and {r.split for r in records} == {"valid"}


def test_bitext_slice_has_replies(tmp_path: Path) -> None:
    rows = csv_slice(DATA / "bitext_cs" / "bitext_cs.csv", tmp_path / "bitext.csv", 25)
    records = FORMATS["bitext"](tmp_path / "bitext.csv")
    assert [r.intent for r in records] == [row["intent"] for row in rows]
    assert all(r.reply and len(r.reply) > 40 for r in records)
    assert records[0].meta["category"] == rows[0]["category"]
    assert "{{" in " ".join(r.reply or "" for r in records)  # Bitext's placeholders are kept


def test_star_slice_is_multi_turn_with_satisfaction(tmp_path: Path) -> None:
    path = head_lines(DATA / "star" / "dialogues.jsonl", tmp_path / "star.jsonl", 6)
    dialogues = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records = FORMATS["star"](path)
    agent_turns = sum(1 for d in dialogues for t in d["turns"] if t["speaker"] == "agent")
    assert 0 < len(records) <= agent_turns
    first = dialogues[0]
    spoken = [t for t in first["turns"] if t["speaker"] != "api"]
    mine = [r for r in records if r.meta["dialogue_id"] == first["dialogue_id"]]
    assert mine[0].text == spoken[0]["text"] and mine[0].reply == spoken[1]["text"]
    assert mine[1].context == (("customer", spoken[0]["text"]), ("assistant", spoken[1]["text"]))
    assert mine[0].intent == first["tasks"][0]
    happy = all(a["Answer"] for a in first["user_questionnaire"])
    assert {r.reward for r in mine} == {1.0 if happy else 0.0}
    assert any(len(r.context) >= 4 for r in records)


def test_taskmaster4_slice_rated_actions(tmp_path: Path) -> None:
    entries = json.loads((DATA / "taskmaster4" / "raw" / "reward" / "reward_00.json").read_text())
    path = tmp_path / "reward_00.json"
    path.write_text(json.dumps(entries[:30], indent=4), encoding="utf-8")
    records = FORMATS["taskmaster4"](path)
    assert len(records) == 30
    assert [r.reward for r in records] == [float(e["reward"]) for e in entries[:30]]
    assert {r.meta["action"] for r in records} == {"api", "text"}
    first = records[0]
    assert first.text == "can i get an espresso please"
    assert first.reply == '[api] {"get_menu_items":{"query":"espresso"}}'
    assert first.context[0][0] == "assistant" and "Coffee Bar" in first.context[0][1]


def _count(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    with session_factory() as session:
        examples = session.scalar(select(func.count()).select_from(SeedExample)) or 0
        imports = session.scalar(select(func.count()).select_from(SeedImport)) or 0
        return examples, imports


def test_import_into_postgres_dedups_redacts_and_dry_runs(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    path = head_lines(DATA / "banking77" / "train.csv", tmp_path / "train.csv", 31)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("mail me at jane.doe@example.com please,contact\n")
        handle.write("I am still waiting on my card?,card_arrival\n")  # a repeat of line 2
    records = FORMATS["banking77"](path)
    assert len(records) == 32

    dry = import_into_store(session_factory, "banking77", path, records, dry_run=True)
    assert (dry.rows_read, dry.rows_added, dry.rows_duplicate) == (32, 31, 1)
    assert dry.import_id is None and _count(session_factory) == (0, 0)

    report = import_into_store(session_factory, "banking77", path, records)
    assert (report.rows_added, report.rows_duplicate, report.intents) == (31, 1, 2)
    assert _count(session_factory) == (31, 1)
    with session_factory() as session:
        texts = set(session.scalars(select(SeedExample.text)))
    assert "mail me at [EMAIL] please" in texts
    assert not any("jane.doe" in t for t in texts)

    again = import_into_store(session_factory, "banking77", path, records)
    assert (again.rows_added, again.rows_duplicate) == (0, 32)
    assert _count(session_factory) == (31, 2)


def test_star_import_keeps_context_and_rewards(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    path = head_lines(DATA / "star" / "dialogues.jsonl", tmp_path / "star.jsonl", 3)
    records = FORMATS["star"](path)
    import_into_store(session_factory, "star", path, records)
    with session_factory() as session:
        stored = session.scalars(select(SeedExample).where(SeedExample.corpus == "star")).all()
    assert len(stored) == len({r.content_hash() for r in records})
    longest = max(stored, key=lambda e: len(e.context))
    assert longest.context[0][0] == "customer" and longest.reply
    assert {e.reward for e in stored} <= {0.0, 1.0, None}


def test_jsonl_output_is_what_distill_reads(tmp_path: Path) -> None:
    path = head_lines(DATA / "star" / "dialogues.jsonl", tmp_path / "star.jsonl", 2)
    records = FORMATS["star"](path)
    out = tmp_path / "out" / "star.jsonl"
    written = write_jsonl(records, out)
    rows = load_utterances(out)
    assert len(rows) == written == len({r.content_hash() for r in records})
    assert rows[1].context and rows[1].reply == records[1].reply


MALFORMED = [
    ("banking77", "train.csv", "text,category\nhello,greeting\n,card_arrival\n", ":3: empty text"),
    ("banking77", "train.csv", "text\nhello\n", ":1: the header lacks the column(s) category"),
    (
        "banking77",
        "train.csv",
        'text,category\n"a\nb",x\nfine,y\ntoo,many,fields\n',
        ":5: more fields than the header has",
    ),
    ("bitext", "b.csv", "instruction,intent,response\nhi,greet,\n", ":2: empty response"),
    ("clinc150", "d.json", '{"train": [["a", "b"], ["only text"]]}', "train[1]: expected [text"),
    ("clinc150", "d.json", '{"train": [\n["a", "b"],\n]}', ":3: not valid JSON"),
    (
        "star",
        "s.jsonl",
        '{"turns": [{"speaker": "user", "text": "hi"}]}\n{"turns": [{"speaker": "bot"}]}\n',
        ":2: turns[0] needs speaker",
    ),
    ("star", "s.jsonl", '{"turns": []}\n\n{not json\n', ":3: not valid JSON"),
    (
        "taskmaster4",
        "r.json",
        '[{"context": "[{\\"role\\": \\"user\\", \\"text\\": \\"hi\\"}]", '
        '"generation": "{\\"role\\": \\"agent\\", \\"text\\": \\"ok\\"}", "reward": 0.5}]',
        "entry [0]: reward must be 0 or 1",
    ),
]


@pytest.mark.parametrize(("fmt", "name", "content", "message"), MALFORMED)
def test_malformed_files_give_line_numbered_errors(
    tmp_path: Path, fmt: str, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        FORMATS[fmt](path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_hwu64_with_unpaired_lines_is_refused(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("wake me up\nset an alarm\n\n", encoding="utf-8")
    (tmp_path / "label").write_text("alarm_set\nalarm_set\nalarm_set\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"seq\.in:3: empty utterance"):
        FORMATS["hwu64"](tmp_path)
    (tmp_path / "label").write_text("alarm_set\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"seq\.in has 3 lines and label has 1"):
        FORMATS["hwu64"](tmp_path)


def test_a_failure_while_storing_leaves_nothing(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """The database refuses a row near the end (in a later multi-row INSERT batch than the
    first ones, which it already took): the import row and every example are rolled back."""
    path = tmp_path / "seed.csv"
    path.write_text("text,category\n", encoding="utf-8")
    records = [SeedRecord(text=f"question {i}", intent="faq") for i in range(2500)]
    records[2400] = SeedRecord(text="nul \x00 inside", intent="faq")  # PostgreSQL refuses NUL
    with pytest.raises(sqlalchemy.exc.DataError, match="NUL"):
        import_into_store(session_factory, "banking77", path, records)
    assert _count(session_factory) == (0, 0)


def test_the_cli_imports_in_one_go_or_not_at_all(tmp_path: Path, pg_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    env.update(CHATDISTILL_DATA_DIR=str(tmp_path / "data"), CHATDISTILL_DATABASE__URL=pg_url)
    good = head_lines(DATA / "hwu64" / "train" / "seq.in", tmp_path / "hwu" / "seq.in", 20)
    head_lines(DATA / "hwu64" / "train" / "label", good.parent / "label", 20)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,category\nfine,a\nalso fine,b\n,c\n", encoding="utf-8")

    def chatdistill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chat_api.cli", "import", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    engine = create_engine(pg_url)
    try:
        before = _corpus_count(engine, "hwu64"), _corpus_count(engine, "banking77")
        failed = chatdistill("banking77", str(bad))
        assert failed.returncode == 1
        assert f"{bad}:4: empty text" in failed.stderr and "nothing was imported" in failed.stderr
        dry = chatdistill("hwu64", str(good.parent), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would add 20" in dry.stdout and "nothing written" in dry.stdout
        assert (_corpus_count(engine, "hwu64"), _corpus_count(engine, "banking77")) == before
        done = chatdistill("hwu64", str(good.parent))
        assert done.returncode == 0, done.stderr
        assert _corpus_count(engine, "hwu64") == before[0] + 20
        assert _corpus_count(engine, "banking77") == before[1]
        out = tmp_path / "hwu.jsonl"
        written = chatdistill("hwu64", str(good.parent), "--out", str(out))
        assert written.returncode == 0 and len(load_utterances(out)) == 20
    finally:
        with engine.begin() as conn:  # this test committed for real: remove what it added
            conn.execute(delete(SeedImport).where(SeedImport.source == str(good.parent)))
        engine.dispose()


def _corpus_count(engine: Engine, corpus: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(SeedExample).where(SeedExample.corpus == corpus)
        return int(conn.scalar(query) or 0)
