"""`RunningBatch` on a real tiny bundle: rows that join at different steps share one step call
over left-padded caches, and each row gets exactly what decoding it alone gives (tokens, reward,
intent); leaving rows shrink the caches; bundles of the format before the batched step are
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle_runtime.decoding import Decoding
from bundle_runtime.manifest import BundleError
from bundle_runtime.onnx_student import OnnxStudent
from bundle_runtime.running_batch import RunningBatch
from tests.fixtures.tiny_bundle import TinyBundle, old_bundle

TEXTS = {1: "where is my order", 2: "i want a refund", 3: "what is the weather today"}


def decode_staggered(student: OnnxStudent) -> tuple[dict[int, list[int]], list[tuple[int, int]]]:
    """Row 1 starts alone; rows 2 and 3 join after two iterations; rows leave when they emit
    EOS. -> (tokens per row, cache widths after each iteration)."""
    batch = RunningBatch(student)
    src = {rid: student.source_of([("customer", text)]) for rid, text in TEXTS.items()}
    arrivals = {0: [1], 2: [2, 3]}
    widths, tokens = [], {}
    for iteration in range(40):
        batch.advance([(rid, src[rid], 0.0) for rid in arrivals.get(iteration, [])])
        widths.append(batch.widths)
        done = [r for r in batch.rows if r.eos or len(r.tokens) >= 16]
        for row in done:
            tokens[row.request_id] = list(row.tokens)
        replies = batch.replies({r.request_id: r.eos for r in done})
        for rid, reply in replies.items():
            alone = student.reply([("customer", TEXTS[rid])])
            assert reply.text == alone.text and reply.intent == alone.intent
            # INT8 graphs quantize activations per tensor, over the whole batch: batch mates
            # move the numbers a little (tokens and intents stay the same).
            tol = 1e-5 if student.precision == "fp32" else 1e-3
            assert reply.reward == pytest.approx(alone.reward, abs=tol)
            assert reply.confidence == pytest.approx(alone.confidence, abs=tol)
        batch.remove(replies)
        if iteration > 2 and not len(batch):
            break
    assert set(tokens) == set(TEXTS)
    return tokens, widths


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rows_joining_late_decode_as_if_alone(tiny_bundle: TinyBundle, precision: str) -> None:
    student = OnnxStudent(tiny_bundle.path, precision=precision)  # type: ignore[arg-type]
    tokens, widths = decode_staggered(student)
    for rid, text in TEXTS.items():
        ids, mask = student.encode_texts([student.source_of([("customer", text)])])
        assert tokens[rid] == student.generate(ids, mask, 16)[0], text
    # Row 1 had fed 3 tokens when 2 and 3 joined: the past is 3 wide (theirs are padded).
    assert [w[0] for w in widths[:3]] == [1, 2, 3]
    assert widths[2][1] >= widths[0][1]  # the cross caches are padded to the longest source


def test_older_bundles_are_refused_with_the_command_that_exports_them_again(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    old = old_bundle(tiny_bundle.path, tmp_path)
    with pytest.raises(BundleError, match="predates the current bundle format") as refused:
        OnnxStudent(old, precision="fp32")
    assert f"chatdistill export --bundle {old} --out" in str(refused.value)


def test_repetition_control_decodes_the_same_in_the_batch_and_alone(
    tiny_bundle: TinyBundle,
) -> None:
    """Strict controls (no token twice, at least 10 tokens) change the toy replies; the batcher
    and the single-request loop still produce the same tokens."""
    strict = Decoding(no_repeat_ngram=1, repetition_penalty=1.5, min_new_tokens=10)
    student = OnnxStudent(tiny_bundle.path, precision="fp32", decoding=strict)
    tokens, _ = decode_staggered(student)
    changed = 0
    for rid, text in TEXTS.items():
        ids, mask = student.encode_texts([student.source_of([("customer", text)])])
        alone = student.run(ids, mask, 16).tokens[0]
        assert tokens[rid] == alone, text
        assert len(alone) >= 10 and len(set(alone)) == len(alone), alone
        changed += alone != student.generate(ids, mask, 16)[0]
    assert changed == len(TEXTS)


def test_leaving_rows_shrink_the_caches(tiny_bundle: TinyBundle) -> None:
    student = OnnxStudent(tiny_bundle.path, precision="fp32")
    batch = RunningBatch(student)
    long_source = student.source_of([("customer", " ".join(["where is my order"] * 5))])
    batch.prefill([(1, long_source, 0.0)])
    for _ in range(3):
        batch.step()
    batch.prefill([(2, student.source_of([("customer", "refund")]), 0.0)])
    assert batch.widths[0] == 4 and batch.widths[1] > 10
    batch.remove([1])
    assert batch.widths == (1, batch.row(2).source_tokens) and len(batch) == 1
    batch.step()
    assert batch.widths[0] == 2
