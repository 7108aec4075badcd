"""The bundle format and its checks: the contract between training and serving.

A bundle is an immutable folder:

    manifest.json               this module's `Manifest`, as JSON
    encoder_tokenizer.json      the encoder side's tokenizer (HF `tokenizers` JSON)
    decoder_tokenizer.json      the decoder side's tokenizer (the responder's)
    encoder.onnx                input_ids, attention_mask -> hidden, pooled, intent_logits
    decoder.onnx                first decode step: input_ids, encoder_hidden, encoder_mask ->
                                logits, hidden, present self K/V, cross K/V
    decoder_with_past.onnx      later steps: input_ids, encoder_mask, past self K/V, cross K/V ->
                                logits, hidden, present self K/V
    decoder_step.onnx           a step over left-padded caches of different lengths:
                                input_ids, positions, self_mask, encoder_mask, past and cross
                                K/V -> logits, hidden, present (older bundles lack it and
                                `cross_kv`: serving refuses them, `chatdistill export` redoes them)
    cross_kv.onnx               encoder_hidden -> cross K/V, so that a new request's first step
                                runs inside the batched step
    reward.onnx                 pooled, reply_hidden_mean -> reward logit
    *.int8.onnx                 optional dynamically quantized graphs
    student.safetensors         torch weights, the warm start of the next incremental run

Every file is listed in the manifest with its SHA-256; a bundle whose files do not match, or
whose parity check failed at export, never serves. Standard library only: everything that
reads a bundle (serving, the gate, export parity, the artifact store) reads it through here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A model version names a folder in the artifact store: a plain name, never a path.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


class BundleError(Exception):
    """The folder is not a valid, intact bundle; the message says what is wrong."""


@dataclass(frozen=True)
class Manifest:
    model_version: str
    student_config: dict[str, Any]
    intent_labels: list[str]
    files: dict[str, str]  # file name -> sha256
    graphs: dict[str, dict[str, str]]  # precision ("fp32", "int8") -> role -> file name
    special_tokens: dict[str, int]  # enc_cls, enc_sep, enc_pad, dec_bos, dec_eos, dec_pad
    oos_label: str | None = None
    # Student decoder id -> decoder tokenizer id, when the student predicts over a subset of
    # the tokenizer's vocabulary (None: the ids are the tokenizer's own).
    decoder_vocab: list[int] | None = None
    handoff_threshold: float = 0.5
    # What the threshold is compared with (`bundle_runtime.handoff_score`): "max-softmax" (a
    # probability; every bundle before the field) or "energy" (logit units).
    handoff_score: str = "max-softmax"
    max_source_tokens: int = 128
    max_new_tokens: int = 64
    context_turns: int = 4
    # Decoding controls (`bundle_runtime.decoding.Decoding`); empty: the runtime's defaults.
    decoding: dict[str, Any] = field(default_factory=dict)
    # The serving guard (`bundle_runtime.guard`): {"min_reward": float}; empty: degeneration only.
    guard: dict[str, Any] = field(default_factory=dict)
    # Intent -> a reference reply that deploying seeds as its approved answer when it has none.
    approved_seeds: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    created_at: str | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_model_version(self.model_version)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"manifest.json is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format {version} is not supported (this build reads {FORMAT_VERSION}); "
                "re-export the bundle with this version of chatdistill"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise BundleError(f"manifest.json has unexpected or missing fields: {exc}") from exc


def check_model_version(version: object) -> None:
    """Refuse a model version that is not a plain name (it becomes a folder name)."""
    if (
        not isinstance(version, str)
        or VERSION_PATTERN.fullmatch(version) is None
        or ".." in version
    ):
        raise BundleError(
            f"model_version {version!r} is not a plain name: use 1-120 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit, without '..' or '/' (e.g. "
            "'v20240501-1a2b3c'); export the bundle again under such a name"
        )


def refuse_symlinks(bundle_dir: Path) -> None:
    """A bundle holds plain files only: a symlink could point anywhere outside it."""
    for folder, dirs, files in os.walk(bundle_dir):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise BundleError(
                    f"{path} is a symbolic link; a bundle must hold plain files only. Replace "
                    "the link with the file itself (or export the bundle again)"
                )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_checksum(bundle_dir: Path) -> str:
    """The bundle's identity: the SHA-256 of its manifest (which holds every file's hash)."""
    return sha256_file(bundle_dir / MANIFEST)


def load_manifest(bundle_dir: Path) -> Manifest:
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: it has no {MANIFEST}")
    return Manifest.from_json(path.read_text(encoding="utf-8"))


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Load the manifest and check every listed file's SHA-256 and the parity verdict;
    a bundle with a symbolic link anywhere inside is refused."""
    refuse_symlinks(bundle_dir)
    manifest = load_manifest(bundle_dir)
    for name, expected in sorted(manifest.files.items()):
        if "/" in name or name.startswith("."):
            raise BundleError(f"bundle file name {name!r} is not a plain file name")
        path = bundle_dir / name
        if path.is_symlink():
            raise BundleError(
                f"bundle file {name} is a symbolic link; replace it with the file itself"
            )
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing from {bundle_dir}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {name} is corrupted (sha256 {actual[:12]}..., manifest says "
                f"{expected[:12]}...); export the bundle again"
            )
    for precision, graphs in manifest.graphs.items():
        for role, name in graphs.items():
            if name not in manifest.files:
                raise BundleError(f"{precision} graph {role} ({name}) is not in the file list")
    if manifest.parity and not manifest.parity.get("passed", False):
        raise BundleError("this bundle failed its parity check at export and must not serve")
    return manifest
