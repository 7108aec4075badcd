"""The responder behind an OpenAI-compatible server (vLLM), over HTTP with httpx.

Endpoints used (vLLM's server; `base_url` with or without a trailing `/v1`):

    GET  /v1/models             check_server: the server is up and serves `model`
    POST /v1/chat/completions   generate: n, temperature, max_tokens, seed;
                                generate_scored: + logprobs, top_logprobs and vLLM's
                                return_tokens_as_token_ids (ids, not strings, in the logprobs)
    POST /v1/completions        score: the prompt+reply token ids as `prompt`, `max_tokens: 1`,
                                `prompt_logprobs: top_k` (vLLM extension; top_k <= the server's
                                --max-logprobs, 20 by default)
    POST /tokenize              tokenize (unless `tokenize_locally`), and locating the reply
                                inside the scored sequence

`score` renders the chat with a local copy of the responder's tokenizer
(`chat_template_tokenizer_dir`, e.g. the prepared SmolLM2 folder; it also names the end-of-turn
token) and tokenizes prompt and prompt+reply on the server (or with the local copy when
`tokenize_locally`: two requests fewer per reply, for a local copy known to be the server's),
then sends those token ids back as the prompt, so the positions read are exactly the tokens
located.

Timeouts, retries with backoff, the concurrency bound and the error mapping are
`http_retry.TeacherHttp`'s; response bodies are read by `openai_wire`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from distill_worker.teacher.base import (
    Message,
    ScoredReply,
    TeacherBadResponse,
    TeacherRejected,
    TeacherSetupError,
    reply_span,
)
from distill_worker.teacher.http_retry import TeacherHttp
from distill_worker.teacher.openai_wire import (
    GeneratedReply,
    Malformed,
    field,
    ordered_choices,
    read_generation,
    read_prompt_logprobs,
    reply_text,
)

T = TypeVar("T")


class OpenAIResponder:
    """A `Responder` over HTTP; thread-safe, one connection pool; close() when done."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_concurrency: int = 8,
        transport: httpx.BaseTransport | None = None,
        chat_template_tokenizer_dir: Path | None = None,
        tokenize_locally: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if tokenize_locally and chat_template_tokenizer_dir is None:
            raise ValueError("tokenize_locally needs chat_template_tokenizer_dir")
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model = model
        self.teacher_id = f"openai:{model}"
        self.max_concurrency = max_concurrency
        self.tokenize_locally = tokenize_locally
        self._template_dir = chat_template_tokenizer_dir
        self._template: Any = None
        self._template_lock = threading.Lock()
        self._http = TeacherHttp(
            self.base_url,
            self.teacher_id,
            model,
            api_key=api_key,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_concurrency=max_concurrency,
            transport=transport,
            sleep=sleep,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- the protocol

    def check_server(self) -> list[str]:
        """The served model names; raises unless `model` is one of them (call before a run)."""
        data = self._http.request("GET", "/v1/models", None)
        try:
            served = [field(m, "id", str) for m in field(data, "data", list)]
        except Malformed as exc:
            raise self._bad(f"/v1/models: {exc}") from exc
        if self.model not in served:
            raise TeacherRejected(
                self.teacher_id,
                f"{self.base_url} serves {served}, not {self.model!r}",
                "set the teacher model to one of the served names (vLLM's --served-model-name)",
            )
        return served

    def generate(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[list[str]]:
        """`n` replies per conversation; the conversations are sent concurrently.

        With a seed, conversation i is sampled with seed + i (reproducible, not correlated).
        """
        _check_sampling(n, max_new_tokens, temperature)

        def one(index: int) -> list[str]:
            payload = self._chat_payload(messages_batch[index], n, max_new_tokens, temperature)
            if seed is not None:
                payload["seed"] = seed + index
            data = self._post("/v1/chat/completions", payload)
            try:
                return [reply_text(c) for c in ordered_choices(data, n)]
            except Malformed as exc:
                raise self._bad(f"/v1/chat/completions: {exc}") from exc

        return self._map(one, len(messages_batch))

    def generate_scored(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
        top_k: int,
    ) -> list[list[GeneratedReply]]:
        """Like `generate`, with the logprob and top-k of every generated token (one request per
        conversation instead of generate + score: exact top-k at temperature 0)."""
        _check_sampling(n, max_new_tokens, temperature)
        if top_k < 1:
            raise ValueError("top_k must be at least 1")

        def one(index: int) -> list[GeneratedReply]:
            payload = self._chat_payload(messages_batch[index], n, max_new_tokens, temperature)
            payload.update(logprobs=True, top_logprobs=top_k, return_tokens_as_token_ids=True)
            if seed is not None:
                payload["seed"] = seed + index
            data = self._post("/v1/chat/completions", payload)
            try:
                return [read_generation(c, top_k) for c in ordered_choices(data, n)]
            except Malformed as exc:
                raise self._bad(f"/v1/chat/completions: {exc}") from exc

        return self._map(one, len(messages_batch))

    def tokenize(self, text: str) -> list[int]:
        if self.tokenize_locally:
            return list(self._template_tokenizer()(text, add_special_tokens=False)["input_ids"])
        data = self._post(
            "/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False}
        )
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise self._bad("/tokenize did not return a 'tokens' list of integers")
        return tokens

    def score(self, messages: list[Message], reply: str, *, top_k: int) -> ScoredReply:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        template = self._template_tokenizer()
        prompt_text = template.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        full_text = template.apply_chat_template(
            [*messages, {"role": "assistant", "content": reply}], tokenize=False
        )
        prompt_ids = self.tokenize(prompt_text)
        full_ids = self.tokenize(full_text)
        try:
            ids = reply_span(prompt_ids, full_ids, int(template.eos_token_id))
        except ValueError as exc:
            raise self._bad(f"cannot locate the reply in the server's tokens: {exc}") from exc
        sequence = full_ids[: len(prompt_ids) + len(ids)]
        data = self._post(
            "/v1/completions",
            {
                "model": self.model,
                "prompt": sequence,
                "max_tokens": 1,
                "temperature": 0.0,
                "prompt_logprobs": top_k,
            },
        )
        try:
            scored = read_prompt_logprobs(data, sequence, len(prompt_ids), top_k)
        except Malformed as exc:
            raise self._bad(f"/v1/completions: {exc}") from exc
        return ScoredReply(ids, *scored)

    def score_many(
        self, items: list[tuple[list[Message], str]], *, top_k: int
    ) -> list[ScoredReply]:
        """`score` for many (chat, reply) pairs, sent concurrently; results in order."""
        return self._map(lambda i: self.score(items[i][0], items[i][1], top_k=top_k), len(items))

    # ---------------------------------------------------------------------------------- helpers

    def _chat_payload(
        self, messages: list[Message], n: int, max_new_tokens: int, temperature: float
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "n": n,
            "temperature": temperature,
            "max_tokens": max_new_tokens,
        }

    def _map(self, fn: Callable[[int], T], count: int) -> list[T]:
        """fn(0..count-1) on up to max_concurrency threads, results in order; the first error
        propagates and the calls not yet started are dropped."""
        if count == 0:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, count))
        try:
            return list(pool.map(fn, range(count)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _template_tokenizer(self) -> Any:
        with self._template_lock:
            if self._template is None:
                self._template = self._load_template()
            return self._template

    def _load_template(self) -> Any:
        if self._template_dir is None:
            raise TeacherSetupError(
                self.teacher_id,
                "score needs the responder's chat template, and no local tokenizer was given",
                "pass chat_template_tokenizer_dir= a folder with the model's tokenizer "
                "(e.g. the prepared SmolLM2 teacher folder)",
            )
        os.environ["HF_HUB_OFFLINE"] = "1"
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self._template_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TeacherSetupError(
                self.teacher_id, f"cannot load a tokenizer from {self._template_dir}: {exc}"
            ) from exc
        if not tok.chat_template or tok.eos_token_id is None:
            raise TeacherSetupError(
                self.teacher_id,
                f"the tokenizer in {self._template_dir} has no chat template or eos token",
                "point chat_template_tokenizer_dir at the served model's tokenizer folder",
            )
        return tok

    def _bad(self, problem: str) -> TeacherBadResponse:
        return self._http.bad(problem)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._http.request("POST", path, payload)


def _check_sampling(n: int, max_new_tokens: int, temperature: float) -> None:
    if n < 1 or max_new_tokens < 1 or temperature < 0:
        raise ValueError("need n >= 1, max_new_tokens >= 1 and temperature >= 0")
