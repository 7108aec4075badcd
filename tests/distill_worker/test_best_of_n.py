"""Best-of-n teacher replies: the champion's reward head picks among the teacher's variants, the
variants and scores go through the teacher cache on PostgreSQL, and a run without a champion
keeps the greedy reply. The pipeline with the real teachers is in test_pipeline_hooks_real.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.config import DistillConfig
from distill_worker.data.best_of_n import (
    BestOfN,
    BestOfNReport,
    RewardScorer,
    label_best_of_n,
    selector_for,
)
from distill_worker.data.building import SourceTokenizer
from distill_worker.data.examples import ReplyExample
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.reward_eval import reward_scores
from distill_worker.stages.warm_start import Champion
from distill_worker.teacher.base import Message
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.encoder import locate_minilm
from tests.fixtures.teachers import EchoResponder

MAX_SOURCE, MAX_REPLY = 32, 16


class VariantResponder(EchoResponder):
    """EchoResponder whose sampled replies differ from its greedy one (temperature > 0)."""

    def generate(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[list[str]]:
        greedy = super().generate(
            messages_batch, n=1, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed
        )
        if temperature == 0.0:
            return greedy
        return [
            [f"{g[0]} {'really ' * (k + 1)}sure" if g[0] else "" for k in range(n)] for g in greedy
        ]


def tokenize(text: str) -> list[int]:
    """Word lengths as decoder ids (a 60-token champion vocabulary; longer words fall outside)."""
    return [len(word) + 3 for word in text.split()]


def champion(tmp_path: Path, seed: int = 0) -> Champion:
    torch.manual_seed(seed)
    cfg = StudentConfig(
        n_intents=2, enc_vocab_size=30522, enc_hidden=32, enc_heads=2, enc_layers=1, enc_ffn=64,
        dec_vocab_size=60, dec_hidden=32, dec_heads=2, dec_layers=1, dec_ffn=64,
        dec_max_positions=32,
    )  # fmt: skip
    student = Student(cfg)
    return Champion(tmp_path / f"bundle-{seed}", cfg, student.state_dict(), ["a", "b"], None)


@pytest.fixture
def source() -> SourceTokenizer:
    return SourceTokenizer(
        locate_minilm() / "tokenizer.json", max_tokens=MAX_SOURCE, context_turns=2
    )


def test_the_reward_heads_pick_is_kept_and_variants_are_asked_once(
    session_factory: sessionmaker[Session], source: SourceTokenizer, tmp_path: Path
) -> None:
    cache = TeacherCache(session_factory)
    prompts = [Utterance(f"where is order {i}", "a") for i in range(4)]
    prompts.append(Utterance("silent please", "b"))  # every variant empty: left out
    best, report = selector_for(
        3, 0.8, champion(tmp_path), source, tokenize, max_source=MAX_SOURCE, max_reply=MAX_REPLY
    )
    assert best is not None and report.scored_by == "bundle-0" and report.skipped is None
    teacher = VariantResponder()
    replies, stats = label_best_of_n(
        teacher, prompts, None, cache, best, report, max_new_tokens=8, top_k=1
    )
    assert [r.utterance for r in replies] == prompts[:4]
    assert teacher.generated == 2 * len(prompts)  # greedy + sampled, one pass each
    assert teacher.scored == 4  # only the chosen reply is scored teacher-forced

    # The choice is the argmax of the reward head over the distinct variants, greedy first.
    scorer = best.scorer
    gains, greedy_picks = [], 0
    for reply in replies:
        text = reply.utterance.text
        candidates = [
            f"about {text}",
            f"about {text} really sure",
            f"about {text} really really sure",
        ]
        ids = source.ids([reply.utterance.turns()] * 3)
        examples = [
            ReplyExample(input_ids=i, reply_ids=tokenize(c))
            for i, c in zip(ids, candidates, strict=True)
        ]
        scores = reward_scores(scorer.student, examples, max_source=MAX_SOURCE, max_reply=MAX_REPLY)
        pick = max(range(3), key=lambda k: (scores[k], -k))
        assert reply.text == candidates[pick]
        gains.append(scores[pick] - scores[0])
        greedy_picks += pick == 0
        assert reply.token_ids == [len(w) for w in reply.text.split()] + [2]  # scored by teacher
    assert report.prompts == 4 and report.mean_candidates == 3.0
    # The report's figures are those of the picks recomputed above (the gain is the chosen
    # minus the greedy reward logit, so it is 0 exactly when every pick was the greedy reply).
    assert report.chose_greedy == greedy_picks
    assert report.mean_reward_gain == pytest.approx(sum(gains) / len(gains), abs=1e-4)
    assert (report.mean_reward_gain > 0.0) == (greedy_picks < len(replies))
    assert report.variant_cache == {"hits": 0, "misses": 5, "stored": 5}
    assert (stats.misses, stats.hits) == (5 + 4, 0)

    # A second pass (the next incremental run) asks the teacher nothing and picks the same.
    again_report = BestOfNReport(n=3)
    again, stats = label_best_of_n(
        teacher, prompts, None, cache, best, again_report, max_new_tokens=8, top_k=1
    )
    assert again == replies and (stats.hits, stats.misses) == (5 + 4, 0)
    assert (teacher.generated, teacher.scored) == (2 * len(prompts), 4)


class WordCountJudge(RewardScorer):
    """A judge whose reward is the reply's word count: a longer variant always wins."""

    def __init__(self) -> None:
        self.name = "word-count"

    def score(
        self, turns: Sequence[list[tuple[str, str]]], replies: Sequence[str]
    ) -> tuple[list[float], int, int]:
        return [float(len(r.split())) for r in replies], 0, 0


