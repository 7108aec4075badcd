"""`chatdistill deploy` and `chatdistill eval intents` on a real tiny bundle, and a real server
that answers with the deployed student."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch")

from tests.fixtures.cli import run
from tests.fixtures.tiny_bundle import TOY, TinyBundle
from tests.live.server import running_server


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    return {**base, "CHATDISTILL_DATA_DIR": str(tmp_path / "data")}


def toy_rows(tmp_path: Path) -> tuple[list[dict[str, str]], Path]:
    """The toy bundle's labelled rows, and a JSONL file of them."""
    rows = [{"text": t, "intent": i} for i, (texts, _) in TOY.items() for t in texts]
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows, data


def test_eval_intents_prints_metrics(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "toy.jsonl"
    rows = [{"text": t, "intent": i} for i, (texts, _) in TOY.items() for t in texts]
    rows.append({"text": "something new", "intent": "unknown_intent"})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run(
        env,
        "eval",
        "intents",
        "--bundle",
        str(tiny_bundle.path),
        "--data",
        str(data),
        "--precision",
        "fp32",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == 13 and metrics["unknown_intents"] == ["unknown_intent"]
    assert metrics["accuracy"] == pytest.approx(12 / 13)  # the toy student knows its 12 rows
    assert metrics["precision"] == "fp32" and "oos_recall" not in metrics
    # The bundle's handoff as served, reported beside the accuracy (no oos rows: the accuracy
    # stays the classifier's, the handed-off share is shown).
    handoff = metrics["handoff"]
    manifest = json.loads((tiny_bundle.path / "manifest.json").read_text(encoding="utf-8"))
    assert handoff["threshold"] == pytest.approx(manifest["handoff_threshold"], abs=1e-4)
    assert 0.0 <= handoff["share"] <= 1.0
    assert metrics["classifier_accuracy"] == metrics["accuracy"]  # no oos rows: the same figure


def test_eval_intents_scores_the_tfidf_baseline_on_the_same_rows(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    rows, data = toy_rows(tmp_path)
    # The baseline learns from one row of each intent: it gets some of the rest wrong.
    train = tmp_path / "train.csv"
    firsts = {r["intent"]: r["text"] for r in reversed(rows)}
    train.write_text(
        "text,category\n" + "".join(f"{t},{i}\n" for i, t in firsts.items()), encoding="utf-8"
    )
    args = ["--bundle", str(tiny_bundle.path), "--data", str(data), "--precision", "fp32"]
    result = run(env, "eval", "intents", *args, "--baseline-train", str(train))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    baseline = metrics["baseline"]
    assert baseline["model"] == "tfidf+logreg" and baseline["train_rows"] == len(firsts)
    assert 0.0 < baseline["accuracy"] <= 1.0 and "macro_f1" in baseline
    margin = 100 * (metrics["accuracy"] - baseline["accuracy"])
    assert metrics["points_above_baseline"] == pytest.approx(margin, abs=0.01)
    # One intent is no classifier: a clear error, exit 1.
    single = tmp_path / "one.csv"
    single.write_text("text,category\nwhere is my order,track_order\n", encoding="utf-8")
    refused = run(env, "eval", "intents", *args, "--baseline-train", str(single))
    assert refused.returncode == 1 and "at least two intents" in refused.stderr


def test_eval_intents_refuses_a_corrupted_bundle(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle.path, broken)
    (broken / "encoder.onnx").write_bytes(b"not a graph")
    data = tmp_path / "toy.csv"
    data.write_text("text,category\nwhere is my order,track_order\n", encoding="utf-8")
    result = run(env, "eval", "intents", "--bundle", str(broken), "--data", str(data))
    assert result.returncode == 1 and "corrupted" in result.stderr


def test_deploy_then_serve_answers_with_the_student(
    tiny_bundle: TinyBundle, env: dict[str, str]
) -> None:
    assert run(env, "db", "upgrade").returncode == 0
    deployed = run(env, "deploy", str(tiny_bundle.path))
    assert deployed.returncode == 0, deployed.stderr
    assert "tiny-1 is now production (was nothing)" in deployed.stdout
    again = run(env, "deploy", str(tiny_bundle.path), "--reason", "redeploy")
    assert "(was tiny-1)" in again.stdout
    stored = Path(env["CHATDISTILL_DATA_DIR"]) / "bundles" / "tiny-1" / "manifest.json"
    assert stored.is_file()
    with running_server({"CHATDISTILL_DATA_DIR": env["CHATDISTILL_DATA_DIR"]}) as base:
        started = httpx.post(f"{base}/v1/widget/conversations", json={}).json()
        answer = httpx.post(
            f"{base}/v1/widget/conversations/{started['conversation_id']}/messages",
            json={"text": "where is my order"},
            headers={"Authorization": f"Bearer {started['token']}"},
        )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["reply"]["text"] == "your order is on its way"
    assert body["reply"]["model_version"] == "tiny-1" and body["reply"]["intent"] == "track_order"


def test_deploy_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(env, "db", "upgrade").returncode == 0
    result = run(env, "deploy", str(tmp_path))
    assert result.returncode == 1 and "has no manifest.json" in result.stderr


def test_export_again_without_int8(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    from bundle_runtime.manifest import verify_bundle

    out = tmp_path / "again"
    result = run(
        env,
        "export",
        "--bundle",
        str(tiny_bundle.path),
        "--out",
        str(out),
        "--version",
        "tiny-2",
        "--no-int8",
    )
    assert result.returncode == 0, result.stderr
    manifest = verify_bundle(out)
    original = verify_bundle(tiny_bundle.path)
    assert manifest.model_version == "tiny-2" and sorted(manifest.graphs) == ["fp32"]
    assert manifest.intent_labels == original.intent_labels
    assert manifest.parity["passed"] is True
    assert manifest.metrics["reexported_from"] == "tiny-1"
    refused = run(env, "export", "--bundle", str(tiny_bundle.path), "--out", str(out))
    assert refused.returncode != 0 and "exists" in refused.stderr


def test_eval_replies_scores_the_served_replies_beside_retrieval(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "toy.jsonl"
    rows = [{"text": t, "intent": i, "reply": r} for i, (texts, r) in TOY.items() for t in texts]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # A training file whose replies belong to other intents: retrieval finds the right prompt
    # but answers wrongly, the student answers what it learned.
    shifted = [r for _, r in TOY.values()]
    shifted = shifted[1:] + shifted[:1]
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"text": t, "intent": i, "reply": wrong})
            for (i, (texts, _)), wrong in zip(TOY.items(), shifted, strict=True)
            for t in texts
        ).replace("}{", "}\n{")
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "report" / "replies.json"
    args = ["--bundle", str(tiny_bundle.path), "--data", str(data), "--precision", "fp32"]
    result = run(env, "eval", "replies", *args, "--train", str(train), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report == json.loads(result.stdout)
    student, retrieval = report["student"], report["retrieval"]
    assert report["rows"] == student["reference_rows"] == len(rows)
    assert student["chrf"] > 95 and student["degenerate"] == 0.0
    assert retrieval["chrf"] < 40 and retrieval["index"] == "training file"
    assert report["decoding"] == {
        "no_repeat_ngram": 3,
        "repetition_penalty": 1.2,
        "min_new_tokens": 1,
        "repeat_window": 0,
    }
    assert report["examples"][0]["student"] == "your order is on its way"
    # what the guard sends: the toy student's right replies go out as written
    assert report["served"]["fallback_share"] == 0.0 and report["served"]["chrf"] > 95
    # Without a training file the rows are their own index, each row left out of its own
    # search (found itself, every row would score 100; the toy prompts share few words, so
    # some nearest neighbours belong to other intents).
    alone = run(env, "eval", "replies", *args)
    assert alone.returncode == 0, alone.stderr
    own = json.loads(alone.stdout)["retrieval"]
    assert own["index"] == "the evaluated rows, leave-one-out" and 30 < own["chrf"] < 100


def half_learned_teacher(rows: list[dict[str, str]], tmp_path: Path) -> Path:
    """A tiny teacher that learned half of each intent's rows (it gets some of the rest wrong),
    saved as a run saves its `encoder_teacher`."""
    from tests.fixtures.tiny_teacher import tiny_teacher

    teacher = tiny_teacher(pooler=True)
    learned = [r for i, r in enumerate(rows) if i % 2 == 0]
    teacher.finetune(
        [r["text"] for r in learned], [r["intent"] for r in learned], epochs=3, lr=1e-3
    )
    return teacher.save(tmp_path / "encoder_teacher")


def test_eval_intents_scores_the_encoder_teacher_on_the_same_rows(
    tiny_bundle: TinyBundle, tmp_path: Path, env: dict[str, str]
) -> None:
    from distill_worker.teacher.encoder import EncoderTeacher

    rows, data = toy_rows(tmp_path)
    folder = half_learned_teacher(rows, tmp_path)
    args = ["--bundle", str(tiny_bundle.path), "--data", str(data), "--precision", "fp32"]
    result = run(env, "eval", "intents", *args, "--teacher", str(folder))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    # the same figure as the saved teacher scored here, in this process, on the same texts
    # (the bundle's context_turns format each as the run did)
    from bundle_runtime.source import format_source

    again = EncoderTeacher.load(folder)
    turns = json.loads((tiny_bundle.path / "manifest.json").read_text())["context_turns"]
    logits = again.intent_logits([format_source([("customer", r["text"])], turns) for r in rows])
    predicted = [again.labels[i] for i in logits.argmax(-1).tolist()]
    right = sum(p == r["intent"] for p, r in zip(predicted, rows, strict=True))
    assert metrics["teacher"]["accuracy"] == pytest.approx(right / len(rows))
    assert metrics["teacher"]["folder"] == str(folder)
    share = metrics["classifier_accuracy"] / metrics["teacher"]["accuracy"]
    assert metrics["share_of_teacher"] == pytest.approx(share, abs=1e-4)
    # A folder that is not a saved teacher: a clear error, exit 1.
    refused = run(env, "eval", "intents", *args, "--teacher", str(tiny_bundle.path))
    assert refused.returncode == 1 and "--teacher:" in refused.stderr
    assert "not a saved encoder teacher" in refused.stderr


def test_bench_bundle_vs_teacher_scores_and_times_like_with_like(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    """bench/bundle_vs_teacher.py on a bundle and a saved teacher: each model's accuracy, the
    torch copies agreeing with their ONNX graphs, and speed-ups from the timings it printed."""
    import subprocess
    import sys

    rows, data = toy_rows(tmp_path)
    folder = half_learned_teacher(rows, tmp_path)
    out = tmp_path / "result.json"
    script = Path(__file__).resolve().parents[2] / "bench" / "bundle_vs_teacher.py"
    args = ["--bundle", str(tiny_bundle.path), "--teacher", str(folder), "--data", str(data)]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--runs", "3", "--messages", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    models = result["models"]
    assert set(models) == {
        "teacher torch",
        "teacher onnx fp32",
        "student torch",
        "student onnx fp32",
        "student onnx int8",
    }
    assert result["rows"] == len(rows) and result["served"] == "student onnx int8"
    # the exported graphs answer as their torch models do
    assert models["teacher onnx fp32"]["accuracy"] == models["teacher torch"]["accuracy"]
    assert models["student onnx fp32"]["accuracy"] == models["student torch"]["accuracy"]
    assert 0 < models["teacher torch"]["accuracy"] < 1  # it learned half the rows
    share = models["student onnx int8"]["accuracy"] / models["teacher torch"]["accuracy"]
    assert result["share_of_teacher"]["served"] == pytest.approx(share, rel=1e-3)
    speedup = models["teacher torch"]["median_ms"] / models["student torch"]["median_ms"]
    assert result["speedup"]["torch / torch"] == pytest.approx(speedup, abs=0.01)
    assert models["teacher torch"]["parameters"] > 0 and models["student torch"]["parameters"] > 0
    assert "student / teacher accuracy" in done.stdout
    # a folder that is not a saved teacher: a clear message, no traceback
    args[3] = str(tiny_bundle.path)
    refused = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 1 and "--teacher:" in refused.stderr
    assert "Traceback" not in refused.stderr
