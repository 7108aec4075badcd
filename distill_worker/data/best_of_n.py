"""Best-of-n teacher replies: the teacher writes several, the champion's reward head picks one.

The teacher's greedy reply is one of many it could write. With `best_of_n` = n > 1, for each
prompt the responder writes its greedy reply and n - 1 sampled ones (at `variant_temperature`);
the serving champion's reward head, trained on what customers rated and operators corrected,
scores every (context, reply) pair and the best-scoring reply becomes the training target. It is
then scored teacher-forced for top-k token KD, exactly as a greedy reply is. The greedy reply is
always a candidate, so the choice can only move away from it when the reward head prefers
another.

Caching: the variants of a prompt are one teacher output (kind "variants", keyed by teacher,
rendered chat, n, temperature and seed), the top-k scoring of a chosen reply another (kind
"score", keyed by chat and reply text). An incremental run asks the teacher only about new
prompts; the choice itself is recomputed each run (local and cheap), because it depends on the
champion of the day.

No champion (the first run of a platform), no trained reward head: `selector_for` returns none
and the run keeps the greedy replies, with the reason in its metrics. Tokens of a variant that
are outside the champion's decoder vocabulary are left out of its scoring (the champion could
never say them); `BestOfNReport.tokens_outside_vocab` counts them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from distill_worker.data.building import SourceTokenizer, TeacherReply, teacher_messages
from distill_worker.data.examples import ReplyExample
from distill_worker.data.labelling import score_pairs
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import Student
from distill_worker.stages.reward_eval import reward_scores
from distill_worker.stages.warm_start import Champion, champion_vocab
from distill_worker.teacher.base import Message, Responder
from distill_worker.teacher.cache import CacheStats, Output, TeacherCache
from distill_worker.teacher.grounding import Knowledge

VARIANTS_KIND = "variants"
SCORE_KIND = "score"


class RewardScorer:
    """The champion's reward head as a judge of (conversation, reply text) pairs."""

    def __init__(
        self,
        champion: Champion,
        source: SourceTokenizer,
        tokenize: Callable[[str], list[int]],
        *,
        max_source: int,
        max_reply: int,
    ) -> None:
        self.student = Student(champion.config)
        self.student.load_state_dict(champion.state)
        self.student.eval()
        self.index = {token: i for i, token in enumerate(champion_vocab(champion))}
        self.source = source
        self.tokenize = tokenize
        self.max_source = max_source
        self.max_reply = max_reply
        self.name = champion.bundle_dir.name

    def score(
        self, turns: Sequence[list[tuple[str, str]]], replies: Sequence[str]
    ) -> tuple[list[float], int, int]:
        """Reward logits, one per pair; plus (tokens left out, tokens in all)."""
        if len(turns) != len(replies):
            raise ValueError("score needs one reply per conversation")
        contexts = self.source.ids(list(turns))
        examples, outside, total = [], 0, 0
        for ids, reply in zip(contexts, replies, strict=True):
            tokens = self.tokenize(reply)[: self.max_reply]
            kept = [self.index[t] for t in tokens if t in self.index]
            outside += len(tokens) - len(kept)
            total += len(tokens)
            examples.append(ReplyExample(input_ids=ids, reply_ids=kept))
        with torch.inference_mode():
            scores = reward_scores(
                self.student, examples, max_source=self.max_source, max_reply=self.max_reply
            )
        return scores, outside, total


@dataclass(frozen=True)
class BestOfN:
    scorer: RewardScorer
    n: int
    temperature: float


@dataclass
class BestOfNReport:
    """What best-of-n did in a run (the run's `metrics["best_of_n"]`)."""

    n: int
    scored_by: str | None = None  # the champion bundle whose reward head chose
    skipped: str | None = None  # why the greedy replies were kept
    prompts: int = 0
    chose_greedy: int = 0
    mean_candidates: float = 0.0
    mean_reward_gain: float = 0.0  # chosen minus greedy reward logit, averaged over prompts
    tokens_outside_vocab: int = 0
    tokens_scored: int = 0
    variant_cache: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def selector_for(
    n: int,
    temperature: float,
    champion: Champion | None,
    source: SourceTokenizer,
    tokenize: Callable[[str], list[int]],
    *,
    max_source: int,
    max_reply: int,
) -> tuple[BestOfN | None, BestOfNReport]:
    """The best-of-n selector of a run, or None (greedy replies) with the reason."""
    report = BestOfNReport(n=n)
    if n <= 1:
        report.skipped = "best_of_n is 1: greedy teacher replies"
        return None, report
    if champion is None:
        report.skipped = "no champion to judge the variants (first run): greedy teacher replies"
        return None, report
    try:
        scorer = RewardScorer(
            champion, source, tokenize, max_source=max_source, max_reply=max_reply
        )
    except (RuntimeError, ValueError) as exc:  # weights that do not fit the champion's config
        report.skipped = f"the champion's reward head does not load ({exc}): greedy replies"
        return None, report
    report.scored_by = scorer.name
    return BestOfN(scorer, n, temperature), report


