"""OpenAIResponder against httpx.MockTransport (request shapes, parsing, retries, errors) and a
real closed port. A word-level tokenizer with a ChatML template plays the served model's
tokenizer, on both sides: the fake /tokenize and the client's chat_template_tokenizer_dir."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from distill_worker.teacher.base import (
    Responder,
    TeacherBadResponse,
    TeacherRejected,
    TeacherSetupError,
    TeacherUnavailable,
)
from distill_worker.teacher.openai_compat import OpenAIResponder

WORDS = ["[UNK]", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "hello"]
WORDS += ["there", "my", "card", "is", "lost", ".", "we", "can", "help"]
EOT = 2
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT = [{"role": "user", "content": "my card is lost"}]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = TEMPLATE
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return folder


Handler = Callable[[httpx.Request], httpx.Response]


def responder(handler: Handler, **kwargs: Any) -> tuple[OpenAIResponder, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("sleep", sleeps.append)
    client = OpenAIResponder(
        "http://teacher:8000/v1", "smol", transport=httpx.MockTransport(handler), **kwargs
    )
    return client, sleeps


def chat_reply(body: dict[str, Any]) -> httpx.Response:
    text = body["messages"][-1]["content"]
    choices = [
        {"index": i, "message": {"role": "assistant", "content": f"{text} #{i}"}}
        for i in reversed(range(body["n"]))  # out of order on purpose
    ]
    return httpx.Response(200, json={"choices": choices})


def test_generate_request_shape_order_and_concurrency() -> None:
    seen: list[httpx.Request] = []
    active, peak = 0, 0
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            seen.append(request)
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return chat_reply(json.loads(request.content))

    client, _ = responder(handler, api_key="sk-test", max_concurrency=3)
    assert isinstance(client, Responder)
    batch = [[{"role": "user", "content": f"q{i}"}] for i in range(7)]
    out = client.generate(batch, n=2, max_new_tokens=16, temperature=0.7, seed=11)
    assert out == [[f"q{i} #0", f"q{i} #1"] for i in range(7)]
    assert 2 <= peak <= 3
    bodies = sorted((json.loads(r.content) for r in seen), key=lambda b: b["seed"])
    assert bodies[0] == {
        "model": "smol",
        "messages": [{"role": "user", "content": "q0"}],
        "n": 2,
        "temperature": 0.7,
        "max_tokens": 16,
        "seed": 11,
    }
    assert [b["seed"] for b in bodies] == list(range(11, 18))
    assert {str(r.url) for r in seen} == {"http://teacher:8000/v1/chat/completions"}
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert client.teacher_id == "openai:smol"


def test_generate_without_seed_or_key_omits_them() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return chat_reply(json.loads(request.content))

    client, _ = responder(handler)
    assert client.generate([CHAT], max_new_tokens=4, temperature=0.0, seed=None) == [
        ["my card is lost #0"]
    ]
    assert "seed" not in json.loads(seen[0].content)
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_with_exponential_backoff_then_succeeds(status: int) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return httpx.Response(status, text="busy")
        return chat_reply(json.loads(request.content))

    client, sleeps = responder(handler, backoff_s=0.25)
    assert client.generate([CHAT], max_new_tokens=4, temperature=0, seed=1) == [
        ["my card is lost #0"]
    ]
    assert calls == 3 and sleeps == [0.25, 0.5]


def test_gives_up_after_max_retries_with_the_url() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("timed out", request=request)

    client, sleeps = responder(handler, max_retries=3, backoff_s=0.5)
    with pytest.raises(TeacherUnavailable) as info:
        client.tokenize("hello")
    assert calls == 4 and sleeps == [0.5, 1.0, 2.0]
    message = str(info.value)
    assert "POST http://teacher:8000/tokenize failed 4 times" in message
    assert "ReadTimeout" in message and "is running" in message
    assert info.value.retryable


def test_connection_refused_on_a_real_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    sleeps: list[float] = []
    client = OpenAIResponder(
        f"http://127.0.0.1:{port}", "smol", max_retries=2, backoff_s=0.01, sleep=sleeps.append
    )
    with pytest.raises(TeacherUnavailable, match=f"127.0.0.1:{port}.*ConnectError"):
        client.generate([CHAT], max_new_tokens=4, temperature=0, seed=None)
    assert sleeps == [0.01, 0.02]


def test_client_errors_are_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"message": "The model `smol` does not exist."})

    client, sleeps = responder(handler)
    with pytest.raises(TeacherRejected, match=r"HTTP 404.*does not exist"):
        client.generate([CHAT], max_new_tokens=4, temperature=0, seed=None)
    assert calls == 1 and sleeps == []


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (httpx.Response(200, text="<html>proxy error</html>"), "non-JSON"),
        (httpx.Response(200, json=[1, 2]), "not an object"),
        (httpx.Response(200, json={"object": "chat.completion"}), "lacks the field 'choices'"),
        (httpx.Response(200, json={"choices": [{"index": 0, "message": {}}]}), "'content'"),
        (
            httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": None}}]}),
            "wrong type",
        ),
        (
            httpx.Response(200, json={"choices": [{"index": 0, "message": {"content": "a"}}] * 2}),
            "asked for 1 choices, got 2",
        ),
    ],
)
def test_garbage_is_a_bad_response(response: httpx.Response, fragment: str) -> None:
    client, sleeps = responder(lambda request: response)
    with pytest.raises(TeacherBadResponse, match=fragment):
        client.generate([CHAT], max_new_tokens=4, temperature=0, seed=None)
    assert sleeps == []


def test_tokenize_request_and_bad_tokens() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        tokens = [5, 6] if len(bodies) == 1 else [5, "x"]
        return httpx.Response(200, json={"count": 2, "max_model_len": 8192, "tokens": tokens})

    client, _ = responder(handler)
    assert client.tokenize("hello there") == [5, 6]
    assert bodies[0] == {"model": "smol", "prompt": "hello there", "add_special_tokens": False}
    with pytest.raises(TeacherBadResponse, match="tokens"):
        client.tokenize("again")


class FakeVllm:
    """/tokenize with the tiny tokenizer; /v1/completions with made-up prompt_logprobs."""

    def __init__(self, tokenizer_dir: Path, *, drop_actual: bool = False) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        self.drop_actual = drop_actual
        self.completion: dict[str, Any] = {}

    def logprobs_at(self, pos: int, actual: int) -> dict[str, dict[str, float]]:
        table = {str(t): {"logprob": -0.5 * ((t + pos) % 5) - 0.1 * t} for t in (3, 7, 9, 12)}
        if not self.drop_actual:
            table[str(actual)] = {"logprob": -4.0 - 0.01 * pos}
        return table

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/tokenize":
            ids = self.tokenizer(body["prompt"], add_special_tokens=False)["input_ids"]
            return httpx.Response(200, json={"tokens": ids, "count": len(ids)})
        assert request.url.path == "/v1/completions"
        self.completion = body
        prompt = body["prompt"]
        plp = [None] + [self.logprobs_at(p, prompt[p]) for p in range(1, len(prompt))]
        return httpx.Response(200, json={"choices": [{"text": "x", "prompt_logprobs": plp}]})


def test_score_reads_the_reply_positions(tokenizer_dir: Path) -> None:
    fake = FakeVllm(tokenizer_dir)
    client, _ = responder(fake, chat_template_tokenizer_dir=tokenizer_dir)
    scored = client.score(CHAT, "we can help .", top_k=2)

    # prompt: <|im_start|> user \n my card is lost <|im_end|> \n <|im_start|> assistant \n
    prompt_ids = [1, 3, 8, 9, 10, 11, 2, 1, 4]
    reply_ids = [13, 14, 15, 12, EOT]  # the template's trailing newline is not part of it
    assert scored.token_ids == reply_ids
    assert fake.completion["prompt"] == prompt_ids + reply_ids
    assert fake.completion["max_tokens"] == 1 and fake.completion["prompt_logprobs"] == 2
    for t, token in enumerate(reply_ids):
        table = fake.logprobs_at(len(prompt_ids) + t, token)
        assert scored.logprobs[t] == table[str(token)]["logprob"]
        ranked = sorted(table.items(), key=lambda kv: -kv[1]["logprob"])[:2]
        assert scored.top_ids[t] == [int(k) for k, _ in ranked]
        assert scored.top_logprobs[t] == [v["logprob"] for _, v in ranked]
        assert scored.top_logprobs[t][0] >= scored.top_logprobs[t][1]


def test_score_without_the_actual_token_is_a_bad_response(tokenizer_dir: Path) -> None:
    fake = FakeVllm(tokenizer_dir, drop_actual=True)
    client, _ = responder(fake, chat_template_tokenizer_dir=tokenizer_dir)
    with pytest.raises(TeacherBadResponse, match="lacks the prompt's own token"):
        client.score(CHAT, "we can help .", top_k=2)


def test_score_needs_a_chat_template_tokenizer() -> None:
    client, _ = responder(lambda request: httpx.Response(500))
    with pytest.raises(TeacherSetupError, match="chat_template_tokenizer_dir"):
        client.score(CHAT, "hello", top_k=5)


def test_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIResponder("teacher:8000", "smol")
    with pytest.raises(ValueError):
        OpenAIResponder("http://teacher", "smol", max_concurrency=0)


def logprob_entry(token: int, logprob: float, alternatives: list[tuple[int, float]]) -> Any:
    return {
        "token": f"token_id:{token}",
        "logprob": logprob,
        "top_logprobs": [{"token": f"token_id:{t}", "logprob": lp} for t, lp in alternatives],
    }


def test_generate_scored_asks_for_ids_and_sorts_the_top_list() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        content = [  # sampled token first although it is not the most likely (as vLLM does)
            logprob_entry(9, -2.5, [(9, -2.5), (4, -0.3), (5, -1.1)]),
            logprob_entry(2, -0.1, [(2, -0.1), (7, -3.0), (8, -4.0)]),
        ]
        choice = {"index": 0, "message": {"content": "we"}, "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [{**choice, "logprobs": {"content": content}}]})

    client, _ = responder(handler)
    [[reply]] = client.generate_scored([CHAT], max_new_tokens=4, temperature=0.7, seed=3, top_k=2)
    assert seen[0]["logprobs"] is True and seen[0]["top_logprobs"] == 2
    assert seen[0]["return_tokens_as_token_ids"] is True and seen[0]["seed"] == 3
    assert (reply.text, reply.finish_reason) == ("we", "stop")
    assert reply.scored.token_ids == [9, 2] and reply.scored.logprobs == [-2.5, -0.1]
    assert reply.scored.top_ids == [[4, 5], [2, 7]]
    assert reply.scored.top_logprobs == [[-0.3, -1.1], [-0.1, -3.0]]


def test_generate_scored_without_token_ids_is_a_bad_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        entry = {"token": "we", "logprob": -0.2, "top_logprobs": []}
        choice = {"index": 0, "message": {"content": "we"}, "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [{**choice, "logprobs": {"content": [entry]}}]})

    client, _ = responder(handler)
    with pytest.raises(TeacherBadResponse, match="is not 'token_id:<n>'; is this vLLM"):
        client.generate_scored([CHAT], max_new_tokens=4, temperature=0.0, seed=None, top_k=2)
