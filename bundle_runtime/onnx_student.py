"""`OnnxStudent`: a verified bundle on ONNX Runtime (CPU, or CUDA on request), torch-free.

The decode loop is written by hand over three sessions (encoder, decoder first step, decoder
with past): batched greedy decoding with repetition control (`bundle_runtime.decoding`, the
manifest's settings unless the caller overrides them) where a row that emitted EOS leaves the
batch, so later steps only pay for the rows still writing. A reply cut by the token limit ends
at its last sentence boundary; template slots learned from references are rephrased
(`bundle_runtime.slots`). The reward is the reward graph on the pooled encoder state
and the mean decoder state over the inputs fed (BOS and the generated tokens, i.e. the teacher-
forced decoder input of the reply), the same quantity `Student.reward` pools in training.

The `decoder_step` graph is the decoder-with-past step over caches of different lengths,
left-padded, with explicit positions and a self-attention mask, and `cross_kv` gives a new
request's cross K/V; the batcher (`bundle_runtime.running_batch`) uses them to merge requests
that started at different steps. A bundle exported before they existed is refused with the
command that exports it again.

Shapes: B batch, S source length, H encoder hidden, D decoder hidden, V decoder vocabulary,
C intents, h heads, L past length, d head size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from bundle_runtime.decoding import Decoding, next_tokens, trim_to_sentence
from bundle_runtime.guard import min_reward_of
from bundle_runtime.handoff_score import MAX_SOFTMAX, check_handoff, intent_scores
from bundle_runtime.manifest import BundleError, verify_bundle
from bundle_runtime.slots import rephrase_slots
from bundle_runtime.source import format_source

Precision = Literal["auto", "fp32", "int8"]
Provider = Literal["cpu", "cuda", "tensorrt"]
REQUIRED_GRAPHS = frozenset({"encoder", "decoder", "decoder_with_past", "reward"})
BATCHING_GRAPHS = frozenset({"decoder_step", "cross_kv"})  # added to the format later
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class StudentReply:
    text: str
    intent: str
    confidence: float  # softmax probability of `intent`
    reward: float  # sigmoid of the reward logit
    handoff: bool
    handoff_reason: str | None  # "out_of_scope" | "low_confidence" | None
    tokens: list[int]  # generated decoder ids, without BOS/EOS
    source_tokens: int  # encoder tokens read, [CLS] and [SEP] included
    finish_reason: Literal["stop", "length"]
    latency_ms: float  # wall time of the call that produced it (the whole batch)
    guard_min_reward: float = 0.0  # the serving guard's reward threshold for this bundle


@dataclass(frozen=True)
class Generation:
    """What one pass over a batch produced; row order is the input's."""

    tokens: list[list[int]]
    finished: list[bool]  # EOS emitted (False: cut by the length limit)
    intent_logits: FloatArray  # [B, C]
    reward_logits: FloatArray  # [B]