def _distinct(texts: Sequence[str]) -> list[str]:
    out: list[str] = []
    for text in (t.strip() for t in texts):
        if text and text not in out:
            out.append(text)
    return out


def teacher_variants(
    responder: Responder,
    chats: Sequence[list[Message]],
    cache: TeacherCache,
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[list[str]], CacheStats]:
    """The distinct non-empty replies of each chat: greedy first, then n - 1 sampled; cached."""
    params = {"max_new_tokens": max_new_tokens, "n": n, "temperature": temperature, "seed": 0}

    def compute(batch: list[list[Message]]) -> list[Output]:
        greedy = responder.generate(
            batch, n=1, max_new_tokens=max_new_tokens, temperature=0.0, seed=0
        )
        sampled = responder.generate(
            batch, n=n - 1, max_new_tokens=max_new_tokens, temperature=temperature, seed=0
        )
        return [{"replies": _distinct([*g, *s])} for g, s in zip(greedy, sampled, strict=True)]

    outputs, stats = cache.get_or_compute(
        responder.teacher_id, VARIANTS_KIND, chats, lambda c: c, params, compute, progress=progress
    )
    return [list(out["replies"]) for out in outputs], stats


def judge(
    scorer: RewardScorer, prompts: Sequence[Utterance], variants: Sequence[list[str]]
) -> tuple[list[list[float]], int, int]:
    """The reward of every variant of every prompt; plus (tokens left out, tokens in all)."""
    flat = [(i, text) for i, texts in enumerate(variants) for text in texts]
    if not flat:
        return [[] for _ in variants], 0, 0
    scores, outside, total = scorer.score(
        [prompts[i].turns() for i, _ in flat], [text for _, text in flat]
    )
    out: list[list[float]] = [[] for _ in variants]
    for (i, _), score in zip(flat, scores, strict=True):
        out[i].append(score)
    return out, outside, total


def best_index(scores: Sequence[float]) -> int:
    """The highest score's position; on a tie the earlier (greedy-first) variant."""
    return max(range(len(scores)), key=lambda k: (scores[k], -k))


def label_best_of_n(
    responder: Responder,
    prompts: Sequence[Utterance],
    knowledge: Knowledge | None,
    cache: TeacherCache,
    best: BestOfN,
    report: BestOfNReport,
    *,
    max_new_tokens: int,
    top_k: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[TeacherReply], CacheStats]:
    """The reward head's pick of n teacher variants per prompt, scored for token KD.

    Returns the replies in prompt order (prompts without any non-empty variant left out) and
    the cache counts of the variants and scores together; fills `report`."""
    chats = [teacher_messages(knowledge, p.turns()) for p in prompts]
    variants, variant_stats = teacher_variants(
        responder,
        chats,
        cache,
        n=best.n,
        temperature=best.temperature,
        max_new_tokens=max_new_tokens,
        progress=progress,
    )
    scores, outside, total = judge(best.scorer, prompts, variants)
    chosen: list[tuple[int, str]] = []
    gains = []
    for i, (texts, rewards) in enumerate(zip(variants, scores, strict=True)):
        if not texts:
            continue
        pick = best_index(rewards)
        chosen.append((i, texts[pick]))
        gains.append(rewards[pick] - rewards[0])
        report.chose_greedy += pick == 0
    report.prompts = len(chosen)
    report.mean_candidates = round(sum(map(len, variants)) / max(len(chosen), 1), 2)
    report.mean_reward_gain = round(statistics.fmean(gains), 4) if gains else 0.0
    report.tokens_outside_vocab, report.tokens_scored = outside, total
    report.variant_cache = variant_stats.as_dict()

    pairs = [(chats[i], text) for i, text in chosen]
    scored, score_stats = cache.get_or_compute(
        responder.teacher_id,
        SCORE_KIND,
        pairs,
        lambda pair: {"chat": pair[0], "reply": pair[1]},
        {"top_k": top_k},
        lambda batch: score_pairs(responder, batch, top_k),
    )
    replies = [
        TeacherReply(
            prompts[i], out["reply"], out["token_ids"], out["top_ids"], out["top_logprobs"]
        )
        for (i, _), out in zip(chosen, scored, strict=True)
    ]
    stats = CacheStats(
        hits=variant_stats.hits + score_stats.hits,
        misses=variant_stats.misses + score_stats.misses,
        stored=variant_stats.stored + score_stats.stored,
    )
    return replies, stats
