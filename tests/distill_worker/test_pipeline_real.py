"""One real distillation run, end to end, with the real default teachers (slow): demo data ->
fine-tuned MiniLM -> stage 1 -> SmolLM2 replies -> stage 2 -> evaluation -> bundle that serves.
A second run on the same work folder reuses the teacher and, through the teacher cache, the
replies (resumable state)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle_runtime.manifest import verify_bundle
from bundle_runtime.onnx_student import OnnxStudent
from distill_worker.data.demo_corpus import demo_knowledge_path, demo_utterances
from distill_worker.data.loaders import Utterance
from distill_worker.pipeline import DistillRequest, run_distillation
from distill_worker.run_config import RunConfig
from tests.fixtures.distill_runs import tiny_config

pytestmark = pytest.mark.slow

TINY = tiny_config(
    stage1_epochs=6,  # enough for the student to learn the intents (see the accuracy below)
    stage2_epochs=2,
)


def demo_file(tmp_path: Path) -> tuple[list[Utterance], Path]:
    """8 demo rows an intent, and a JSONL file of their texts and intents."""
    rows = demo_utterances(seed=0, per_intent=8)
    data = tmp_path / "demo.jsonl"
    data.write_text(
        "".join(json.dumps({"text": r.text, "intent": r.intent}) + "\n" for r in rows),
        encoding="utf-8",
    )
    return rows, data


def test_distil_export_serve_and_resume(responder_dir: Path, tmp_path: Path) -> None:
    rows, data = demo_file(tmp_path)
    logs: list[str] = []
    request = DistillRequest(
        out_dir=tmp_path / "bundle",
        work_dir=tmp_path / "run",
        responder_dir=responder_dir,
        config=RunConfig(distill=TINY, reply_budget=6, eval_replies=2, teacher_epochs=3),
        data_path=data,
        knowledge_path=demo_knowledge_path(),
    )
    result = run_distillation(request, log=logs.append)

    manifest = verify_bundle(result.bundle_dir)
    assert manifest.intent_labels == sorted({r.intent or "" for r in rows})
    assert manifest.oos_label == "oos"
    assert manifest.parity["passed"] is True
    metrics = manifest.metrics
    # The student learns: 12 intents (chance 1/12) on 12 held-out rows; a run answered 7 of
    # them (the teacher 8), so at least 5 leaves two rows of margin and is 5x chance.
    assert len(manifest.intent_labels) == 12 and metrics["heldout_rows"] == 12
    intent = metrics["intent"]
    assert intent["classifier_accuracy"] >= 5 / 12
    # One held-out row an intent is too few to halve: everything held out is reported, nothing
    # calibrated, and the configured threshold is what the bundle serves and the report applies.
    assert intent["rows"]["calibration"] == 0 and intent["handoff"]["calibration"] is None
    assert manifest.handoff_threshold == intent["handoff"]["threshold"] == 0.5
    # Nothing calibrated: the configured threshold is a probability, so the score stays
    # max-softmax whatever `handoff_score` asks for (energy, the default).
    assert manifest.handoff_score == intent["handoff"]["score"] == "max-softmax"
    assert metrics["intent"]["teacher"]["accuracy"] >= 5 / 12
    assert metrics["replies"]["n"] == 2 and metrics["replies"]["chrf_vs_teacher"] is not None
    assert metrics["reply_budget"]["prompts"] == 6 and metrics["reply_budget"]["bounded"]
    assert metrics["reply_budget"]["wanted"] > 6  # the per-intent quotas asked for more
    assert metrics["reply_tokens"] == {"max": 24, "chosen": "config"}
    # 6 teacher replies are too few to hold some out: stage 2 runs its epochs, and says so.
    assert metrics["stage2"]["dev_replies_from"] == "none" and metrics["stage2"]["dev_replies"] == 0
    assert any("stage 2 runs all its epochs" in line for line in logs)
    assert any("cut by --reply-budget 6 from the quotas" in line for line in logs)
    # The run's whole config is logged at its start, as one line of JSON.
    logged = [line.split("config: ", 1)[1] for line in logs if line.strip().startswith("config: ")]
    assert [RunConfig.model_validate_json(text) for text in logged] == [request.config]
    assert metrics["teacher_cache"] == {"hits": 0, "misses": 6, "stored": 6}
    assert metrics["teacher_cache_eval"] == {"hits": 0, "misses": 2, "stored": 2}
    assert (tmp_path / "run" / "teacher_cache.db").is_file()  # no store given: one in the run

    student = OnnxStudent(result.bundle_dir, precision="fp32")
    answer = student.reply([("customer", "where is my parcel?")])
    assert answer.intent in manifest.intent_labels and 0.0 <= answer.confidence <= 1.0

    logs.clear()
    again = run_distillation(
        DistillRequest(**{**request.__dict__, "out_dir": tmp_path / "bundle2"}), log=logs.append
    )
    assert any("reusing the fine-tuned one" in line for line in logs)
    assert any("teacher cache: 6 hits, 0 asked" in line for line in logs)
    assert again.metrics["teacher_cache"] == {"hits": 6, "misses": 0, "stored": 0}
    assert again.metrics["teacher_cache_eval"] == {"hits": 2, "misses": 0, "stored": 0}
    assert verify_bundle(again.bundle_dir).intent_labels == manifest.intent_labels


def test_a_run_with_the_mpnet_encoder_teacher(
    responder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`encoder_teacher: mpnet`: MPNet is prepared in the data folder and fine-tuned, the student
    (MiniLM's tokens and shapes) starts from pretrained MiniLM's layers, MPNet's being 768 wide,
    and learns from MPNet's logits and features through its projection. A MiniLM run on the
    same work folder does not take the MPNet teacher for its own, and refuses the MPNet run's
    stage 1 checkpoint with a clear error."""
    monkeypatch.setenv("CHATDISTILL_DATA_DIR", str(tmp_path / "data"))
    rows, data = demo_file(tmp_path)
    logs: list[str] = []
    mpnet = RunConfig(
        distill=TINY, reply_budget=3, eval_replies=0, teacher_epochs=2, encoder_teacher="mpnet"
    )
    request = DistillRequest(
        out_dir=tmp_path / "mpnet",
        work_dir=tmp_path / "run",
        responder_dir=responder_dir,
        config=mpnet,
        data_path=data,
    )
    result = run_distillation(request, log=logs.append)
    assert any("fine-tuning all-mpnet-base-v2" in line for line in logs)
    teacher = json.loads((tmp_path / "run" / "encoder_teacher" / "config.json").read_text())
    assert teacher["model_type"] == "mpnet" and teacher["hidden_size"] == 768
    assert (tmp_path / "data" / "teachers" / "all-mpnet-base-v2" / "model.safetensors").is_file()
    manifest = verify_bundle(result.bundle_dir)
    assert manifest.intent_labels == sorted({r.intent or "" for r in rows})
    # the student learns from it: 12 intents (chance 1/12), as the MiniLM run's test asks
    assert manifest.metrics["intent"]["classifier_accuracy"] >= 5 / 12

    logs.clear()
    minilm = mpnet.model_copy(update={"encoder_teacher": "minilm", "teacher_epochs": 1})
    again = DistillRequest(**{**request.__dict__, "out_dir": tmp_path / "minilm", "config": minilm})
    with pytest.raises(ValueError, match="teacher with 768 features, this run's has 384"):
        run_distillation(again, log=logs.append)
    assert any("fine-tuning all-MiniLM-L6-v2" in line for line in logs)
    assert not any("reusing the fine-tuned one" in line for line in logs)
    assert not (tmp_path / "minilm").exists()
