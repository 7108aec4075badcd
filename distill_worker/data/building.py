"""From labelled utterances and teachers to the examples of the two stages.

* `stratified_split` holds out a fixed share of every intent (the dev set the gate compares on).
* `SourceTokenizer` turns conversation turns into encoder ids: `bundle_runtime.source.format_source`
  text, the encoder teacher's WordPiece tokenizer, truncated from the left so the newest turn
  survives ([CLS] + last tokens + [SEP]), exactly as the serving runtime does.
* `intent_examples` attaches the encoder teacher's features and logits (stage 1).
* `sample_prompts` picks an intent-stratified sample of prompts for the responder, a `ReplyQuota`
  per intent under a total budget (its replies come through the teacher cache: `labelling.py`,
  `best_of_n.py`).
* `reply_examples` turns the teacher replies (with their top-k token logprobs), references,
  ratings and corrections into stage-2 examples, with contrastive negatives (a reply written for
  another intent) as reward-head labels.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from bundle_runtime.source import format_source
from distill_worker.data.examples import IntentExample, ReplyExample
from distill_worker.data.loaders import Utterance
from distill_worker.data.snapshots.records import example_key
from distill_worker.data.snapshots.split import sample_priority
from distill_worker.teacher.encoder import EncoderTeacher
from distill_worker.teacher.grounding import Knowledge, build_messages

GENERIC_SYSTEM = (
    "You are a helpful customer-service agent. Answer in at most 2-3 short sentences. If you "
    "do not know the answer, say so and offer to connect the customer with a human agent."
)


def stratified_split(
    rows: Sequence[Utterance], dev_fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out `dev_fraction` of each intent (at least one where an intent has 3+ rows)."""
    by_intent: dict[str | None, list[Utterance]] = defaultdict(list)
    for row in rows:
        by_intent[row.intent].append(row)
    rng = random.Random(seed)
    train: list[Utterance] = []
    dev: list[Utterance] = []
    for intent in sorted(by_intent, key=lambda x: x or ""):
        group = list(by_intent[intent])
        rng.shuffle(group)
        n_dev = round(len(group) * dev_fraction)
        if n_dev == 0 and len(group) >= 3 and dev_fraction > 0:
            n_dev = 1
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    rng.shuffle(train)
    return train, dev


class SourceTokenizer:
    """Conversation turns -> encoder token ids, the same way serving builds them."""

    def __init__(self, tokenizer_json: Path, *, max_tokens: int, context_turns: int) -> None:
        self.path = tokenizer_json
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens, direction="left")
        self.context_turns = context_turns

    def text(self, turns: list[tuple[str, str]]) -> str:
        return format_source(turns, self.context_turns)

    def ids(self, turns_batch: list[list[tuple[str, str]]]) -> list[list[int]]:
        texts = [self.text(t) for t in turns_batch]
        return [list(e.ids) for e in self.tokenizer.encode_batch(texts)]


def intent_examples(
    rows: Sequence[Utterance],
    labels: list[str],
    source: SourceTokenizer,
    teacher: EncoderTeacher | None,
) -> list[IntentExample]:
    """Stage-1 examples; teacher features/logits when a (fine-tuned) teacher is given."""
    index = {label: i for i, label in enumerate(labels)}
    turns = [r.turns() for r in rows]
    ids = source.ids(turns)
    feats = logits = None
    if teacher is not None:
        texts = [source.text(t) for t in turns]
        feats = teacher.features(texts).tolist()
        if teacher.head is not None:
            logits = teacher_logits_in_order(teacher, texts, labels).tolist()
    return [
        IntentExample(
            input_ids=ids[i],
            label=index.get(row.intent or "", -1),
            teacher_logits=logits[i] if logits is not None else None,
            teacher_features=feats[i] if feats is not None else None,
        )
        for i, row in enumerate(rows)
    ]


def teacher_logits_in_order(
    teacher: EncoderTeacher, texts: list[str], labels: list[str]
) -> torch.Tensor:
    """The teacher's intent logits [N, C] with columns in `labels` order (the student's)."""
    missing = sorted(set(labels) - set(teacher.labels))
    if missing:
        raise ValueError(f"the encoder teacher does not know the intents {missing}; fine-tune it")
    order = [teacher.labels.index(label) for label in labels]
    return teacher.intent_logits(texts)[:, order]


def intents_with_references(rows: Sequence[Utterance], enough: int) -> set[str]:
    """The intents with at least `enough` reference replies (unrated rows with a reply) among
    `rows`; none when `enough` is 0."""
    if enough <= 0:
        return set()
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.reply and row.reward is None and row.intent is not None:
            counts[row.intent] += 1
    return {intent for intent, n in counts.items() if n >= enough}


@dataclass(frozen=True)
class ReplyQuota:
    """How many of an intent's distinct prompts go to the teacher: a share of them, never fewer
    than `floor` (when the intent has that many). The total then grows with the data and every
    intent, however small, gets some replies to learn from."""

    floor: int
    share: float

    def of(self, available: int) -> int:
        return min(available, max(self.floor, math.ceil(self.share * available)))


def sample_prompts(
    rows: Sequence[Utterance], budget: int, seed: int, quota: ReplyQuota | None = None
) -> list[Utterance]:
    """Up to `budget` rows, spread evenly over intents (round robin), distinct texts; with a
    `quota`, at most `quota.of(n)` of an intent's n distinct texts (without one, all of them).

    Within an intent, rows are taken in `sample_priority` order, the order snapshots draw their
    replay sample in: the prompts an earlier run asked the teacher about are the first ones of
    its replay, so an incremental run finds their replies in the teacher cache."""
    queues = [q[len(q) - quota.of(len(q)) :] if quota else q for q in _prompt_queues(rows, seed)]
    chosen: list[Utterance] = []
    while len(chosen) < budget and any(queues):
        for queue in queues:
            if queue and len(chosen) < budget:
                chosen.append(queue.pop())
    return chosen


