"""Export of a tiny trained student: the bundle's files and checksums, FP32 parity of the serving
runtime with `Student.generate`, INT8 graphs, and bundles that must be refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the export needs the `train` extra (torch)")
pytest.importorskip("onnx", reason="the export needs onnx")

from tokenizers import Tokenizer  # noqa: E402

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
from tests.fixtures.tiny_bundle import INTENTS, TOY, TinyBundle  # noqa: E402


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


def with_manifest(bundle: TinyBundle, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the bundle whose manifest says otherwise (the manifest lists the other files'
    hashes, not its own, so the copy still verifies)."""
    path = copy_of(bundle, tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, **changes}))
    return path


def test_an_energy_bundle_hands_off_on_the_energy_of_its_in_scope_intents(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    plain = OnnxStudent(tiny_bundle.path, precision="fp32")
    assert plain.handoff_score == "max-softmax"  # the manifest field's default: older bundles
    ids, mask = plain.encode_texts(tiny_bundle.sources)
    logits = plain.intent_logits(ids, mask).astype(np.float64)
    oos = INTENTS.index("out_of_scope")
    in_scope = np.delete(logits, oos, axis=1)
    energy = np.log(np.exp(in_scope).sum(axis=1))
    answered = [i for i, row in enumerate(logits) if row.argmax() != oos]
    cut = float(np.median(energy[answered]))  # half the answerable rows under it
    bundle = with_manifest(tiny_bundle, tmp_path, handoff_score="energy", handoff_threshold=cut)
    served = OnnxStudent(bundle, precision="fp32")
    labels, confidences, values = served.intents(served.intent_logits(ids, mask))
    assert confidences == pytest.approx(plain.classify(ids, mask)[1])  # still probabilities
    texts = [text for examples, _ in TOY.values() for text in examples]  # the sources' order
    for i, text in enumerate(texts):
        reply = served.reply([("customer", text)])
        if i not in answered:
            assert values[i] == -np.inf and reply.handoff_reason == "out_of_scope"
        else:
            assert values[i] == pytest.approx(energy[i], abs=1e-4)
            expected = "low_confidence" if energy[i] < cut else None
            assert served.hands_off(labels[i], values[i]) == reply.handoff_reason == expected
    # A serving override brings its own score: a probability threshold on an energy bundle.
    override = OnnxStudent(bundle, precision="fp32", handoff_threshold=0.0)
    assert (override.handoff_score, override.handoff_threshold) == ("max-softmax", 0.0)
    assert override.intents(override.intent_logits(ids, mask))[2][answered[0]] <= 1.0


def test_a_handoff_threshold_outside_its_score_is_refused(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    odd = with_manifest(tiny_bundle, tmp_path, handoff_score="margin")
    with pytest.raises(BundleError, match="unknown handoff score 'margin'"):
        OnnxStudent(odd, precision="fp32")
    with pytest.raises(BundleError, match=r"serving override.*not a probability"):
        OnnxStudent(tiny_bundle.path, precision="fp32", handoff_threshold=3.2)
    energy = OnnxStudent(tiny_bundle.path, precision="fp32", handoff_threshold=3.2,
                         handoff_score="energy")  # fmt: skip
    assert energy.handoff_threshold == 3.2


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


def test_int8_weights_have_one_scale_per_output_channel_by_default(
    tiny_bundle: TinyBundle,
) -> None:
    """Per-channel scales (the default, measured: bench/int8_variants.py) for the matrices."""
    import onnx

    from distill_worker.stages.export_onnx import Int8Options

    assert Int8Options().per_channel
    manifest = verify_bundle(tiny_bundle.path)
    assert manifest.parity["int8_options"] == asdict(Int8Options())
    graph = onnx.load(str(tiny_bundle.path / "encoder.int8.onnx")).graph
    matmul_scales = [
        list(i.dims) for i in graph.initializer if "MatMul" in i.name and i.name.endswith("_scale")
    ]
    assert matmul_scales and all(dims and dims[0] > 1 for dims in matmul_scales)


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_can_keep_the_heads_in_fp32(
    tiny_bundle: TinyBundle, tmp_path: Path, per_channel: bool
) -> None:
    """With `fp32_heads` the INT8 encoder keeps the intent head's FP32 layer (and the reward
    graph its head): the served intents then differ from FP32's by the body's rounding only."""
    import onnx

    from distill_worker.stages.export_onnx import Int8Options
    from distill_worker.stages.reexport import reexport_bundle

    options = Int8Options(fp32_heads=True, per_channel=per_channel)
    out = tmp_path / "heads"
    manifest = reexport_bundle(
        tiny_bundle.path, out, version="tiny-heads", int8=True, int8_options=options
    )
    assert manifest.parity["int8_options"] == asdict(options)

    def ops(path: Path, prefix: str) -> set[str]:
        graph = onnx.load(str(path)).graph
        return {n.op_type for n in graph.node if n.name.startswith(prefix)}

    quantized = {"MatMulInteger", "DynamicQuantizeMatMul"}
    # the heads' layers stay FP32 (the quantizer may split a Gemm into MatMul + Add) ...
    assert not ops(out / "encoder.int8.onnx", "/intent_head/") & quantized
    assert not ops(out / "reward.int8.onnx", "/reward_head/") & quantized
    # ... the body is INT8; by default the head is INT8 too
    assert ops(out / "encoder.int8.onnx", "/encoder/") & quantized
    assert ops(tiny_bundle.path / "encoder.int8.onnx", "/intent_head/") & quantized
    student = OnnxStudent(out, precision="int8")
    labels, _ = student.classify(*student.encode_texts(tiny_bundle.sources))
    assert set(labels) <= set(INTENTS)


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
