"""The teacher cache on real PostgreSQL: keys, hits and misses, incremental labelling, chunks
committed as they finish, concurrent writers; and the SQLite file a run uses without a store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.data.labelling import label_replies
from distill_worker.data.loaders import Utterance
from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.cache import TeacherCache, cache_key
from feedback.repositories.teacher_outputs import NewTeacherOutput, TeacherOutputRepository
from feedback.settings import Settings
from tests.conftest import create_database, drop_database
from tests.fixtures.teachers import EchoResponder

CHAT = [{"role": "user", "content": "where is my parcel?"}]


def test_cache_key_is_canonical_and_covers_every_input() -> None:
    base = cache_key("local:smol", CHAT, {"top_k": 20, "max_new_tokens": 48})
    assert base == cache_key("local:smol", CHAT, {"max_new_tokens": 48, "top_k": 20})
    assert len(base) == 64 and int(base, 16) >= 0
    others = {
        cache_key("openai:smol", CHAT, {"top_k": 20, "max_new_tokens": 48}),
        cache_key(
            "local:smol",
            [{"role": "user", "content": "where is my parcel"}],
            {"top_k": 20, "max_new_tokens": 48},
        ),
        cache_key("local:smol", CHAT, {"top_k": 5, "max_new_tokens": 48}),
        cache_key("local:smol", CHAT, {"top_k": 20, "max_new_tokens": 48, "seed": 1}),
    }
    assert base not in others and len(others) == 4


class Counting:
    """compute() for get_or_compute that records what it was asked."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.asked: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, items: list[str]) -> list[dict[str, Any]]:
        self.asked.append(items)
        if self.fail_on_call == len(self.asked):
            raise RuntimeError("teacher went away")
        return [{"reply": f"answer to {item}"} for item in items]


def test_incremental_labelling_pays_only_for_new_inputs(
    session_factory: sessionmaker[Session],
) -> None:
    cache = TeacherCache(session_factory)
    params = {"max_new_tokens": 8}
    first = Counting()
    items = [f"q{i}" for i in range(10)]
    outputs, stats = cache.get_or_compute("t", "reply", items, lambda x: x, params, first, chunk=4)
    assert outputs == [{"reply": f"answer to q{i}"} for i in range(10)]
    assert stats.as_dict() == {"hits": 0, "misses": 10, "stored": 10}
    assert [len(c) for c in first.asked] == [4, 4, 2]

    more = Counting()
    grown = [*items, "q10", "q11", "q3"]  # 10% new data, and a prompt repeated
    outputs, stats = cache.get_or_compute("t", "reply", grown, lambda x: x, params, more)
    assert more.asked == [["q10", "q11"]]
    assert stats.as_dict() == {"hits": 11, "misses": 2, "stored": 2}
    assert outputs[-1] == {"reply": "answer to q3"} and len(outputs) == 13

    other = Counting()  # another parameter is another key: asked again
    cache.get_or_compute("t", "reply", items[:2], lambda x: x, {"max_new_tokens": 9}, other)
    assert other.asked == [["q0", "q1"]]


def test_chunks_already_answered_survive_a_failure(session_factory: sessionmaker[Session]) -> None:
    cache = TeacherCache(session_factory)
    items = ["a", "b", "c", "d", "e"]
    with pytest.raises(RuntimeError, match="went away"):
        cache.get_or_compute("t", "reply", items, lambda x: x, {}, Counting(2), chunk=2)
    resumed = Counting()
    _, stats = cache.get_or_compute("t", "reply", items, lambda x: x, {}, resumed, chunk=2)
    assert (stats.hits, stats.misses) == (2, 3) and resumed.asked == [["c", "d"], ["e"]]


def test_a_key_written_twice_keeps_the_first_answer(session_factory: sessionmaker[Session]) -> None:
    key = cache_key("t", "same prompt", {})
    with session_factory() as session:
        repo = TeacherOutputRepository(session)
        assert repo.add_many([NewTeacherOutput(key, "t", "reply", {"reply": "first"})]) == 1
        assert repo.add_many([NewTeacherOutput(key, "t", "reply", {"reply": "second"})]) == 0
        assert repo.get_many([key, "0" * 64]) == {key: {"reply": "first"}}
        assert repo.count("t") == 1


def test_label_replies_through_the_cache(session_factory: sessionmaker[Session]) -> None:
    cache = TeacherCache(session_factory)
    prompts = [Utterance(f"question {i}", "faq") for i in range(5)] + [Utterance("silent one")]
    teacher = EchoResponder()
    replies, stats = label_replies(teacher, prompts, None, cache, max_new_tokens=8, top_k=1)
    assert [r.text for r in replies] == [f"about question {i}" for i in range(5)]  # "" dropped
    assert (stats.misses, teacher.generated, teacher.scored) == (6, 6, 5)
    assert replies[0].token_ids == [5, 8, 1, 2] and replies[0].utterance == prompts[0]

    again, stats = label_replies(teacher, prompts, None, cache, max_new_tokens=8, top_k=1)
    assert again == replies and (stats.hits, stats.misses) == (6, 0)
    assert (teacher.generated, teacher.scored) == (6, 5)  # not asked again, not even the empty


def test_a_run_without_a_store_caches_in_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "run" / "teacher_cache.db"
    cache = TeacherCache.in_sqlite_file(path)
    _, first = cache.get_or_compute("t", "reply", ["x"], lambda x: x, {}, Counting())
    cache.close()
    reopened = TeacherCache.in_sqlite_file(path)
    _, second = reopened.get_or_compute("t", "reply", ["x"], lambda x: x, {}, Counting())
    reopened.close()
    assert (first.misses, second.hits) == (1, 1)


def test_the_store_must_be_migrated(tmp_path: Path) -> None:
    name = f"chatdistill_cache_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    try:
        with pytest.raises(TeacherSetupError, match="run `chatdistill db upgrade` first"):
            TeacherCache.in_store(Settings(data_dir=tmp_path, database={"url": url}))
    finally:
        drop_database(name)


def test_the_embedded_store_is_migrated_on_first_use(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # no database URL: the embedded SQLite file
    cache = TeacherCache.in_store(settings)
    _, first = cache.get_or_compute("t", "reply", ["x", "y"], lambda x: x, {}, Counting())
    cache.close()
    again = TeacherCache.in_store(settings)
    _, second = again.get_or_compute("t", "reply", ["y", "z"], lambda x: x, {}, Counting())
    again.close()
    assert (tmp_path / "chatdistill.db").is_file()
    assert (first.misses, second.hits, second.misses) == (2, 1, 1)
