"""Real ratings as stage-2 data, for measuring what the reward head learns.

Taskmaster-4's rated agent actions (good 1 / bad 0) and STAR's user satisfaction (one yes/no
verdict for every reply of a dialogue) become held-back-scorable `ReplyExample`s:

* `rated_records`: (conversation id, record) for every rated reply of one data set, read from a
  data folder laid out like ../shared/data (``taskmaster4/raw/reward``, ``star/dialogues.jsonl``);
* `split_by_conversation`: train and held-back `Utterance`s, held-back conversations chosen by a
  stable hash of their id, so no dialogue is on both sides;
* `build_reply_examples`: both sides tokenised on MiniLM's tokenizer, with a decoder vocabulary
  made of the reply tokens (so a tiny decoder fits);
* `small_reward_student`: a student for these examples (1-layer 64-wide decoder) whose encoder
  starts from MiniLM's first layers.

Shared by bench/reward_head.py and the unit test that the reward head learns from real ratings.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch

from bundle_runtime.vocab import build_decoder_vocab
from distill_worker.data.building import SourceTokenizer, reply_examples
from distill_worker.data.examples import ReplyExample
from distill_worker.data.importers.records import SeedRecord
from distill_worker.data.importers.star import read_star
from distill_worker.data.importers.taskmaster4 import read_taskmaster4
from distill_worker.data.loaders import Utterance
from distill_worker.data.snapshots.split import stable_unit
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.structural import init_student_encoder_from_teacher
from distill_worker.teacher.encoder import load_encoder, locate_minilm

RatedData = Literal["tm4", "star"]

# MiniLM's [PAD], [CLS], [SEP] serve as the decoder's pad, BOS and EOS before the vocab mapping,
# which puts them at 0, 1, 2 (the ids a student built for these examples uses).
_PAD, _BOS, _EOS = 0, 101, 102


def rated_paths(name: str, data: Path) -> Path:
    """Where data set `name` lives under the data folder `data`."""
    if name == "tm4":
        return data / "taskmaster4" / "raw" / "reward"
    if name == "star":
        return data / "star" / "dialogues.jsonl"
    raise ValueError(f"data set name {name!r} is unknown: use 'tm4' or 'star'")


def rated_records(name: str, data: Path) -> list[tuple[str, SeedRecord]]:
    """(conversation id, record) for every rated reply of data set `name` ("tm4" or "star")
    under the data folder `data`; conversation ids are prefixed with the data set name."""
    path = rated_paths(name, data)
    if name == "tm4":
        records, key = read_taskmaster4(path), "conversation_id"
    else:
        records, key = read_star(path), "dialogue_id"
    return [(f"{name}:{r.meta[key]}", r) for r in records if r.reward is not None and r.reply]


def split_by_conversation(
    rows: list[tuple[str, SeedRecord]],
    heldback_fraction: float,
    n_train: int,
    n_heldback: int,
    *,
    with_steps: bool = True,
) -> tuple[list[Utterance], list[Utterance]]:
    """Held-back conversations by a stable hash of their id; then the first n of each side in
    hash order (a fixed, seed-free sample). With `with_steps`, the agent's API calls and results
    after the customer's turn (Taskmaster-4's `steps_since_user`) are appended to the customer
    text as assistant turns, as `format_source` writes turns: the agent saw them before acting."""
    if not 0.0 < heldback_fraction < 1.0:
        raise ValueError(f"heldback_fraction must be in (0, 1), got {heldback_fraction}")
    train: list[Utterance] = []
    held: list[Utterance] = []
    for conv, record in sorted(rows, key=lambda r: stable_unit(r[0] + r[1].text, "order")):
        side = held if stable_unit(conv, "heldback") < heldback_fraction else train
        steps = "".join(f" | assistant: {s}" for s in record.meta.get("steps_since_user", []))
        side.append(
            Utterance(
                text=record.text + (steps if with_steps else ""),
                context=record.context,
                reply=record.reply,
                reward=record.reward,
            )
        )
    return train[:n_train], held[:n_heldback]


def build_reply_examples(
    train: list[Utterance], held: list[Utterance], max_source: int, max_reply: int
) -> tuple[list[ReplyExample], list[ReplyExample], int, int]:
    """Stage-2 examples on MiniLM's tokenizer for both sides (decoder vocabulary = the tokens of
    the replies, with pad/BOS/EOS at 0/1/2); returns (train, held-back, encoder vocab size,
    decoder vocab size)."""
    tokenizer_json = locate_minilm() / "tokenizer.json"
    source = SourceTokenizer(tokenizer_json, max_tokens=max_source, context_turns=4)
    decoder = SourceTokenizer(tokenizer_json, max_tokens=max_reply, context_turns=1).tokenizer

    def tokenize(text: str) -> list[int]:
        return list(decoder.encode(text, add_special_tokens=False).ids)

    def examples(rows: list[Utterance]) -> list[ReplyExample]:
        return reply_examples(
            [], rows, source, tokenize, eos_id=_EOS, max_reply_tokens=max_reply, seed=0
        )

    raw_train, raw_held = examples(train), examples(held)
    vocab = build_decoder_vocab([_PAD, _BOS, _EOS], [e.reply_ids for e in raw_train + raw_held])

    def mapped(rows: list[ReplyExample]) -> list[ReplyExample]:
        return [replace(e, reply_ids=vocab.to_student(e.reply_ids)) for e in rows]

    return mapped(raw_train), mapped(raw_held), source.tokenizer.get_vocab_size(), vocab.size


def small_reward_student(enc_vocab: int, dec_vocab: int, enc_layers: int, seed: int) -> Student:
    """A student sized for `build_reply_examples` (pad/BOS/EOS at 0/1/2): `enc_layers` encoder
    layers copied from MiniLM's first ones, a 1-layer 64-wide decoder, a 64-wide reward head."""
    torch.manual_seed(seed)
    student = Student(
        StudentConfig(
            n_intents=2,
            enc_vocab_size=enc_vocab,
            enc_layers=enc_layers,
            dec_vocab_size=dec_vocab,
            dec_hidden=64,
            dec_layers=1,
            dec_heads=2,
            dec_ffn=128,
            dec_bos_id=1,
            dec_eos_id=2,
            dec_pad_id=0,
            reward_hidden=64,
        )
    )
    teacher = load_encoder(locate_minilm(), threads=torch.get_num_threads())
    init_student_encoder_from_teacher(student, teacher.teacher_state_dict(), enc_layers)
    return student
