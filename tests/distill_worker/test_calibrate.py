"""Temperature scaling: fitted T sharpens soft-but-right logits, and folding it is exact."""

from __future__ import annotations

import torch

from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.calibrate import fit_temperature, fold_temperature


def test_soft_correct_logits_get_a_temperature_below_one() -> None:
    torch.manual_seed(0)
    gold = torch.randint(0, 5, (200,))
    logits = torch.randn(200, 5) * 0.1
    logits[torch.arange(200), gold] += 0.5  # always right, never confident
    t = fit_temperature(logits, gold)
    assert t < 0.5
    before = torch.softmax(logits, -1).max(-1).values.mean()
    after = torch.softmax(logits / t, -1).max(-1).values.mean()
    assert after > before + 0.3


def test_overconfident_wrong_logits_get_a_temperature_above_one() -> None:
    gold = torch.zeros(100, dtype=torch.long)
    logits = torch.zeros(100, 3)
    logits[:50, 0] = 8.0
    logits[50:, 1] = 8.0  # half confidently wrong
    assert fit_temperature(logits, gold) > 2.0


def test_folding_equals_dividing_the_logits() -> None:
    torch.manual_seed(0)
    cfg = StudentConfig(n_intents=4, enc_vocab_size=30, enc_hidden=16, enc_heads=2, enc_layers=1,
                        enc_ffn=32, dec_vocab_size=10, dec_hidden=16, dec_heads=2, dec_layers=1,
                        dec_ffn=32, dropout=0.0)  # fmt: skip
    student = Student(cfg).eval()
    ids = torch.randint(0, 30, (3, 6))
    mask = torch.ones_like(ids)
    before = student.encode(ids, mask)[2]
    fold_temperature(student, 0.25)
    after = student.encode(ids, mask)[2]
    torch.testing.assert_close(after, before / 0.25)