def wanted_prompts(rows: Sequence[Utterance], seed: int, quota: ReplyQuota | None) -> int:
    """How many prompts `sample_prompts` would take with no budget."""
    return len(sample_prompts(rows, len(rows), seed, quota))


def _prompt_queues(rows: Sequence[Utterance], seed: int) -> list[list[Utterance]]:
    """Per intent (sorted), its distinct texts with the highest priority last (pop() first)."""
    by_intent: dict[str | None, list[Utterance]] = defaultdict(list)
    seen: set[str] = set()
    for row in rows:
        if row.text.lower() not in seen:
            seen.add(row.text.lower())
            by_intent[row.intent].append(row)
    queues = [by_intent[k] for k in sorted(by_intent, key=lambda x: x or "")]
    for queue in queues:
        queue.sort(
            key=lambda r: sample_priority(example_key(r.text, r.context), seed), reverse=True
        )
    return queues


@dataclass(frozen=True)
class TeacherReply:
    utterance: Utterance
    text: str
    token_ids: list[int]  # EOS-terminated responder tokens
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]


def teacher_messages(
    knowledge: Knowledge | None, turns: list[tuple[str, str]]
) -> list[dict[str, str]]:
    if knowledge is not None:
        return build_messages(knowledge, turns)
    # An agent (an operator; "operator" in older snapshots) speaks for the company.
    roles = {
        "customer": "user",
        "assistant": "assistant",
        "agent": "assistant",
        "operator": "assistant",
    }
    return [
        {"role": "system", "content": GENERIC_SYSTEM},
        *({"role": roles[speaker], "content": text} for speaker, text in turns),
    ]


def reply_examples(
    replies: Sequence[TeacherReply],
    references: Sequence[Utterance],
    source: SourceTokenizer,
    decoder_tokenize: Callable[[str], list[int]],
    *,
    eos_id: int,
    max_reply_tokens: int,
    seed: int,
) -> list[ReplyExample]:
    """Stage-2 examples: teacher replies (token KD + reward 1), references from the data
    (sequence-level, reward 1), rated replies (weight and reward label = the rating), replies
    operators rejected (reward 0, weight 0), and for each teacher reply a reply written for
    another intent as a reward-head negative (weight 0: it never trains the decoder)."""
    rng = random.Random(seed)
    contexts = source.ids([r.utterance.turns() for r in replies])
    examples: list[ReplyExample] = []
    for reply, ids in zip(replies, contexts, strict=True):
        tokens = reply.token_ids[:-1] if reply.token_ids[-1:] == [eos_id] else reply.token_ids
        examples.append(
            ReplyExample(
                input_ids=ids,
                reply_ids=tokens[:max_reply_tokens],
                teacher_topk=list(zip(reply.top_ids, reply.top_logprobs, strict=True)),
                reward_label=1.0,
                source="teacher",
                meta={"intent": reply.utterance.intent or ""},
            )
        )
        others = [r for r in replies if r.utterance.intent != reply.utterance.intent]
        if others:
            wrong = rng.choice(others)
            wrong_tokens = (
                wrong.token_ids[:-1] if wrong.token_ids[-1:] == [eos_id] else wrong.token_ids
            )
            examples.append(
                ReplyExample(
                    input_ids=ids,
                    reply_ids=wrong_tokens[:max_reply_tokens],
                    weight=0.0,
                    reward_label=0.0,
                    source="negative",
                )
            )
    ref_rows = [r for r in references if r.reply]
    # Replies written for other intents, as reward-head negatives of the references too (the
    # head learns that a fluent reply to another question is a bad reply to this one, also
    # where no teacher reply exists).
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in ref_rows:
        if row.reward is None and row.intent is not None and row.reply is not None:
            by_intent[row.intent].append(row.reply)
    for row, ids in zip(ref_rows, source.ids([r.turns() for r in ref_rows]), strict=True):
        assert row.reply is not None
        rated = row.reward is not None
        examples.append(
            ReplyExample(
                input_ids=ids,
                reply_ids=decoder_tokenize(row.reply)[:max_reply_tokens],
                # A rated reply counts as much as customers liked it (ratings-weighted);
                # a reference (an agent's reply, a correction, a data set reply) counts fully.
                weight=float(row.reward) if row.reward is not None else 1.0,
                reward_label=float(row.reward) if row.reward is not None else 1.0,
                source="rated" if rated else "reference",
            )
        )
        other_intents = sorted(i for i in by_intent if i != row.intent)
        if not rated and other_intents:
            wrong_reply = rng.choice(by_intent[rng.choice(other_intents)])
            examples.append(
                ReplyExample(
                    input_ids=ids,
                    reply_ids=decoder_tokenize(wrong_reply)[:max_reply_tokens],
                    weight=0.0,
                    reward_label=0.0,
                    source="negative",
                )
            )
    bad_rows = [r for r in references if r.rejected]
    for row, ids in zip(bad_rows, source.ids([r.turns() for r in bad_rows]), strict=True):
        assert row.rejected is not None
        examples.append(
            ReplyExample(
                input_ids=ids,
                reply_ids=decoder_tokenize(row.rejected)[:max_reply_tokens],
                weight=0.0,
                reward_label=0.0,
                source="negative",
            )
        )
    return examples
