"""Pipeline hooks for the continual loop: step callbacks, cancellation between steps, warm start
from a champion's torch weights (intent head grown, decoder rows kept by token id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bundle_runtime.manifest import FORMAT_VERSION, Manifest, sha256_file
from distill_worker.data.snapshots.records import SnapshotRecord, example_key
from distill_worker.data.snapshots.split import balance_report
from distill_worker.model.student import Student, StudentConfig
from distill_worker.pipeline import STEP_START, DistillRequest, RunCancelled, run_distillation
from distill_worker.run_config import RunConfig
from distill_worker.stages.training import pad
from distill_worker.stages.warm_start import (
    INTENT_ROWS,
    TOKEN_ROWS,
    WarmStartError,
    champion_vocab,
    imprint_new_intents,
    intent_order,
    load_champion,
    warm_start,
)

SMALL = {
    "enc_vocab_size": 40,
    "enc_layers": 1,
    "enc_hidden": 32,
    "enc_heads": 2,
    "enc_ffn": 64,
    "dec_hidden": 16,
    "dec_heads": 2,
    "dec_ffn": 32,
    "dec_layers": 1,
    "reward_hidden": 8,
}


def _weights_bundle(folder: Path, student: Student, labels: list[str], vocab: list[int]) -> Path:
    """A bundle folder with just the torch weights and a manifest listing them: what warm start
    reads (graphs are irrelevant to it)."""
    folder.mkdir()
    weights = folder / "student.safetensors"
    state = {k: v.contiguous() for k, v in student.state_dict().items()}
    save_file(state, str(weights), metadata={"config": student.cfg.to_json()})
    manifest = Manifest(
        model_version="champion",
        student_config=json.loads(student.cfg.to_json()),
        intent_labels=labels,
        files={"student.safetensors": sha256_file(weights)},
        graphs={},
        special_tokens={},
        decoder_vocab=vocab,
        format_version=FORMAT_VERSION,
    )
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return folder


def test_warm_start_keeps_old_rows_and_grows_intents_and_tokens(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = Student(StudentConfig(n_intents=2, dec_vocab_size=5, **SMALL))
    bundle = _weights_bundle(tmp_path / "champ", old, ["refund", "track"], [0, 1, 2, 10, 11])
    champion = load_champion(bundle)
    labels = intent_order(champion, ["track", "refund", "cancel"])
    assert labels == ["refund", "track", "cancel"]  # old rows stay in place, new ones appended
    vocab = [*champion_vocab(champion), 12, 13]
    torch.manual_seed(1)
    new = Student(StudentConfig(n_intents=3, dec_vocab_size=7, **SMALL))
    summary = warm_start(new, champion, labels, vocab)
    assert summary["intents_added"] == ["cancel"] and summary["decoder_tokens_added"] == 2
    head_old, head_new = old.intent_head[1].weight, new.intent_head[1].weight
    assert torch.equal(head_new[:2], head_old)
    assert not torch.equal(head_new[2], head_old[0])
    assert torch.equal(new.decoder.embed.weight[:5], old.decoder.embed.weight)
    old_state, new_state = old.state_dict(), new.state_dict()
    rest = [k for k in new_state if k not in (*INTENT_ROWS, *TOKEN_ROWS)]
    assert rest and all(torch.equal(new_state[k], old_state[k]) for k in rest)
    old.eval(), new.eval()
    ids, mask = torch.tensor([[2, 5, 7, 3]]), torch.ones(1, 4, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(new.encode(ids, mask)[2][:, :2], old.encode(ids, mask)[2])

    wider = Student(StudentConfig(n_intents=3, dec_vocab_size=7, **{**SMALL, "enc_layers": 2}))
    with pytest.raises(WarmStartError, match="enc_layers: 1 -> 2"):
        warm_start(wider, champion, labels, vocab)
    (bundle / "student.safetensors").write_bytes(b"corrupt")
    with pytest.raises(WarmStartError, match="corrupted"):
        load_champion(bundle)


def _snapshot_folder(tmp_path: Path) -> Path:
    """A snapshot folder written the way `create_snapshot` writes one (no database needed)."""
    from distill_worker.data.snapshots.build import _write_folder

    def record(text: str, intent: str) -> SnapshotRecord:
        return SnapshotRecord(
            key=example_key(text, ()),
            text=text,
            context=(),
            intent=intent,
            intent_source="seed",
            reply=None,
            reply_source=None,
            reward=None,
            rejected=None,
            origin="seed",
            source_id=text,
        )

    train = [record(f"q{i}", "a" if i % 2 else "b") for i in range(8)]
    heldout = [record("h1", "a"), record("h2", "b")]
    report = {"counts": {}, "params": {}, "balance": balance_report(train, heldout)}
    return _write_folder(tmp_path / "snaps", train, heldout, report)


def test_on_step_and_should_stop_cancel_between_steps(tmp_path: Path) -> None:
    steps: list[tuple[str, float]] = []
    asked = iter([False, True])
    request = DistillRequest(
        out_dir=tmp_path / "bundle",
        work_dir=tmp_path / "run",
        responder_dir=tmp_path / "no-responder-needed-before-the-teacher-step",
        config=RunConfig(),
        snapshot_dir=_snapshot_folder(tmp_path),
        on_step=lambda name, fraction: steps.append((name, fraction)),
        should_stop=lambda: next(asked),
        warm_start_bundle=tmp_path / "not-a-bundle",
    )
    logs: list[str] = []
    with pytest.raises(RunCancelled) as caught:
        run_distillation(request, log=logs.append)
    assert caught.value.step == "teacher"
    assert steps == [("data", 0.0)]
    assert any("8 train / 2 held-out" in line for line in logs)
    # A champion that cannot seed the run is no reason to fail it: a cold start, said so.
    assert any("no warm start" in line and "not-a-bundle" in line for line in logs)
    assert not request.out_dir.exists()
    assert list(STEP_START) == [
        "data", "teacher", "replies", "stage1", "stage2", "evaluate", "export"
    ]  # fmt: skip
    fractions = list(STEP_START.values())
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] <= 1.0


def test_new_intent_rows_are_imprinted_from_their_examples() -> None:
    torch.manual_seed(0)
    student = Student(StudentConfig(n_intents=3, dec_vocab_size=5, **SMALL))
    head = student.intent_head[1]
    with torch.no_grad():
        head.weight[:2] *= 50  # a warm-started head: large old rows
        head.bias[:2] = torch.tensor([0.5, 1.5])
    ids = {
        "refund": [[2, 5, 6, 3], [2, 5, 7, 3]],
        "track": [[2, 8, 9, 3], [2, 9, 8, 3]],
        "cancel": [[2, 20, 21, 3], [2, 21, 22, 3]],
    }
    assert imprint_new_intents(student, ["refund", "track", "cancel"], ["cancel"], ids) == [
        "cancel"
    ]
    weight, bias = head.weight.detach(), head.bias.detach()
    old_norm = weight[:2].norm(dim=1).mean()
    assert float(weight[2].norm()) == pytest.approx(float(old_norm), rel=1e-5)
    assert float(bias[2]) == pytest.approx(1.0)
    student.eval()
    with torch.no_grad():
        pooled = {k: student.encode(*pad(v))[1].mean(0) for k, v in ids.items()}
    centre = torch.stack(list(pooled.values())).mean(0)
    cos = torch.nn.functional.cosine_similarity(weight[2], pooled["cancel"] - centre, dim=0)
    assert float(cos) == pytest.approx(1.0, abs=1e-5)
    assert imprint_new_intents(student, ["refund", "track", "cancel"], ["cancel"], {}) == []
