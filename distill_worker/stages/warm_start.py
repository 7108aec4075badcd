"""Warm start: a new student begins where the serving champion left off.

An incremental run trains on new feedback plus a replay sample, not on everything again; it can
only do that well from the champion's weights. The bundle keeps them (`student.safetensors`,
the student config in its metadata and the manifest). Copying rules:

* every tensor whose shape did not change is copied as is;
* the intent head (`intent_head.1.*`) is copied row by row by label name: intents the champion
  knew keep their rows, new intents start from fresh rows, intents gone from the data are
  dropped (reported);
* the tied decoder embedding (`decoder.embed.weight`) is copied row by row by responder token
  id: the new decoder vocabulary should list the champion's ids first (see `champion_vocab`)
  so that nothing the champion could say is lost;
* an architecture change (layers, hidden sizes, heads, ...) is refused: that is a full retrain.

Everything is checked before anything is copied: a refused warm start leaves the student as it
was (the pipeline then trains it from the teacher, and says so in the run's metrics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from bundle_runtime.manifest import BundleError, verify_bundle
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.training import pad

WEIGHTS = "student.safetensors"
INTENT_ROWS = ("intent_head.1.weight", "intent_head.1.bias")
TOKEN_ROWS = ("decoder.embed.weight",)
# Fields that may differ between champion and candidate (rows are remapped, or no weights).
FREE_FIELDS = {
    "n_intents",
    "dec_vocab_size",
    "dec_bos_id",
    "dec_eos_id",
    "dec_pad_id",
    "dropout",
}


class WarmStartError(Exception):
    """The champion bundle cannot seed this run; the message says why and what to do."""


@dataclass(frozen=True)
class Champion:
    bundle_dir: Path
    config: StudentConfig
    state: dict[str, Tensor]
    intent_labels: list[str]
    decoder_vocab: list[int] | None  # student decoder id -> responder id (None: identity)


def load_champion(bundle_dir: Path) -> Champion:
    """The champion's torch weights, after checking the bundle's checksums."""
    try:
        manifest = verify_bundle(bundle_dir)
    except BundleError as exc:
        raise WarmStartError(f"cannot warm-start from {bundle_dir}: {exc}") from exc
    if WEIGHTS not in manifest.files:
        raise WarmStartError(
            f"{bundle_dir} has no {WEIGHTS} (an older export); run a full retrain without "
            "warm_start_bundle, or re-export the champion with this version"
        )
    return Champion(
        bundle_dir=bundle_dir,
        config=StudentConfig.from_dict(manifest.student_config),
        state=load_file(str(bundle_dir / WEIGHTS)),
        intent_labels=list(manifest.intent_labels),
        decoder_vocab=list(manifest.decoder_vocab) if manifest.decoder_vocab else None,
    )


def champion_vocab(champion: Champion) -> list[int]:
    """The champion's decoder vocabulary as responder ids, to put first in the new one."""
    if champion.decoder_vocab is not None:
        return list(champion.decoder_vocab)
    return list(range(champion.config.dec_vocab_size))


def intent_order(champion: Champion, labels: list[str]) -> list[str]:
    """The run's intents with the champion's first, in its order, then the new ones sorted:
    old intents keep their head rows in place."""
    known = set(labels)
    kept = [label for label in champion.intent_labels if label in known]
    return kept + sorted(known - set(kept))


def warm_start(
    student: Student, champion: Champion, labels: list[str], decoder_vocab: list[int]
) -> dict[str, Any]:
    """Copy the champion's weights into `student` (see the module docstring) -> a summary."""
    old, new = asdict(champion.config), asdict(student.cfg)
    changed = sorted(k for k in new if k not in FREE_FIELDS and old.get(k) != new[k])
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)} -> {new[k]}" for k in changed)
        raise WarmStartError(
            f"the student architecture changed ({detail}); warm start needs the champion's "
            "shape: run a full retrain (no warm_start_bundle) or keep the champion's config"
        )
    if len(labels) != student.cfg.n_intents or len(decoder_vocab) != student.cfg.dec_vocab_size:
        raise WarmStartError("labels / decoder_vocab do not match the student's config")
    label_rows = _row_map(champion.intent_labels, labels)
    token_rows = _row_map(champion_vocab(champion), decoder_vocab)
    state = student.state_dict()
    for name, target in state.items():  # check everything before changing anything
        source = champion.state.get(name)
        if source is None:
            raise WarmStartError(f"the champion has no tensor {name}; run a full retrain")
        rows = name in INTENT_ROWS or name in TOKEN_ROWS
        if (source.shape[1:] if rows else source.shape) != (
            target.shape[1:] if rows else target.shape
        ):
            raise WarmStartError(f"{name}: shape {tuple(source.shape)} -> {tuple(target.shape)}")
    with torch.no_grad():
        for name, target in state.items():
            source = champion.state[name]
            if name in INTENT_ROWS:
                _copy_rows(target, source, label_rows)
            elif name in TOKEN_ROWS:
                _copy_rows(target, source, token_rows)
            else:
                target.copy_(source)
    student.load_state_dict(state)
    return {
        "bundle": str(champion.bundle_dir),
        "intents_kept": len(label_rows),
        "intents_added": sorted(set(labels) - set(champion.intent_labels)),
        "intents_dropped": sorted(set(champion.intent_labels) - set(labels)),
        "decoder_tokens_kept": len(token_rows),
        "decoder_tokens_added": len(decoder_vocab) - len(token_rows),
    }


def _row_map(old: list[Any], new: list[Any]) -> dict[int, int]:
    """new row index -> old row index, for entries present in both."""
    where = {item: i for i, item in enumerate(old)}
    return {j: where[item] for j, item in enumerate(new) if item in where}


def _copy_rows(target: Tensor, source: Tensor, rows: dict[int, int]) -> None:
    if rows:
        new_idx = torch.tensor(list(rows.keys()))
        old_idx = torch.tensor(list(rows.values()))
        target[new_idx] = source[old_idx].to(target.dtype)


@torch.no_grad()
def imprint_new_intents(
    student: Student, labels: list[str], added: list[str], ids_by_label: dict[str, list[list[int]]]
) -> list[str]:
    """Start each new intent's head row from its examples instead of from noise: the direction
    of its mean pooled encoder state away from the mean over all examples, scaled to the old
    rows' mean norm, with the old rows' mean bias. A warm-started head's old rows are large (and
    temperature-folded); a fresh row at std 0.02 would lose every argmax for many steps.
    Returns the intents imprinted (those with examples)."""
    head = student.intent_head[1]
    assert isinstance(head, torch.nn.Linear)
    new = [label for label in added if ids_by_label.get(label)]
    old_rows = [i for i, label in enumerate(labels) if label not in added]
    if not new or not old_rows:
        return []
    was_training = student.training
    student.eval()
    device = head.weight.device
    means: dict[str, Tensor] = {}
    for label, ids in ids_by_label.items():
        if ids:
            batches = [pad(ids[i : i + 64]) for i in range(0, len(ids), 64)]
            pooled = [student.encode(x.to(device), m.to(device))[1] for x, m in batches]
            means[label] = torch.cat(pooled).mean(dim=0)
    student.train(was_training)
    centre = torch.stack(list(means.values())).mean(dim=0)
    norm = head.weight[old_rows].norm(dim=1).mean()
    bias = head.bias[old_rows].mean()
    for label in new:
        direction = means[label] - centre
        row = labels.index(label)
        head.weight[row] = direction / direction.norm().clamp(min=1e-6) * norm
        head.bias[row] = bias
    return new
