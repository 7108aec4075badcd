"""Evaluate an exported bundle on held-out rows through ONNX Runtime: what would serve, measured
the same way for the candidate and the champion.

Intent accuracy, macro-F1 and out-of-scope recall from the encoder graph; reply quality as chrF
of greedy replies (encoder -> decoder -> decoder_with_past, batch 1) against the rows'
reference replies (never against rated student replies: those are the champion's own words);
the latency of one reply (median and p95 over the decoded rows). Written against the bundle
format (`feedback.bundle`), not against chat_api, which training must not import. Shapes: S
source length, H encoder hidden, V decoder vocabulary.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from distill_worker.data.loaders import Utterance
from distill_worker.stages.evaluate import corpus_chrf
from feedback.bundle import format_source, verify_bundle
from feedback.monitor import percentile


class BundleEvaluator:
    def __init__(self, bundle_dir: Path, *, precision: str = "auto") -> None:
        self.manifest = verify_bundle(bundle_dir)
        graphs = self.manifest.graphs
        self.precision = (
            ("int8" if graphs.get("int8") else "fp32") if precision == "auto" else precision
        )
        files = graphs[self.precision]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._s = {
            role: ort.InferenceSession(str(bundle_dir / files[role]), sess_options=options)
            for role in ("encoder", "decoder", "decoder_with_past")
        }
        self._enc = Tokenizer.from_file(str(bundle_dir / "encoder_tokenizer.json"))
        self._dec = Tokenizer.from_file(str(bundle_dir / "decoder_tokenizer.json"))
        self._enc.no_truncation()
        self._enc.no_padding()
        cfg, special = self.manifest.student_config, self.manifest.special_tokens
        self._layers = int(cfg["dec_layers"])
        self._max_source = min(self.manifest.max_source_tokens, int(cfg["enc_max_positions"]))
        self._limit = max(0, min(self.manifest.max_new_tokens, int(cfg["dec_max_positions"]) - 1))
        self._special = special
        self._kv = [f"{i}.{part}" for i in range(self._layers) for part in ("key", "value")]

    def _ids(self, turns: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        text = format_source(turns, self.manifest.context_turns)
        keep = self._max_source - 2
        body = self._enc.encode(text, add_special_tokens=False).ids[-keep:] if keep > 0 else []
        ids = np.asarray([[self._special["enc_cls"], *body, self._special["enc_sep"]]], np.int64)
        return ids, np.ones_like(ids)

    def intent(self, turns: list[tuple[str, str]]) -> str:
        ids, mask = self._ids(turns)
        _, _, logits = self._s["encoder"].run(None, {"input_ids": ids, "attention_mask": mask})
        return self.manifest.intent_labels[int(np.argmax(logits[0]))]

    def reply(self, turns: list[tuple[str, str]]) -> str:
        """Greedy reply of one conversation (batch 1, with the KV cache)."""
        ids, mask = self._ids(turns)
        hidden, _, _ = self._s["encoder"].run(None, {"input_ids": ids, "attention_mask": mask})
        bos = np.asarray([[self._special["dec_bos"]]], np.int64)
        out = self._s["decoder"].run(
            None, {"input_ids": bos, "encoder_hidden": hidden, "encoder_mask": mask}
        )
        n = 2 * self._layers
        logits, past, cross = out[0][:, -1], out[2 : 2 + n], out[2 + n : 2 + 2 * n]
        tokens: list[int] = []
        for _ in range(self._limit):
            nxt = int(np.argmax(logits[0]))
            if nxt == self._special["dec_eos"]:
                break
            tokens.append(nxt)
            feed: dict[str, np.ndarray] = {
                "input_ids": np.asarray([[nxt]], np.int64),
                "encoder_mask": mask,
            }
            feed.update({f"past.{k}": v for k, v in zip(self._kv, past, strict=True)})
            feed.update({f"cross.{k}": v for k, v in zip(self._kv, cross, strict=True)})
            step = self._s["decoder_with_past"].run(None, feed)
            logits, past = step[0][:, -1], step[2:]
        vocab = self.manifest.decoder_vocab
        ids_out = [vocab[t] for t in tokens] if vocab is not None else tokens
        return str(self._dec.decode(ids_out, skip_special_tokens=True)).strip()


def evaluate_bundle(
    bundle_dir: Path, heldout: Sequence[Utterance], *, max_replies: int
) -> dict[str, Any]:
    """Figures of one bundle on the held-out rows (see the module docstring)."""
    model = BundleEvaluator(bundle_dir)
    labelled = [r for r in heldout if r.intent]
    gold = [r.intent or "" for r in labelled]
    predicted = [model.intent(r.turns()) for r in labelled]
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    oos = model.manifest.oos_label
    oos_gold = [p for p, g in zip(predicted, gold, strict=True) if oos is not None and g == oos]
    # References only: replies that operators wrote or corrected, or that came with a seed
    # corpus. A rated reply of the student is the champion's own output; scoring against it
    # would favour the champion over any candidate.
    with_reply = [r for r in heldout if r.reply and r.reward is None][:max_replies]
    hyps: list[str] = []
    times: list[float] = []
    for row in with_reply or list(heldout)[: min(max_replies, 4)]:
        started = time.perf_counter()
        hyps.append(model.reply(row.turns()))
        times.append((time.perf_counter() - started) * 1000.0)
    refs = [r.reply or "" for r in with_reply]
    ordered = sorted(times)
    return {
        "model_version": model.manifest.model_version,
        "precision": model.precision,
        "rows": len(labelled),
        "intent_accuracy": correct / len(labelled) if labelled else None,
        "oos_rows": len(oos_gold),
        "oos_recall": (sum(p == oos for p in oos_gold) / len(oos_gold)) if oos_gold else None,
        "reply_rows": len(refs),
        "reply_chrf": round(corpus_chrf(hyps, refs), 3) if refs else None,
        "latency_median_ms": round(statistics.median(times), 3) if times else None,
        "latency_p95_ms": round(percentile(ordered, 0.95) or 0.0, 3) if times else None,
    }
