"""`RunningBatch`: the rows one model is generating, their KV caches merged for batched steps.

Cache layout (h heads, d head size; one K and one V per decoder layer):

    past K/V   [B,h,L,d]  left-padded: row i's real entries are its last lengths[i] columns
    self_mask  [B,L]      1 on real entries
    lengths    [B]        tokens fed so far (BOS included) = the next token's position
    cross K/V  [B,h,S,d]  right-padded like the encoder input; enc_mask [B,S]
    pending    [B]        the token each row feeds next (its last output)

`advance(newcomers)` is one iteration: with the bundle's `cross_kv` graph, newcomers join with an
empty past (encoder + cross K/V only), and with `decoder_step` their first token comes from the
same batched step as everyone else's: the decoder's weights are read once per iteration, not
once more per arrival. (`prefill` instead gives newcomers their first token apart, encoder +
first decoder step: a batch built at once, as the serving benchmark does.) Rows leave by request
id, and the caches are trimmed to the longest remaining row.
Not thread-safe: one worker thread owns it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from bundle_runtime.decoding import next_tokens
from bundle_runtime.onnx_student import FloatArray, Generation, IntArray, OnnxStudent, StudentReply

A = TypeVar("A", FloatArray, IntArray)


def _stack(old: A, new: A, width: int, axis: int, left: bool) -> A:
    """Rows of `old` then rows of `new` (axis 0), both zero-padded to `width` along `axis` on
    the left or the right: one allocation, two copies."""
    shape = list(old.shape)
    shape[0], shape[axis] = old.shape[0] + new.shape[0], width
    out = np.zeros(shape, dtype=old.dtype)
    for part, rows in ((old, slice(0, old.shape[0])), (new, slice(old.shape[0], None))):
        size = part.shape[axis]
        cols = slice(width - size, width) if left else slice(0, size)
        index: list[slice] = [slice(None)] * out.ndim
        index[0], index[axis] = rows, cols
        out[tuple(index)] = part
    return out


@dataclass
class RowState:
    request_id: int
    source_tokens: int
    pooled: FloatArray  # [H]
    intent_logits: FloatArray  # [C]
    hidden_sum: FloatArray  # [D], decoder hidden summed over the inputs fed
    started: float  # perf_counter when the request was submitted
    fed: int = 0
    tokens: list[int] = field(default_factory=list)
    eos: bool = False
    sent: str = ""  # text already streamed


class RunningBatch:
    def __init__(self, student: OnnxStudent) -> None:
        self.student = student
        self.rows: list[RowState] = []
        self._past: list[FloatArray] = []
        self._cross: list[FloatArray] = []
        self._self_mask = np.zeros((0, 0), dtype=np.int64)
        self._enc_mask = np.zeros((0, 0), dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int64)
        self._pending = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def widths(self) -> tuple[int, int]:
        """(past width L, source width S) of the merged caches."""
        return int(self._self_mask.shape[1]), int(self._enc_mask.shape[1])

    def row(self, request_id: int) -> RowState:
        return next(r for r in self.rows if r.request_id == request_id)

    def advance(self, newcomers: list[tuple[int, str, float]]) -> dict[int, int]:
        """One iteration: newcomers (request id, encoder source, submit time) join, every row
        produces one token -> request id -> token (EOS included)."""
        if newcomers:
            self.join(newcomers)
        return self.step() if self.rows else {}

    def join(self, items: list[tuple[int, str, float]]) -> None:
        """Newcomers join with an empty past and BOS pending; the next `step` produces their
        first token."""
        s = self.student
        ids, mask = s.encode_texts([source for _, source, _ in items])
        hidden, pooled, intent_logits = s.encode(ids, mask)
        cross = s.cross_kv(hidden)
        width = max(self._self_mask.shape[1], 1)
        heads, head_size = cross[0].shape[1], cross[0].shape[3]
        empty = np.zeros((len(items), heads, width, head_size), dtype=np.float32)
        rows = [
            RowState(rid, int(mask[i].sum()), pooled[i], intent_logits[i],
                     np.zeros(s.decoder_hidden, dtype=np.float32), started)
            for i, (rid, _, started) in enumerate(items)
        ]  # fmt: skip
        self._merge(rows, [empty] * len(cross), cross, mask, past_mask=0)
        self._lengths = np.concatenate([self._lengths, np.zeros(len(items), dtype=np.int64)])
        self._pending[-len(items) :] = s.bos

    def prefill(self, items: list[tuple[int, str, float]]) -> dict[int, int]:
        """Newcomers (request id, encoder source text, submit time) -> their first token each;
        they join the batch (a row whose first token is EOS joins too; remove it)."""
        s = self.student
        ids, mask = s.encode_texts([source for _, source, _ in items])
        hidden, pooled, intent_logits = s.encode(ids, mask)
        logits, step_hidden, present, cross = s.first_step(hidden, mask)
        new_rows = [
            RowState(rid, int(mask[i].sum()), pooled[i], intent_logits[i],
                     np.zeros_like(step_hidden[i]), started)
            for i, (rid, _, started) in enumerate(items)
        ]  # fmt: skip
        n = len(new_rows)
        self._merge(new_rows, present, cross, mask, past_mask=1)
        self._lengths = np.concatenate([self._lengths, np.ones(n, dtype=np.int64)])
        return self._record(new_rows, logits, step_hidden, len(self.rows) - n)

    def step(self) -> dict[int, int]:
        """One decoder step for every row -> the token each produced."""
        batch = self._self_mask.shape[0]
        mask_in = np.concatenate([self._self_mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        logits, hidden, present = self.student.padded_step(
            self._pending, self._lengths, mask_in, self._enc_mask, self._past, self._cross
        )
        self._past, self._self_mask = present, mask_in
        self._lengths = self._lengths + 1
        self._trim()
        return self._record(self.rows, logits, hidden, 0)

    def remove(self, request_ids: Iterable[int]) -> None:
        gone = set(request_ids)
        keep = [i for i, r in enumerate(self.rows) if r.request_id not in gone]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        idx = np.asarray(keep, dtype=np.int64)
        source = max((r.source_tokens for r in self.rows), default=0)
        self._past = [p[idx] for p in self._past]
        self._self_mask = self._self_mask[idx]
        self._cross = [c[idx][:, :, :source] for c in self._cross]
        self._enc_mask = self._enc_mask[idx][:, :source]
        self._lengths, self._pending = self._lengths[idx], self._pending[idx]
        self._trim()

    def _trim(self) -> None:
        """Drop past columns no row uses (the left, padded ones beyond the longest row)."""
        width = self._self_mask.shape[1]
        longest = int(self._lengths.max()) if len(self._lengths) else 0
        if longest < width:
            self._past = [np.ascontiguousarray(p[:, :, width - longest :]) for p in self._past]
            self._self_mask = self._self_mask[:, width - longest :]

    def replies(self, finished: dict[int, bool]) -> dict[int, StudentReply]:
        """Rows that are done (request id -> whether EOS ended them) -> their replies (reward
        computed here, batched). The rows stay in the batch: `remove` them."""
        rows = [self.row(rid) for rid in finished]
        if not rows:
            return {}
        means = np.stack([r.hidden_sum / max(r.fed, 1) for r in rows]).astype(np.float32)
        pooled = np.stack([r.pooled for r in rows])
        gen = Generation(
            tokens=[r.tokens for r in rows],
            finished=[finished[r.request_id] for r in rows],
            intent_logits=np.stack([r.intent_logits for r in rows]),
            reward_logits=self.student.reward_logits(pooled, means),
        )
        now = time.perf_counter()
        latency = [(now - r.started) * 1000.0 for r in rows]
        out = self.student.make_replies(gen, [r.source_tokens for r in rows], latency)
        return {r.request_id: reply for r, reply in zip(rows, out, strict=True)}

    def text_delta(self, request_id: int, final: str | None = None) -> str:
        """The text produced since the last call, for streaming (`final`: the reply's text,
        once it is done). Held back while the decoded prefix is not stable."""
        row = self.row(request_id)
        text = final if final is not None else self.student.decode_text(row.tokens).strip()
        if not text.startswith(row.sent) or len(text) == len(row.sent):
            return ""
        delta, row.sent = text[len(row.sent) :], text
        return delta

    # ------------------------------------------------------------------------- internals

    def _record(
        self, rows: list[RowState], logits: FloatArray, hidden: FloatArray, offset: int
    ) -> dict[int, int]:
        histories = [row.tokens for row in rows]
        nxt = next_tokens(logits, histories, self.student.eos, self.student.decoding)
        self._pending[offset : offset + len(rows)] = nxt
        out = {}
        for j, row in enumerate(rows):
            token = int(nxt[j])
            row.hidden_sum += hidden[j]
            row.fed += 1
            if token == self.student.eos:
                row.eos = True
            else:
                row.tokens.append(token)
            out[row.request_id] = token
        return out

    def _merge(
        self, rows: list[RowState], present: list[FloatArray], cross: list[FloatArray],
        enc_mask: IntArray, past_mask: int,
    ) -> None:  # fmt: skip
        """Append rows whose past is `present` (1 column after a first step, mask `past_mask`
        1; or empty columns, mask 0) and whose cross K/V is `cross`."""
        n = len(rows)
        width = max(self._self_mask.shape[1], present[0].shape[2], 1)
        source = max(self._enc_mask.shape[1], enc_mask.shape[1])
        new_mask = np.full((n, present[0].shape[2]), past_mask, dtype=np.int64)
        if not self.rows:
            self._past, self._cross = list(present), list(cross)
            self._self_mask, self._enc_mask = new_mask, enc_mask
            self._lengths = np.zeros(0, dtype=np.int64)
        else:
            self._past = [
                _stack(old, new, width, 2, left=True)
                for old, new in zip(self._past, present, strict=True)
            ]
            self._cross = [
                _stack(old, new, source, 2, left=False)
                for old, new in zip(self._cross, cross, strict=True)
            ]
            self._self_mask = _stack(self._self_mask, new_mask, width, 1, left=True)
            self._enc_mask = _stack(self._enc_mask, enc_mask, source, 1, left=False)
        self.rows.extend(rows)
        self._pending = np.concatenate([self._pending, np.zeros(n, dtype=np.int64)])
