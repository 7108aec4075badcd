"""Reading the bodies of vLLM's OpenAI-compatible answers into checked Python values.

Everything here is pure (no HTTP): a field that is missing or of the wrong type raises
`Malformed`, which the client turns into `TeacherBadResponse` with the endpoint's name.

Shapes read (vLLM 0.x, checked against a real server in tests/distill_worker/test_vllm_real.py):

* chat completion choice: `{"index", "message": {"content"}, "finish_reason", "logprobs":
  {"content": [{"token": "token_id:<id>", "logprob", "top_logprobs": [{"token", "logprob"}]}]}}`
  (token ids as strings because we send vLLM's `return_tokens_as_token_ids`);
* completion choice with `prompt_logprobs`: one entry per prompt token, `None` for the first,
  else `{"<id>": {"logprob", "rank", "decoded_token"}}` holding the k best and the prompt's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill_worker.teacher.base import ScoredReply

VLLM_ID_PREFIX = "token_id:"


class Malformed(ValueError):
    """A field is missing or of the wrong type; the client turns it into TeacherBadResponse."""


@dataclass(frozen=True)
class GeneratedReply:
    """A sampled (or greedy) reply with the responder's logprobs for each generated token.

    `scored.token_ids` are the generated tokens, ending with the end-of-turn token when the model
    stopped by itself (`finish_reason == "stop"`), not when it hit `max_tokens` ("length").
    """

    text: str
    finish_reason: str
    scored: ScoredReply


def field(obj: object, key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    """obj[key] checked to be of `kind` (bool never counts as a number)."""
    if not isinstance(obj, dict) or key not in obj:
        raise Malformed(f"the response lacks the field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Malformed(f"field {key!r} has the wrong type: {value!r:.100}")
    return value


def ordered_choices(data: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The `n` choices sorted by their index (servers may answer them out of order)."""
    choices = field(data, "choices", list)
    ordered = sorted(choices, key=lambda c: field(c, "index", int))
    if len(ordered) != n:
        raise Malformed(f"asked for {n} choices, got {len(ordered)}")
    return ordered


def reply_text(choice: dict[str, Any]) -> str:
    return str(field(field(choice, "message", dict), "content", str))


def _token_id(token: object, where: str) -> int:
    if not isinstance(token, str) or not token.startswith(VLLM_ID_PREFIX):
        raise Malformed(f"{where}: token {token!r:.60} is not 'token_id:<n>'; is this vLLM?")
    try:
        return int(token[len(VLLM_ID_PREFIX) :])
    except ValueError as exc:
        raise Malformed(f"{where}: token {token!r:.60} has no integer id") from exc


def read_generation(choice: dict[str, Any], top_k: int) -> GeneratedReply:
    """A chat choice asked with `logprobs`, `top_logprobs=top_k`, `return_tokens_as_token_ids`.

    The top list is re-sorted by logprob and cut to `top_k`: at temperature > 0 vLLM puts the
    sampled token first even when it is not among the k most likely.
    """
    text = reply_text(choice)
    finish = field(choice, "finish_reason", str)
    entries = field(field(choice, "logprobs", dict), "content", list)
    ids: list[int] = []
    logprobs: list[float] = []
    top_ids: list[list[int]] = []
    top_logprobs: list[list[float]] = []
    for pos, entry in enumerate(entries):
        where = f"logprobs.content[{pos}]"
        ids.append(_token_id(field(entry, "token", str), where))
        logprobs.append(float(field(entry, "logprob", (int, float))))
        table: dict[int, float] = {}
        for alt in field(entry, "top_logprobs", list):
            table[_token_id(field(alt, "token", str), where)] = float(
                field(alt, "logprob", (int, float))
            )
        best = sorted(table.items(), key=lambda item: -item[1])[:top_k]
        if not best:
            raise Malformed(f"{where}: empty top_logprobs")
        top_ids.append([tok for tok, _ in best])
        top_logprobs.append([lp for _, lp in best])
    return GeneratedReply(text, finish, ScoredReply(ids, logprobs, top_ids, top_logprobs))


def read_prompt_logprobs(
    data: dict[str, Any], sequence: list[int], start: int, top_k: int
) -> tuple[list[float], list[list[int]], list[list[float]]]:
    """Actual-token logprobs and top-k of positions start.. of vLLM's `prompt_logprobs`."""
    choices = field(data, "choices", list)
    if not choices:
        raise Malformed("no choices")
    positions = field(choices[0], "prompt_logprobs", list)
    if len(positions) != len(sequence):
        raise Malformed(f"{len(positions)} prompt_logprobs for {len(sequence)} prompt tokens")
    logprobs: list[float] = []
    top_ids: list[list[int]] = []
    top_logprobs: list[list[float]] = []
    for pos in range(start, len(sequence)):
        entry = positions[pos]
        if not isinstance(entry, dict) or not entry:
            raise Malformed(f"prompt_logprobs[{pos}] is not a non-empty object")
        try:
            table = {int(tok): float(field(v, "logprob", (int, float))) for tok, v in entry.items()}
        except ValueError as exc:  # int("abc"); Malformed is a ValueError too
            raise Malformed(f"prompt_logprobs[{pos}]: {exc}") from exc
        actual = table.get(sequence[pos])
        if actual is None:
            raise Malformed(f"prompt_logprobs[{pos}] lacks the prompt's own token")
        best = sorted(table.items(), key=lambda item: -item[1])[:top_k]
        logprobs.append(actual)
        top_ids.append([tok for tok, _ in best])
        top_logprobs.append([lp for _, lp in best])
    return logprobs, top_ids, top_logprobs
