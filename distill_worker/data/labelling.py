"""Teacher labelling through the teacher cache: grounded replies with their top-k token logprobs.

`label_replies` asks the responder only for prompts whose (teacher, rendered chat, parameters)
key is not in the cache, and returns the replies in prompt order with the cache's hit/miss
counts. An empty reply is cached too (as an empty text), so it is not asked again every run; it
is left out of the returned replies, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from distill_worker.data.building import TeacherReply, teacher_messages
from distill_worker.data.loaders import Utterance
from distill_worker.teacher.base import Message, Responder
from distill_worker.teacher.cache import CacheStats, Output, TeacherCache
from distill_worker.teacher.grounding import Knowledge

REPLY_KIND = "reply+score"


def label_replies(
    responder: Responder,
    prompts: Sequence[Utterance],
    knowledge: Knowledge | None,
    cache: TeacherCache,
    *,
    max_new_tokens: int,
    top_k: int,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 8,
) -> tuple[list[TeacherReply], CacheStats]:
    """Greedy replies (scored teacher-forced, top-k) for each prompt; cached by content hash."""
    chats = [teacher_messages(knowledge, p.turns()) for p in prompts]
    params = {"max_new_tokens": max_new_tokens, "top_k": top_k, "temperature": 0.0, "seed": 0}

    def compute(batch: list[list[Message]]) -> list[Output]:
        texts = [
            r[0].strip()
            for r in responder.generate(
                batch, n=1, max_new_tokens=max_new_tokens, temperature=0.0, seed=0
            )
        ]
        pairs = [(chat, text) for chat, text in zip(batch, texts, strict=True) if text]
        scored = iter(score_pairs(responder, pairs, top_k))
        return [next(scored) if text else {"reply": ""} for text in texts]

    outputs, stats = cache.get_or_compute(
        responder.teacher_id,
        REPLY_KIND,
        chats,
        lambda chat: chat,
        params,
        compute,
        chunk=chunk,
        progress=progress,
    )
    replies = [
        TeacherReply(prompt, out["reply"], out["token_ids"], out["top_ids"], out["top_logprobs"])
        for prompt, out in zip(prompts, outputs, strict=True)
        if out["reply"]
    ]
    return replies, stats


def score_pairs(
    responder: Responder, pairs: list[tuple[list[Message], str]], top_k: int
) -> list[Output]:
    """Teacher-forced top-k scoring of (chat, reply) pairs, as cache outputs."""
    # A server-backed responder scores the batch concurrently (OpenAIResponder.score_many);
    # an in-process one scores one reply after another.
    score_many = getattr(responder, "score_many", None)
    if score_many is not None:
        scored = list(score_many(pairs, top_k=top_k))
    else:
        scored = [responder.score(chat, text, top_k=top_k) for chat, text in pairs]
    return [
        {
            "reply": text,
            "token_ids": s.token_ids,
            "top_ids": s.top_ids,
            "top_logprobs": s.top_logprobs,
        }
        for (_, text), s in zip(pairs, scored, strict=True)
    ]


def greedy_replies(
    responder: Responder,
    chats: Sequence[list[Message]],
    cache: TeacherCache,
    *,
    max_new_tokens: int,
) -> tuple[list[str], CacheStats]:
    """The responder's greedy reply to each chat (no scoring: evaluation references); cached."""
    params = {"max_new_tokens": max_new_tokens, "temperature": 0.0, "seed": 0}

    def compute(batch: list[list[Message]]) -> list[Output]:
        return [
            {"reply": r[0].strip()}
            for r in responder.generate(
                batch, n=1, max_new_tokens=max_new_tokens, temperature=0.0, seed=0
            )
        ]

    outputs, stats = cache.get_or_compute(
        responder.teacher_id, "reply", chats, lambda chat: chat, params, compute
    )
    return [str(out["reply"]) for out in outputs], stats