class OnnxStudent:
    def __init__(
        self,
        bundle_dir: Path,
        *,
        precision: Precision = "auto",
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        handoff_threshold: float | None = None,
        handoff_score: str = MAX_SOFTMAX,
        provider: Provider = "cpu",
        decoding: Decoding | None = None,
        decoding_overrides: Mapping[str, Any] | None = None,
        guard_min_reward: float | None = None,
    ) -> None:
        """`decoding` replaces the manifest's decoding settings; `decoding_overrides` (serving
        settings) changes some of them; `guard_min_reward` overrides the bundle's guard
        threshold; `handoff_threshold` overrides the bundle's threshold and score, with
        `handoff_score` naming what it is compared with (`bundle_runtime.handoff_score`)."""
        self.bundle_dir = bundle_dir
        self.manifest = verify_bundle(bundle_dir)
        try:
            self.decoding = (decoding or Decoding.from_dict(self.manifest.decoding)).with_overrides(
                decoding_overrides or {}
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"bundle {bundle_dir}: {exc}") from exc
        graphs = self.manifest.graphs
        if precision == "auto":
            precision = "int8" if graphs.get("int8") else "fp32"
        if not graphs.get(precision):
            raise BundleError(
                f"bundle {bundle_dir} has no {precision} graphs (it has {sorted(graphs)}); "
                "choose another precision or export the bundle with it"
            )
        self.precision: Literal["fp32", "int8"] = precision
        missing = REQUIRED_GRAPHS - set(graphs[precision])
        if missing:
            raise BundleError(f"bundle {bundle_dir} lacks the {precision} graphs {sorted(missing)}")
        if BATCHING_GRAPHS - set(graphs[precision]):
            raise BundleError(
                f"bundle {bundle_dir} predates the current bundle format (it has no "
                f"{' / '.join(sorted(BATCHING_GRAPHS))} graphs); export it again with "
                f"`chatdistill export --bundle {bundle_dir} --out <new folder>` and serve that"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.provider = provider
        self._sessions: dict[str, Any]
        if provider == "tensorrt":  # imported only on request: no TensorRT on CPU images
            from bundle_runtime.tensorrt import load_sessions

            self._sessions = dict(load_sessions(bundle_dir, graphs[precision]))
        else:
            providers = _providers(provider)
            self._sessions = {
                role: ort.InferenceSession(
                    str(bundle_dir / name), sess_options=options, providers=providers
                )
                for role, name in graphs[precision].items()
            }
        self._enc_tok = Tokenizer.from_file(str(bundle_dir / "encoder_tokenizer.json"))
        self._dec_tok = Tokenizer.from_file(str(bundle_dir / "decoder_tokenizer.json"))
        self._enc_tok.no_truncation()
        self._enc_tok.no_padding()
        cfg = self.manifest.student_config
        special = self.manifest.special_tokens
        self._cls, self._sep, self._pad = special["enc_cls"], special["enc_sep"], special["enc_pad"]
        self._bos, self._eos = special["dec_bos"], special["dec_eos"]
        self._layers = int(cfg["dec_layers"])
        self._dec_hidden = int(cfg["dec_hidden"])
        self._dec_max_positions = int(cfg["dec_max_positions"])
        self._max_source = min(self.manifest.max_source_tokens, int(cfg["enc_max_positions"]))
        self.handoff_score, self.handoff_threshold = (
            (self.manifest.handoff_score, self.manifest.handoff_threshold)
            if handoff_threshold is None
            else (handoff_score, handoff_threshold)
        )
        labels, oos = self.manifest.intent_labels, self.manifest.oos_label
        self._oos_index = labels.index(oos) if oos in labels else None
        try:
            check_handoff(self.handoff_score, self.handoff_threshold)
        except ValueError as exc:
            where = "the manifest's" if handoff_threshold is None else "the serving override of"
            raise BundleError(f"bundle {bundle_dir}: {where} handoff threshold: {exc}") from exc
        self._kv = [f"{i}.{part}" for i in range(self._layers) for part in ("key", "value")]
        self.guard_min_reward = min_reward_of(self.manifest.guard, guard_min_reward)

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def bos(self) -> int:
        return self._bos

    @property
    def decoder_hidden(self) -> int:
        return self._dec_hidden

    def cross_kv(self, hidden: FloatArray) -> list[FloatArray]:
        """Encoder hidden [B,S,H] -> cross K/V per layer, each [B,h,S,d] (`cross_kv` graph)."""
        out: list[FloatArray] = self._sessions["cross_kv"].run(None, {"encoder_hidden": hidden})
        return out

    @property
    def eos(self) -> int:
        return self._eos

    def limit(self, max_new_tokens: int | None) -> int:
        """The number of tokens a reply may have: the request's, the bundle's, the positions'."""
        return self._limit(max_new_tokens)

    def source_of(self, turns: list[tuple[str, str]]) -> str:
        return format_source(turns, self.manifest.context_turns)

    # ------------------------------------------------------------------------------ encoding

    def encode_texts(self, texts: list[str]) -> tuple[IntArray, IntArray]:
        """-> (input_ids, attention_mask) [B, S]: [CLS] text [SEP], right-padded. Long inputs
        keep their end (the latest turns): tokens are dropped from the left, after [CLS]."""
        keep = self._max_source - 2
        rows = [
            e.ids[-keep:] if keep > 0 else []
            for e in self._enc_tok.encode_batch(texts, add_special_tokens=False)
        ]
        width = max(len(r) for r in rows) + 2
        ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row) + 2] = [self._cls, *row, self._sep]
            mask[i, : len(row) + 2] = 1
        return ids, mask

    def classify(self, input_ids: IntArray, mask: IntArray) -> tuple[list[str], list[float]]:
        """-> (intent label, softmax confidence) per row."""
        labels, confidences, _ = self.intents(self.intent_logits(input_ids, mask))
        return labels, confidences

    def intent_logits(self, input_ids: IntArray, mask: IntArray) -> FloatArray:
        """The encoder's intent logits [B, C] (temperature-scaled at export)."""
        _, _, logits = self._sessions["encoder"].run(
            None, {"input_ids": input_ids, "attention_mask": mask}
        )
        out: FloatArray = logits
        return out

    def intents(self, logits: FloatArray) -> tuple[list[str], list[float], list[float]]:
        """-> (intent label, softmax confidence, handoff score) per row: the score the bundle's
        threshold is compared with (`handoff_score`), -inf where the intent is out-of-scope."""
        labels = self.manifest.intent_labels
        best, confidences, values = intent_scores(logits, self.handoff_score, self._oos_index)
        return [labels[i] for i in best], confidences, values

    def hands_off(self, intent: str, value: float) -> str | None:
        """Why a message with this predicted intent and handoff score goes to a human, or None."""
        if self.manifest.oos_label is not None and intent == self.manifest.oos_label:
            return "out_of_scope"
        return "low_confidence" if value < self.handoff_threshold else None

    # ------------------------------------------------------------------------------ decoding

    def first_step(
        self, hidden: FloatArray, mask: IntArray
    ) -> tuple[FloatArray, FloatArray, list[FloatArray], list[FloatArray]]:
        """-> (logits [B,V] of the last position, hidden [B,D], present self K/V, cross K/V)."""
        bos = np.full((hidden.shape[0], 1), self._bos, dtype=np.int64)
        out = self._sessions["decoder"].run(
            None, {"input_ids": bos, "encoder_hidden": hidden, "encoder_mask": mask}
        )
        n = 2 * self._layers
        return out[0][:, -1], out[1][:, -1], out[2 : 2 + n], out[2 + n : 2 + 2 * n]

    def next_step(
        self, tokens: IntArray, mask: IntArray, past: list[FloatArray], cross: list[FloatArray]
    ) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
        """tokens [B] -> (logits [B,V], hidden [B,D], present self K/V, each [B,h,L+1,d])."""
        feed: dict[str, npt.NDArray[np.generic]] = {
            "input_ids": tokens[:, None],
            "encoder_mask": mask,
        }
        feed.update({f"past.{name}": value for name, value in zip(self._kv, past, strict=True)})
        feed.update({f"cross.{name}": value for name, value in zip(self._kv, cross, strict=True)})
        out = self._sessions["decoder_with_past"].run(None, feed)
        return out[0][:, -1], out[1][:, -1], out[2:]

    def padded_step(
        self,
        tokens: IntArray,
        positions: IntArray,
        self_mask: IntArray,
        enc_mask: IntArray,
        past: list[FloatArray],
        cross: list[FloatArray],
    ) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
        """One step of rows whose caches have different lengths (the `decoder_step` graph).
        tokens, positions [B] (a row's position is its real past length); self_mask [B,P+1]
        (1 on the real past entries and the new token); past K/V [B,h,P,d] left-padded; cross
        K/V [B,h,S,d] with enc_mask [B,S] -> (logits [B,V], hidden [B,D], present [B,h,P+1,d])."""
        feed: dict[str, npt.NDArray[np.generic]] = {
            "input_ids": tokens[:, None],
            "positions": positions[:, None],
            "self_mask": self_mask,
            "encoder_mask": enc_mask,
        }
        feed.update({f"past.{name}": value for name, value in zip(self._kv, past, strict=True)})
        feed.update({f"cross.{name}": value for name, value in zip(self._kv, cross, strict=True)})
        out = self._sessions["decoder_step"].run(None, feed)
        return out[0][:, -1], out[1][:, -1], out[2:]

    def encode(self, input_ids: IntArray, mask: IntArray) -> tuple[FloatArray, ...]:
        """-> (hidden [B,S,H], pooled [B,H], intent_logits [B,C])."""
        return tuple(
            self._sessions["encoder"].run(None, {"input_ids": input_ids, "attention_mask": mask})
        )

    def _limit(self, max_new_tokens: int | None) -> int:
        wanted = self.manifest.max_new_tokens if max_new_tokens is None else max_new_tokens
        return max(0, min(wanted, self._dec_max_positions - 1))

    def run(
        self,
        input_ids: IntArray,
        mask: IntArray,
        max_new_tokens: int | None = None,
        decoding: Decoding | None = None,
    ) -> Generation:
        """Encoder, decoding with the KV cache (`decoding`: this call's settings instead of the
        student's, e.g. `Decoding.greedy()` for parity with torch), reward."""
        hidden, pooled, intent_logits = self._sessions["encoder"].run(
            None, {"input_ids": input_ids, "attention_mask": mask}
        )
        limit = self._limit(max_new_tokens)
        tokens, finished, means = self._decode(hidden, mask, limit, decoding or self.decoding)
        (reward_logits,) = self._sessions["reward"].run(
            None, {"pooled": pooled, "reply_hidden_mean": means}
        )
        return Generation(tokens, finished, intent_logits, reward_logits)

    def _decode(
        self, hidden: FloatArray, mask: IntArray, limit: int, decoding: Decoding
    ) -> tuple[list[list[int]], list[bool], FloatArray]:
        """-> (tokens, finished, mean decoder hidden [B,D] over the inputs fed). Rows that
        emitted EOS leave the batch; the others go on with their slices of the caches."""
        batch = hidden.shape[0]
        tokens: list[list[int]] = [[] for _ in range(batch)]
        finished = [False] * batch
        sums = np.zeros((batch, self._dec_hidden), dtype=np.float32)
        counts = np.zeros(batch, dtype=np.float32)
        if limit == 0:
            return tokens, finished, sums
        active = np.arange(batch)
        logits, step_hidden, past, cross = self.first_step(hidden, mask)
        for step in range(limit):
            sums[active] += step_hidden
            counts[active] += 1.0
            nxt = next_tokens(logits, [tokens[row] for row in active], self._eos, decoding)
            keep: list[int] = []
            for j, row in enumerate(active):
                if int(nxt[j]) == self._eos:
                    finished[row] = True
                else:
                    tokens[row].append(int(nxt[j]))
                    keep.append(j)
            if not keep or step == limit - 1:
                break
            if len(keep) < len(active):
                idx = np.asarray(keep)
                active, nxt, mask = active[idx], nxt[idx], mask[idx]
                past = [p[idx] for p in past]
                cross = [c[idx] for c in cross]
            logits, step_hidden, past = self.next_step(nxt, mask, past, cross)
        means: FloatArray = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
        return tokens, finished, means

    def generate(
        self, input_ids: IntArray, mask: IntArray, max_new_tokens: int | None = None
    ) -> list[list[int]]:
        """Plain greedy decoder ids per row (without BOS/EOS): the same tokens as the torch
        `Student.generate`, for parity checks."""
        return self.run(input_ids, mask, max_new_tokens, Decoding.greedy()).tokens

    def step_logits(self, input_ids: IntArray, mask: IntArray, steps: int) -> FloatArray:
        """-> [B, steps, V]: the logits of the first greedy steps, every row kept (for parity
        checks against the torch student)."""
        hidden, _, _ = self._sessions["encoder"].run(
            None, {"input_ids": input_ids, "attention_mask": mask}
        )
        steps = max(1, self._limit(steps))
        logits, _, past, cross = self.first_step(hidden, mask)
        out = [logits]
        for _ in range(steps - 1):
            nxt = logits.argmax(axis=-1).astype(np.int64)
            logits, _, past = self.next_step(nxt, mask, past, cross)
            out.append(logits)
        return np.stack(out, axis=1)

    # ------------------------------------------------------------------------------ replies

    def reply(
        self, turns: list[tuple[str, str]], max_new_tokens: int | None = None
    ) -> StudentReply:
        """Answer one conversation: turns are (role, text), oldest first."""
        return self.reply_batch([turns], max_new_tokens)[0]

    def reply_batch(
        self, conversations: list[list[tuple[str, str]]], max_new_tokens: int | None = None
    ) -> list[StudentReply]:
        if not conversations:
            return []
        start = time.perf_counter()
        sources = [format_source(turns, self.manifest.context_turns) for turns in conversations]
        input_ids, mask = self.encode_texts(sources)
        gen = self.run(input_ids, mask, max_new_tokens)
        latency_ms = (time.perf_counter() - start) * 1000.0
        return self.make_replies(
            gen, [int(n) for n in mask.sum(axis=1)], [latency_ms] * len(sources)
        )

    def decode_text(self, tokens: list[int]) -> str:
        """Decoder ids (student vocabulary) -> text, unstripped."""
        vocab = self.manifest.decoder_vocab
        ids = [vocab[t] for t in tokens] if vocab else tokens
        return str(self._dec_tok.decode(ids, skip_special_tokens=True))

    def reward_logits(self, pooled: FloatArray, means: FloatArray) -> FloatArray:
        """pooled [B,H], mean decoder hidden over the inputs fed [B,D] -> reward logits [B]."""
        (out,) = self._sessions["reward"].run(None, {"pooled": pooled, "reply_hidden_mean": means})
        logits: FloatArray = out
        return logits

    def make_replies(
        self, gen: Generation, source_tokens: list[int], latency_ms: list[float]
    ) -> list[StudentReply]:
        """Texts, intents, rewards and handoff decisions of a generation, row by row."""
        texts = [self.decode_text(row) for row in gen.tokens]
        intents, confidences, values = self.intents(gen.intent_logits)
        rewards = 1.0 / (1.0 + np.exp(-gen.reward_logits.astype(np.float64)))
        replies = []
        for i, (intent, confidence) in enumerate(zip(intents, confidences, strict=True)):
            text = rephrase_slots(texts[i].strip())
            if not gen.finished[i] and text:
                text = trim_to_sentence(text)
            reason = self.hands_off(intent, values[i])
            replies.append(
                StudentReply(
                    text=text,
                    intent=intent,
                    confidence=confidence,
                    reward=float(rewards[i]),
                    handoff=reason is not None,
                    handoff_reason=reason,
                    tokens=gen.tokens[i],
                    source_tokens=source_tokens[i],
                    finish_reason="stop" if gen.finished[i] else "length",
                    latency_ms=latency_ms[i],
                    guard_min_reward=self.guard_min_reward,
                )
            )
        return replies


def _providers(provider: Provider) -> list[str]:
    """ONNX Runtime execution providers for `provider`; a clear error when CUDA is missing."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BundleError(
            "serving.provider is cuda but this ONNX Runtime has no CUDAExecutionProvider "
            f"(it has {available}). Install onnxruntime-gpu matching the machine's CUDA, "
            "or set CHATDISTILL_SERVING__PROVIDER=cpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]
