"""The responder in process: a prepared transformers causal LM (by default SmolLM2-135M-Instruct).

`generate` renders each chat with the model's chat template (generation prompt added), batches
with left padding, and decodes greedily at temperature 0, else samples (no top-k / top-p cut,
like vLLM's defaults) under a forked RNG seeded with `seed`. `score` and `full_logprobs` run one
teacher-forced forward pass over prompt + reply and read the log-softmax at the reply positions.

Threads: torch's intra-op thread count is set to `threads` for each call and restored after.
Default 1, measured on this 2-core machine with SmolLM2-135M (fp32, greedy, 2 chats x 32 new
tokens / one scoring pass): idle, 3.1 s / 0.32 s with 1 thread vs 3.3 s / 0.25 s with 2; with
other work running (load 2-7), 3.1-7.2 s / 0.3-0.7 s vs 39-88 s / 0.9-14 s. A 135M model's small
matmuls gain little from a second thread, and a thread waiting for a busy core stalls each step.

Device: `device` (a torch.device or its name; default the CPU) holds the fp32 model and the
inputs; sampling forks that GPU's RNG as well as the CPU's; `full_logprobs` comes back on the CPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill_worker.teacher.base import (
    Message,
    ScoredReply,
    TeacherSetupError,
    reply_span,
)
from distill_worker.teacher.prepare import META_FILE

DEFAULT_THREADS = 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op threads, then restore the previous count."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


class LocalResponder:
    """A `Responder` running a transformers causal LM on this machine's CPU (or a GPU if given)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int | None = None,
        batch_size: int = 8,
        device: torch.device | str = "cpu",
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (model_dir / "config.json").is_file():
            raise TeacherSetupError(
                model_dir.name,
                f"{model_dir} holds no transformers model",
                "prepare it first with distill_worker.teacher.prepare.prepare_responder",
            )
        self.threads = threads or DEFAULT_THREADS
        self.batch_size = batch_size
        self.device = torch.device(device)
        meta_path = model_dir / META_FILE
        name = model_dir.name
        if meta_path.is_file():
            name = str(json.loads(meta_path.read_text(encoding="utf-8")).get("teacher_id", name))
        self.teacher_id = f"local:{name}"
        self.tokenizer: Any = AutoTokenizer.from_pretrained(
            model_dir, local_files_only=True, padding_side="left"
        )
        if not self.tokenizer.chat_template or self.tokenizer.eos_token_id is None:
            raise TeacherSetupError(self.teacher_id, f"{model_dir} has no chat template or eos")
        with torch_threads(self.threads):
            model: Any = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, local_files_only=True
            )
        self.model: Any = model.to(self.device).eval()
        self.eos_id = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id

    # ----------------------------------------------------------------------------- the protocol

    def generate(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[list[str]]:
        """`n` replies per chat; deterministic for the same batch, seed and `batch_size`."""
        if n < 1 or max_new_tokens < 1 or temperature < 0:
            raise ValueError("need n >= 1, max_new_tokens >= 1 and temperature >= 0")
        prompts = [self._render(m, add_generation_prompt=True) for m in messages_batch]
        replies: list[list[str]] = []
        gpus = [self.device] if self.device.type == "cuda" else []
        with torch_threads(self.threads), torch.random.fork_rng(devices=gpus):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                replies.extend(self._generate_chunk(chunk, n, max_new_tokens, temperature))
        return replies

    def score(self, messages: list[Message], reply: str, *, top_k: int) -> ScoredReply:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        ids, logp = self._reply_logprobs(messages, reply)
        target = torch.tensor(ids, device=logp.device)
        actual = logp.gather(1, target[:, None])[:, 0]
        top = logp.topk(min(top_k, logp.shape[-1]), dim=-1)  # sorted, most likely first
        return ScoredReply(
            token_ids=ids,
            logprobs=actual.tolist(),
            top_ids=top.indices.tolist(),
            top_logprobs=top.values.tolist(),
        )

    def full_logprobs(self, messages: list[Message], reply: str) -> Tensor:
        """Log-probabilities over the whole vocabulary at each reply position: [T, V], fp32, on
        the CPU.

        Row t is the distribution that predicts `score(...).token_ids[t]`.
        """
        return self._reply_logprobs(messages, reply)[1].cpu()

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---------------------------------------------------------------------------------- helpers

    def _render(self, messages: list[Message], *, add_generation_prompt: bool) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )

    def _generate_chunk(
        self, prompts: list[str], n: int, max_new_tokens: int, temperature: float
    ) -> list[list[str]]:
        enc = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": temperature,
                "top_k": 0,
                "top_p": 1.0,
                "num_return_sequences": n,
            }
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                **sampling,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_id,
            )
        texts = self.tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        texts = [t.strip() for t in texts]
        if temperature > 0:
            return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]
        return [[t] * n for t in texts]  # greedy: the n replies are the same

    def _reply_logprobs(self, messages: list[Message], reply: str) -> tuple[list[int], Tensor]:
        """The reply's token ids (end-of-turn included) and their log-softmax rows [T, V]."""
        prompt_ids = self.tokenize(self._render(messages, add_generation_prompt=True))
        full = [*messages, {"role": "assistant", "content": reply}]
        full_ids = self.tokenize(self._render(full, add_generation_prompt=False))
        try:
            ids = reply_span(prompt_ids, full_ids, self.eos_id)
        except ValueError as exc:
            raise TeacherSetupError(self.teacher_id, str(exc)) from exc
        sequence = torch.tensor([prompt_ids + ids], device=self.device)
        with torch_threads(self.threads), torch.inference_mode():
            logits = self.model(sequence).logits[0]  # [L, V]
        rows = logits[len(prompt_ids) - 1 : sequence.shape[1] - 1].float()  # [T, V]
        return ids, F.log_softmax(rows, dim=-1)
