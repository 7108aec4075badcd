"""Export an existing bundle's student weights again: a new bundle with the same labels,
tokenizers and decoder vocabulary, new graphs (e.g. with INT8 added), parity-checked again."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from safetensors.torch import load_file
from tokenizers import Tokenizer

from bundle_runtime.manifest import Manifest, verify_bundle
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.export_onnx import Int8Options, export_bundle


def reexport_bundle(
    source: Path,
    out: Path,
    *,
    version: str | None,
    int8: bool,
    int8_options: Int8Options | None = None,
) -> Manifest:
    manifest = verify_bundle(source)
    student = Student(StudentConfig.from_dict(manifest.student_config))
    student.load_state_dict(load_file(str(source / "student.safetensors")))
    student.eval()
    special = manifest.special_tokens
    encoder = Tokenizer.from_file(str(source / "encoder_tokenizer.json"))
    keep = manifest.max_source_tokens - 2
    samples = [
        [
            special["enc_cls"],
            *encoder.encode(label.replace("_", " "), add_special_tokens=False).ids[:keep],
            special["enc_sep"],
        ]
        for label in manifest.intent_labels[:8]
    ]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        enc_json, dec_json = tmp_dir / "encoder_tokenizer.json", tmp_dir / "decoder_tokenizer.json"
        enc_json.write_bytes((source / "encoder_tokenizer.json").read_bytes())
        dec_json.write_bytes((source / "decoder_tokenizer.json").read_bytes())
        return export_bundle(
            student,
            out,
            model_version=version or f"{manifest.model_version}-re{stamp}",
            intent_labels=manifest.intent_labels,
            oos_label=manifest.oos_label,
            encoder_tokenizer_json=enc_json,
            decoder_tokenizer_json=dec_json,
            special_tokens=special,
            max_source_tokens=manifest.max_source_tokens,
            max_new_tokens=manifest.max_new_tokens,
            context_turns=manifest.context_turns,
            handoff_threshold=manifest.handoff_threshold,
            handoff_score=manifest.handoff_score,
            metrics={**manifest.metrics, "reexported_from": manifest.model_version},
            run_id=manifest.run_id,
            int8=int8,
            int8_options=int8_options,
            parity_samples=samples,
            decoder_vocab=manifest.decoder_vocab,
        )
