"""Structural initialisation: a tiny random BERT copied into the student's encoder."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch", reason="structural init needs the `train` extra (torch)")
transformers = pytest.importorskip("transformers", reason="the reference teacher is a BertModel")

from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.structural import (  # noqa: E402
    StructuralInitError,
    init_student_encoder_from_teacher,
)

torch.set_num_threads(1)


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def bert_teacher() -> tuple[torch.nn.Module, StudentConfig]:
    torch.manual_seed(3)
    bert_cfg = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40,
    )  # fmt: skip
    bert_cfg._attn_implementation = "eager"  # the student's attention is the eager formula
    teacher = transformers.BertModel(bert_cfg, add_pooling_layer=False).eval()
    cfg = StudentConfig(
        n_intents=3, enc_vocab_size=100, enc_hidden=32, enc_heads=2, enc_layers=2, enc_ffn=64,
        enc_max_positions=40, dec_vocab_size=60, dec_hidden=32, dec_heads=2, dec_layers=1,
        dec_ffn=64, dec_max_positions=32,
    )  # fmt: skip
    return teacher, cfg


def test_structural_init_reproduces_the_teacher_encoder() -> None:
    teacher, cfg = bert_teacher()
    student = Student(cfg).eval()
    copied = init_student_encoder_from_teacher(student, teacher.state_dict(), n_layers=2)
    assert len(copied) == 5 + 2 * 16
    ids = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
        got = student.encoder(ids, mask)
        # Layer by layer, from the same input, the two are bit-identical.
        x = teacher.embeddings(input_ids=ids)
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for t_layer, s_layer in zip(teacher.encoder.layer, student.encoder.layers, strict=True):
            t_out = t_layer(x, attention_mask=bias)
            t_out = t_out[0] if isinstance(t_out, tuple) else t_out
            assert torch.equal(t_out, s_layer(x, bias))
            x = t_out
    # End to end they differ by float rounding only: the student sums its embeddings as
    # word + position + type, BERT as (word + type) + position.
    torch.testing.assert_close(got, expected, rtol=0.0, atol=1e-5)


def test_structural_init_is_bit_exact_end_to_end() -> None:
    teacher, cfg = bert_teacher()
    student = Student(cfg).eval()
    init_student_encoder_from_teacher(student, teacher.state_dict(), n_layers=2)
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(student.encoder(ids, mask), expected)


def test_structural_init_refuses_mismatches_and_leaves_the_student_alone() -> None:
    teacher, cfg = bert_teacher()
    state = {f"bert.{k}": v for k, v in teacher.state_dict().items()}  # prefixes are found
    small = Student(replace(cfg, enc_layers=1))
    with pytest.raises(StructuralInitError, match="at most as many layers"):
        init_student_encoder_from_teacher(small, state, n_layers=2)
    init_student_encoder_from_teacher(small, state, n_layers=1)
    assert torch.equal(
        small.encoder.layers[0].query.weight,
        state["bert.encoder.layer.0.attention.self.query.weight"],
    )
    wide = Student(replace(cfg, enc_ffn=48))
    before = {k: v.clone() for k, v in wide.encoder.state_dict().items()}
    with pytest.raises(StructuralInitError, match=r"intermediate\.dense\.weight.*\(64, 32\)"):
        init_student_encoder_from_teacher(wide, state, n_layers=2)
    assert same_state(before, wide.encoder.state_dict())
    with pytest.raises(StructuralInitError, match="word_embeddings"):
        init_student_encoder_from_teacher(wide, {}, n_layers=1)
