"""The responder behind an OpenAI-compatible server (vLLM), over HTTP with httpx.

Endpoints used (vLLM's server; `base_url` with or without a trailing `/v1`):

    POST /v1/chat/completions   generate: n, temperature, max_tokens, seed
    POST /v1/completions        score: the prompt+reply token ids as `prompt`, `max_tokens: 1`,
                                `prompt_logprobs: top_k` (vLLM extension; top_k <= the server's
                                --max-logprobs, 20 by default)
    POST /tokenize              tokenize, and locating the reply inside the scored sequence

`score` renders the chat with a local copy of the responder's tokenizer
(`chat_template_tokenizer_dir`, e.g. the prepared SmolLM2 folder; it also names the end-of-turn
token), tokenizes prompt and prompt+reply on the server, and sends the server's token ids back as
the prompt, so the positions read are exactly the tokens located (no second tokenization that
could disagree).

Connect errors, timeouts, 429 and 5xx are retried `max_retries` times with exponential backoff
(`backoff_s`, doubled each time), then raise TeacherUnavailable; other 4xx raise TeacherRejected;
malformed JSON or missing fields raise TeacherBadResponse.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from distill_worker.teacher.base import (
    Message,
    ScoredReply,
    TeacherBadResponse,
    TeacherRejected,
    TeacherSetupError,
    TeacherUnavailable,
    reply_span,
)


class OpenAIResponder:
    """A `Responder` over HTTP; thread-safe, one connection pool; close() when done."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        transport: httpx.BaseTransport | None = None,
        chat_template_tokenizer_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0 or max_concurrency < 1 or backoff_s < 0 or timeout_s <= 0:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1, backoff_s >= 0")
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model = model
        self.teacher_id = f"openai:{model}"
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self._sleep = sleep
        self._template_dir = chat_template_tokenizer_dir
        self._template: Any = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        """`n` replies per conversation; the conversations are sent concurrently.

        With a seed, conversation i is sampled with seed + i (reproducible, not correlated).
        """
        if n < 1 or max_new_tokens < 1 or temperature < 0:
            raise ValueError("need n >= 1, max_new_tokens >= 1 and temperature >= 0")

        def one(index: int) -> list[str]:
            payload: dict[str, Any] = {
                "model": self.model,
                "messages": messages_batch[index],
                "n": n,
                "temperature": temperature,
                "max_tokens": max_new_tokens,
            }
            if seed is not None:
                payload["seed"] = seed + index
            data = self._post("/v1/chat/completions", payload)
            try:
                choices = _get(data, "choices", list)
                ordered = sorted(choices, key=lambda c: _get(c, "index", int))
                replies = [_get(_get(c, "message", dict), "content", str) for c in ordered]
            except _Malformed as exc:
                raise self._bad(f"/v1/chat/completions: {exc}") from exc
            if len(replies) != n:
                raise self._bad(f"asked for {n} choices, got {len(replies)}")
            return replies

        if not messages_batch:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(messages_batch)))
        try:
            return list(pool.map(one, range(len(messages_batch))))
        finally:  # on the first failure, the conversations not yet started are dropped
            pool.shutdown(wait=True, cancel_futures=True)

    def tokenize(self, text: str) -> list[int]:
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
            scored = _read_prompt_logprobs(data, sequence, len(prompt_ids), top_k)
        except _Malformed as exc:
            raise self._bad(f"/v1/completions: {exc}") from exc
        return ScoredReply(ids, *scored)

    # ---------------------------------------------------------------------------------- helpers

    def _template_tokenizer(self) -> Any:
        if self._template is None:
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
            self._template = tok
        return self._template

    def _bad(self, problem: str) -> TeacherBadResponse:
        return TeacherBadResponse(self.teacher_id, f"{self.base_url}: {problem}")

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(path, json=payload)
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise TeacherRejected(
                    self.teacher_id,
                    f"POST {url} answered HTTP {response.status_code}: {response.text[:300]}",
                )
            try:
                data = response.json()
            except ValueError as exc:
                raise self._bad(f"POST {path} answered non-JSON: {response.text[:200]!r}") from exc
            if not isinstance(data, dict):
                raise self._bad(f"POST {path} answered JSON that is not an object")
            return data
        raise TeacherUnavailable(
            self.teacher_id,
            f"POST {url} failed {self.max_retries + 1} times; last: {last}",
            f"check that the vLLM server at {self.base_url} is running, reachable from here and "
            f"serving model {self.model!r}, and not overloaded; the task can be retried",
        )


class _Malformed(ValueError):
    """A field is missing or of the wrong type; turned into TeacherBadResponse by the caller."""


def _get(obj: object, key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    """obj[key] checked to be of `kind` (bool never counts as a number)."""
    if not isinstance(obj, dict) or key not in obj:
        raise _Malformed(f"the response lacks the field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Malformed(f"field {key!r} has the wrong type: {value!r:.100}")
    return value


def _read_prompt_logprobs(
    data: dict[str, Any], sequence: list[int], start: int, top_k: int
) -> tuple[list[float], list[list[int]], list[list[float]]]:
    """Actual-token logprobs and top-k of positions start.. of vLLM's `prompt_logprobs`.

    vLLM gives one entry per prompt token (None for the first): {token id: {"logprob": ...}},
    the k best tokens plus the prompt's own token when it is not among them.
    """
    choices = _get(data, "choices", list)
    if not choices:
        raise _Malformed("no choices")
    positions = _get(choices[0], "prompt_logprobs", list)
    if len(positions) != len(sequence):
        raise _Malformed(f"{len(positions)} prompt_logprobs for {len(sequence)} prompt tokens")
    logprobs: list[float] = []
    top_ids: list[list[int]] = []
    top_logprobs: list[list[float]] = []
    for pos in range(start, len(sequence)):
        entry = positions[pos]
        if not isinstance(entry, dict):
            raise _Malformed(f"prompt_logprobs[{pos}] is not an object")
        try:
            table = {int(tok): float(_get(v, "logprob", (int, float))) for tok, v in entry.items()}
        except ValueError as exc:  # int("abc"); _Malformed is a ValueError too
            raise _Malformed(f"prompt_logprobs[{pos}]: {exc}") from exc
        actual = table.get(sequence[pos])
        if actual is None:
            raise _Malformed(f"prompt_logprobs[{pos}] lacks the prompt's own token")
        if len(table) < min(top_k, 1):
            raise _Malformed(f"prompt_logprobs[{pos}] is empty")
        best = sorted(table.items(), key=lambda item: -item[1])[:top_k]
        logprobs.append(actual)
        top_ids.append([tok for tok, _ in best])
        top_logprobs.append([lp for _, lp in best])
    return logprobs, top_ids, top_logprobs
