"""Export of a tiny trained student: the bundle's files and checksums, FP32 parity of the serving
runtime with `Student.generate`, INT8 graphs, and bundles that must be refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the export needs the `train` extra (torch)")
pytest.importorskip("onnx", reason="the export needs onnx")

from tokenizers import Tokenizer  # noqa: E402
from tokenizers.models import WordLevel  # noqa: E402
from tokenizers.normalizers import Lowercase  # noqa: E402
from tokenizers.pre_tokenizers import Whitespace  # noqa: E402

from bundle_runtime.manifest import (  # noqa: E402
    MANIFEST,
    BundleError,
    load_manifest,
    sha256_file,
    verify_bundle,
)
from bundle_runtime.onnx_student import OnnxStudent  # noqa: E402
from bundle_runtime.source import format_source  # noqa: E402
from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.export_onnx import ExportError, export_bundle  # noqa: E402

INTENTS = ["track_order", "refund", "out_of_scope"]
TOY: dict[str, tuple[list[str], str]] = {
    "track_order": (
        ["where is my order", "track my package please", "when will my parcel arrive",
         "has my order shipped yet"],
        "your order is on its way",
    ),
    "refund": (
        ["i want a refund", "give me my money back", "refund my purchase please",
         "can i return this for a refund"],
        "we will refund you within five days",
    ),
    "out_of_scope": (
        ["what is the weather today", "tell me a joke", "who won the game last night",
         "what is your favourite colour"],
        "sorry i can only help with orders and refunds",
    ),
}  # fmt: skip
ENC_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
DEC_SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]
CONTEXT_TURNS = 4


@dataclass(frozen=True)
class TinyBundle:
    path: Path
    student: Student
    sources: list[str]  # encoder texts, one per toy example
    samples: list[list[int]]  # their encoder ids, [CLS] ... [SEP]
    labels: list[int]
    replies: list[str]


def word_level(words: list[str], special: list[str], unk: str, path: Path) -> Tokenizer:
    vocab = {w: i for i, w in enumerate(special + sorted(set(words) - set(special)))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=unk))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(path))
    return tokenizer


def encoder_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    return [ENC_SPECIAL.index("[CLS]"), *ids, ENC_SPECIAL.index("[SEP]")]


def build_tiny_bundle(root: Path) -> TinyBundle:
    """Tokenizers from the toy vocabulary, a tiny student trained 150 steps, exported."""
    rows = [(text, INTENTS.index(i), reply) for i, (texts, reply) in TOY.items() for text in texts]
    sources = [format_source([("customer", text)], CONTEXT_TURNS) for text, _, _ in rows]
    enc_words = " ".join([*sources, "assistant : |"]).replace(":", " : ").split()
    enc_tok = word_level(enc_words, ENC_SPECIAL, "[UNK]", root / "enc.json")
    dec_tok = word_level(" ".join(r for _, _, r in rows).split(), DEC_SPECIAL, "<unk>",
                         root / "dec.json")  # fmt: skip
    cfg = StudentConfig(
        n_intents=len(INTENTS), enc_vocab_size=enc_tok.get_vocab_size(), enc_hidden=32,
        enc_heads=2, enc_layers=1, enc_ffn=64, enc_max_positions=64,
        dec_vocab_size=dec_tok.get_vocab_size(), dec_hidden=32, dec_heads=2, dec_layers=1,
        dec_ffn=64, dec_max_positions=64, dec_bos_id=1, dec_eos_id=2, dec_pad_id=0,
        reward_hidden=16, dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    student = Student(cfg)
    samples = [encoder_ids(enc_tok, s) for s in sources]
    width = max(map(len, samples))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in samples])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in samples])
    targets = [[*dec_tok.encode(r, add_special_tokens=False).ids, 2] for _, _, r in rows]
    t_width = max(map(len, targets))
    dec_out = torch.tensor([t + [0] * (t_width - len(t)) for t in targets])
    dec_in = torch.cat([torch.ones(len(rows), 1, dtype=torch.long), dec_out[:, :-1]], dim=1)
    dec_mask = torch.tensor([[1] * len(t) + [0] * (t_width - len(t)) for t in targets])
    labels = torch.tensor([label for _, label, _ in rows])
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(150):
        out = student(ids, mask, dec_in, dec_mask)
        token_loss = torch.nn.functional.cross_entropy(
            out["logits"].transpose(1, 2), dec_out.masked_fill(dec_mask == 0, -100)
        )
        loss = token_loss + torch.nn.functional.cross_entropy(out["intent_logits"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    export_bundle(
        student, root / "bundle", model_version="tiny-1", intent_labels=INTENTS,
        oos_label="out_of_scope", encoder_tokenizer_json=root / "enc.json",
        decoder_tokenizer_json=root / "dec.json",
        special_tokens={"enc_cls": 2, "enc_sep": 3, "enc_pad": 0, "dec_bos": 1, "dec_eos": 2,
                        "dec_pad": 0},
        max_source_tokens=48, max_new_tokens=16, context_turns=CONTEXT_TURNS,
        handoff_threshold=0.5, metrics={"intent_accuracy": 1.0}, run_id=None,
        parity_samples=samples, approved_seeds={"refund": "We will refund you within five days."},
    )  # fmt: skip
    return TinyBundle(
        root / "bundle", student, sources, samples, labels.tolist(), [r for _, _, r in rows]
    )


_BUILT: dict[str, TinyBundle] = {}


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """Built once per test session (test modules that import this fixture share it)."""
    if "bundle" not in _BUILT:
        _BUILT["bundle"] = build_tiny_bundle(tmp_path_factory.mktemp("tiny"))
    return _BUILT["bundle"]


def copy_of(bundle: TinyBundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle.path, tmp_path / "copy"))


def test_manifest_lists_every_file_with_its_checksum(tiny_bundle: TinyBundle) -> None:
    manifest = verify_bundle(tiny_bundle.path)
    on_disk = {p.name for p in tiny_bundle.path.iterdir()} - {MANIFEST}
    assert set(manifest.files) == on_disk
    for name, digest in manifest.files.items():
        assert sha256_file(tiny_bundle.path / name) == digest
    roles = {"encoder", "decoder", "decoder_with_past", "decoder_step", "cross_kv", "reward"}
    assert set(manifest.graphs["fp32"]) == roles and set(manifest.graphs["int8"]) == roles
    assert {"student.safetensors", "encoder_tokenizer.json", "decoder_tokenizer.json"} <= on_disk
    assert manifest.student_config == asdict(tiny_bundle.student.cfg)
    assert manifest.intent_labels == INTENTS and manifest.oos_label == "out_of_scope"
    assert manifest.parity["passed"] is True and manifest.parity["greedy_match_rate"] == 1.0
    assert manifest.parity["max_abs_logit_diff"] <= manifest.parity["tolerance"] == 1e-3
    assert 0.0 <= manifest.parity["int8_intent_agreement"] <= 1.0
    assert manifest.created_at is not None and manifest.metrics == {"intent_accuracy": 1.0}
    # No temporary folder is left beside the bundle.
    assert [p.name for p in tiny_bundle.path.parent.iterdir() if p.name.startswith(".")] == []


def test_safetensors_weights_restore_the_student(tiny_bundle: TinyBundle) -> None:
    from safetensors.torch import load_file

    restored = Student(StudentConfig.from_dict(load_manifest(tiny_bundle.path).student_config))
    restored.load_state_dict(load_file(str(tiny_bundle.path / "student.safetensors")))
    for name, tensor in tiny_bundle.student.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_fp32_runtime_gives_the_students_greedy_tokens(tiny_bundle: TinyBundle) -> None:
    runtime = OnnxStudent(tiny_bundle.path, precision="fp32")
    # Batched: rows finish at different steps and leave the batch early.
    ids, mask = runtime.encode_texts(tiny_bundle.sources)
    assert ids[:, 0].tolist() == [2] * len(ids)
    expected = tiny_bundle.student.generate(torch.from_numpy(ids), torch.from_numpy(mask), 16)
    assert runtime.generate(ids, mask, 16) == expected
    # The trained toy student has learnt the replies and the intents.
    replies = runtime.reply_batch([[("customer", text.split(": ", 1)[1])] for text in
                                   tiny_bundle.sources])  # fmt: skip
    assert [r.text for r in replies] == tiny_bundle.replies
    assert [INTENTS.index(r.intent) for r in replies] == tiny_bundle.labels
    assert all(r.finish_reason == "stop" for r in replies)
    # A length limit cuts the reply.
    cut = runtime.reply([("customer", "where is my order")], max_new_tokens=2)
    assert len(cut.tokens) == 2 and cut.finish_reason == "length"


def test_reward_is_the_students_reward_of_the_teacher_forced_reply(
    tiny_bundle: TinyBundle,
) -> None:
    runtime = OnnxStudent(tiny_bundle.path, precision="fp32")
    reply = runtime.reply([("customer", "i want a refund")])
    ids, mask = runtime.encode_texts([format_source([("customer", "i want a refund")], 4)])
    dec_ids = torch.tensor([[1, *reply.tokens]])
    with torch.no_grad():
        out = tiny_bundle.student(
            torch.from_numpy(ids), torch.from_numpy(mask), dec_ids, torch.ones_like(dec_ids)
        )
    assert reply.reward == pytest.approx(float(torch.sigmoid(out["reward"][0])), abs=1e-5)


def test_handoff_on_out_of_scope_and_on_low_confidence(tiny_bundle: TinyBundle) -> None:
    runtime = OnnxStudent(tiny_bundle.path, precision="fp32")
    off_topic = runtime.reply([("customer", "tell me a joke")])
    assert (off_topic.intent, off_topic.handoff_reason) == ("out_of_scope", "out_of_scope")
    in_scope = runtime.reply([("customer", "where is my order")])
    assert in_scope.handoff is False and in_scope.confidence > 0.5
    strict = OnnxStudent(tiny_bundle.path, precision="fp32", handoff_threshold=1.0)
    unsure = strict.reply([("customer", "where is my order")])
    assert unsure.confidence < 1.0
    assert (unsure.handoff, unsure.handoff_reason) == (True, "low_confidence")


def test_long_context_keeps_its_end(tiny_bundle: TinyBundle) -> None:
    runtime = OnnxStudent(tiny_bundle.path, precision="fp32")
    words = ["where", "is", "my", "order"] * 30
    ids, mask = runtime.encode_texts([" ".join(words), "refund"])
    assert ids.shape == (2, 48) and mask[0].sum() == 48 and mask[1].sum() == 3
    assert ids[0, 0] == 2 and ids[0, -1] == 3
    vocab = Tokenizer.from_file(str(tiny_bundle.path / "encoder_tokenizer.json")).get_vocab()
    assert ids[0, -2] == vocab["order"] and ids[0, -5] == vocab["where"]


def test_int8_graphs_run(tiny_bundle: TinyBundle) -> None:
    auto = OnnxStudent(tiny_bundle.path)
    assert auto.precision == "int8"
    reply = auto.reply([("customer", "where is my order")])
    assert reply.intent in INTENTS and 0.0 <= reply.reward <= 1.0 and reply.tokens
    labels, confidences = auto.classify(*auto.encode_texts(tiny_bundle.sources))
    assert len(labels) == len(tiny_bundle.sources) and all(0 < c <= 1 for c in confidences)


def test_corrupted_bundle_is_refused(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    bundle = copy_of(tiny_bundle, tmp_path)
    graph = bundle / "encoder.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.onnx is corrupted"):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match="corrupted"):
        OnnxStudent(bundle)


def test_failed_parity_is_refused(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    bundle = copy_of(tiny_bundle, tmp_path)
    data = json.loads((bundle / MANIFEST).read_text())
    data["parity"]["passed"] = False
    (bundle / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="failed its parity check"):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match="parity"):
        OnnxStudent(bundle)


def test_missing_file_is_refused(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    bundle = copy_of(tiny_bundle, tmp_path)
    (bundle / "decoder_with_past.int8.onnx").unlink()
    with pytest.raises(BundleError, match=r"decoder_with_past\.int8\.onnx is missing"):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match="missing"):
        OnnxStudent(bundle, precision="fp32")


def test_failed_parity_at_export_leaves_nothing(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    source = tiny_bundle.path
    kwargs: dict[str, Any] = dict(
        model_version="tiny-bad", intent_labels=INTENTS, oos_label="out_of_scope",
        encoder_tokenizer_json=source / "encoder_tokenizer.json",
        decoder_tokenizer_json=source / "decoder_tokenizer.json",
        special_tokens=load_manifest(source).special_tokens, max_source_tokens=48,
        max_new_tokens=8, context_turns=4, handoff_threshold=0.5, metrics={}, run_id=None,
        int8=False, parity_samples=tiny_bundle.samples[:2],
    )  # fmt: skip
    out = tmp_path / "bundles" / "tiny-bad"
    with pytest.raises(ExportError, match="parity check failed"):
        export_bundle(tiny_bundle.student, out, parity_tolerance=-1.0, **kwargs)
    assert not out.exists() and list(out.parent.iterdir()) == []
    with pytest.raises(ExportError, match="bundles are immutable"):
        export_bundle(tiny_bundle.student, source, **kwargs)
    with pytest.raises(ExportError, match="2 intent labels for 3 intents"):
        export_bundle(tiny_bundle.student, out, **{**kwargs, "intent_labels": INTENTS[:2]})
