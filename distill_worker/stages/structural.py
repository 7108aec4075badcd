"""Structural initialisation: the student's encoder starts as the encoder teacher's bottom.

The student encoder has the BERT teacher's shapes (model/student.py), so the teacher's word,
position and token-type embeddings, the embedding LayerNorm and its first `n_layers` layers copy
over one to one. Teacher state dicts come with or without a prefix (`bert.`, `0.auto_model.`);
the prefix is found from the word-embedding key.

Errors: `StructuralInitError` (a ValueError) for a missing teacher key, a shape mismatch or a
layer count out of range; the message names the key and says what to check.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill_worker.model.student import Student

_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "word_embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embed_norm.weight",
    "embeddings.LayerNorm.bias": "embed_norm.bias",
}

_LAYER = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}


class StructuralInitError(ValueError):
    """The teacher's weights do not fit the student's encoder."""


def teacher_to_student_names(n_layers: int) -> dict[str, str]:
    """Teacher (unprefixed BERT) parameter name -> student encoder parameter name."""
    names = dict(_EMBEDDINGS)
    for i in range(n_layers):
        for teacher, student in _LAYER.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{teacher}.{kind}"] = f"layers.{i}.{student}.{kind}"
    return names


def _prefix(teacher_state_dict: dict[str, Tensor]) -> str:
    for key in teacher_state_dict:
        if key.endswith(_WORD_EMBEDDINGS):
            return key[: -len(_WORD_EMBEDDINGS)]
    raise StructuralInitError(
        f"the teacher state dict has no '{_WORD_EMBEDDINGS}': pass a BERT-style encoder's weights"
    )


def init_student_encoder_from_teacher(
    student: Student, teacher_state_dict: dict[str, Tensor], n_layers: int
) -> list[str]:
    """Copy the teacher's embeddings and layers 0..n_layers-1 into `student.encoder`.

    Checks every name and shape before touching the student, so a failed call changes nothing.
    Returns the student encoder parameter names that were overwritten. Student layers at index
    >= n_layers keep their initialisation.
    """
    student_layers = len(student.encoder.layers)
    if not 0 <= n_layers <= student_layers:
        raise StructuralInitError(
            f"n_layers={n_layers} but the student encoder has {student_layers} layers: "
            "copy at most as many layers as the student has"
        )
    prefix = _prefix(teacher_state_dict)
    target = student.encoder.state_dict()
    copies: dict[str, Tensor] = {}
    for teacher_name, student_name in teacher_to_student_names(n_layers).items():
        key = prefix + teacher_name
        if key not in teacher_state_dict:
            raise StructuralInitError(
                f"teacher weight '{key}' is missing: the teacher needs at least {n_layers} "
                "layers and a BERT layout"
            )
        source = teacher_state_dict[key]
        if tuple(source.shape) != tuple(target[student_name].shape):
            raise StructuralInitError(
                f"shape mismatch: teacher '{key}' is {tuple(source.shape)} but student "
                f"'encoder.{student_name}' is {tuple(target[student_name].shape)}; build the "
                "student with the teacher's vocabulary, hidden size, FFN size and max positions"
            )
        copies[student_name] = source
    with torch.no_grad():
        for student_name, source in copies.items():
            target[student_name].copy_(source.to(target[student_name].dtype))
    return sorted(f"encoder.{name}" for name in copies)