def test_a_variant_the_judge_prefers_is_picked_and_its_gain_reported(
    session_factory: sessionmaker[Session],
) -> None:
    prompts = [Utterance(f"where is order {i}", "a") for i in range(3)]
    report = BestOfNReport(n=3)
    replies, _ = label_best_of_n(
        VariantResponder(),
        prompts,
        None,
        TeacherCache(session_factory),
        BestOfN(WordCountJudge(), 3, 0.8),
        report,
        max_new_tokens=8,
        top_k=1,
    )
    # greedy "about <text>", variants "+ really sure" and "+ really really sure": the last wins
    assert [r.text for r in replies] == [f"about {p.text} really really sure" for p in prompts]
    assert report.chose_greedy == 0 and report.prompts == 3
    assert report.mean_reward_gain == 3.0  # three more words than the greedy reply, each time


def test_words_outside_the_champions_vocabulary_are_counted_not_scored(
    source: SourceTokenizer, tmp_path: Path
) -> None:
    scorer = RewardScorer(
        champion(tmp_path), source, tokenize, max_source=MAX_SOURCE, max_reply=MAX_REPLY
    )
    long_word = "x" * 70  # id 73: the champion's vocabulary has 60 tokens
    scores, outside, total = scorer.score(
        [[("customer", "hi")]] * 2, ["ok then", f"ok {long_word}"]
    )
    assert (outside, total) == (1, 4) and len(scores) == 2
    assert scores[1] == pytest.approx(scorer.score([[("customer", "hi")]], ["ok"])[0][0], abs=1e-5)
    with pytest.raises(ValueError, match="one reply per conversation"):
        scorer.score([[("customer", "hi")]], ["a", "b"])


def test_no_selector_without_a_champion_or_with_one_variant(
    source: SourceTokenizer, tmp_path: Path
) -> None:
    def select(n: int, champ: Champion | None) -> tuple[object, BestOfNReport]:
        return selector_for(
            n, 0.8, champ, source, tokenize, max_source=MAX_SOURCE, max_reply=MAX_REPLY
        )

    best, report = select(1, champion(tmp_path))
    assert best is None and "best_of_n is 1" in (report.skipped or "")
    best, report = select(4, None)
    assert best is None and "first run" in (report.skipped or "")
    broken = champion(tmp_path)
    state = dict(broken.state)
    state.pop("reward_head.0.weight")
    best, report = select(4, Champion(broken.bundle_dir, broken.config, state, ["a", "b"], None))
    assert best is None and "does not load" in (report.skipped or "")
    assert report.as_dict()["n"] == 4


def test_best_of_n_settings_are_validated() -> None:
    assert DistillConfig().best_of_n == 1  # greedy unless asked
    with pytest.raises(ValueError, match="best_of_n must be an integer >= 1"):
        DistillConfig(best_of_n=0)
    with pytest.raises(ValueError, match="variant_temperature must be a finite number > 0"):
        DistillConfig(variant_temperature=0.0)
    assert DistillConfig.from_json(DistillConfig(best_of_n=4).to_json()).best_of_n == 4
