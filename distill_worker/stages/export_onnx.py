"""Export a trained `Student` as a serving bundle (`bundle_runtime.manifest`): ONNX graphs
(opset 17, dynamic batch and lengths), optional INT8 graphs, tokenizers, safetensors weights,
a manifest.

The export runs on the CPU: a student trained on a GPU is exported from a CPU copy of its
weights (the caller's student stays where it is, untouched), so the graphs, the weights file and
the parity reference are the same as for a student trained on the CPU.

The bundle is written into a temporary sibling folder and renamed into place only once the FP32
parity check has passed. Parity runs the serving runtime itself (`bundle_runtime.onnx_student`,
torch-free) against the torch student: the same greedy tokens as `Student.generate`, and the
logits of the first decode steps, the intent logits and the reward within the tolerance.

Errors:
    ExportError     the export or its parity check failed; nothing was left at `out_dir`
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from bundle_runtime.decoding import Decoding
from bundle_runtime.handoff_score import MAX_SOFTMAX, check_handoff
from bundle_runtime.manifest import MANIFEST, Manifest, sha256_file
from bundle_runtime.onnx_student import OnnxStudent
from distill_worker.model.student import Student, padding_bias

logger = logging.getLogger(__name__)

OPSET = 17
PARITY_STEPS = 4  # decode steps whose logits are compared
SPECIAL_TOKENS = ("enc_cls", "enc_sep", "enc_pad", "dec_bos", "dec_eos", "dec_pad")


class ExportError(Exception):
    """The bundle could not be exported; the message says why and what to do."""


class _Graph(nn.Module):
    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student


class EncoderGraph(_Graph):
    """input_ids, attention_mask [B,S] -> hidden [B,S,H], pooled [B,H], intent_logits [B,C]."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.student.encode(input_ids, attention_mask)


class DecoderGraph(_Graph):
    """First step: input_ids [B,T], encoder_hidden [B,S,H], encoder_mask [B,S] -> logits
    [B,T,V], hidden [B,T,D], present self K/V [B,h,T,d] and cross K/V [B,h,S,d] per layer."""

    def forward(self, ids: Tensor, enc_hidden: Tensor, enc_mask: Tensor) -> tuple[Tensor, ...]:
        cross = self.student.decoder.cross_keys_values(enc_hidden)
        logits, hidden, present = self.student.decoder(ids, cross, enc_mask, None)
        return (logits, hidden, *[t for kv in present + cross for t in kv])


class DecoderWithPastGraph(_Graph):
    """Later steps: input_ids [B,1], encoder_mask [B,S], past self K/V [B,h,P,d] and cross K/V
    per layer -> logits [B,1,V], hidden [B,1,D], present self K/V [B,h,P+1,d] per layer."""

    def forward(self, input_ids: Tensor, enc_mask: Tensor, *kv: Tensor) -> tuple[Tensor, ...]:
        pairs = [(kv[i], kv[i + 1]) for i in range(0, len(kv), 2)]
        n = len(pairs) // 2
        logits, hidden, present = self.student.decoder(input_ids, pairs[n:], enc_mask, pairs[:n])
        return (logits, hidden, *[t for pair in present for t in pair])


class DecoderStepGraph(_Graph):
    """Batched step over caches of different lengths (continuous batching): input_ids [B,1],
    positions [B,1] (each row's real past length), self_mask [B,P+1] (1: a real past entry or
    the new token), encoder_mask [B,S], past self K/V [B,h,P,d] left-padded, cross K/V
    [B,h,S,d] -> logits [B,1,V], hidden [B,1,D], present self K/V [B,h,P+1,d]. The same layers
    as `Decoder.forward` with one new token (no causal mask needed), positions and padding
    given explicitly."""

    def forward(
        self, input_ids: Tensor, positions: Tensor, self_mask: Tensor, enc_mask: Tensor, *kv: Tensor
    ) -> tuple[Tensor, ...]:
        dec = self.student.decoder
        pairs = [(kv[i], kv[i + 1]) for i in range(0, len(kv), 2)]
        n = len(pairs) // 2
        x = dec.embed(input_ids) + dec.positions(positions)
        self_bias, cross_bias = padding_bias(self_mask, x.dtype), padding_bias(enc_mask, x.dtype)
        present = []
        for i, layer in enumerate(dec.layers):
            x, pair = layer(x, self_bias, pairs[i], pairs[n + i], cross_bias)
            present.append(pair)
        hidden = dec.final_norm(x)
        logits = hidden @ dec.embed.weight.T
        return (logits, hidden, *[t for pair in present for t in pair])


class CrossKVGraph(_Graph):
    """encoder_hidden [B,S,H] -> cross K/V [B,h,S,d] per layer: what a request needs to join a
    running batch, whose shared `decoder_step` then computes its first token with the others."""

    def forward(self, enc_hidden: Tensor) -> tuple[Tensor, ...]:
        cross = self.student.decoder.cross_keys_values(enc_hidden)
        return tuple(t for pair in cross for t in pair)


class RewardGraph(_Graph):
    """pooled [B,H], reply_hidden_mean [B,D] -> reward logit [B]. `Student.reward` mean-pools
    the reply states itself; this graph takes the mean so that serving can accumulate it."""

    def forward(self, pooled: Tensor, reply_hidden_mean: Tensor) -> Tensor:
        reward: Tensor = self.student.reward_head(torch.cat([pooled, reply_hidden_mean], -1))
        return reward.squeeze(-1)


def export_graphs(student: Student, folder: Path) -> dict[str, str]:
    """Write the six FP32 graphs (opset 17, dynamic batch and lengths) of a student on the CPU;
    -> role -> file name.
    Dummy sizes avoid 1 so that no axis is specialised: batch 2, source 5, target 2, past 3."""
    cfg = student.cfg
    n, h, heads, d = cfg.dec_layers, cfg.enc_hidden, cfg.dec_heads, cfg.dec_hidden // cfg.dec_heads
    b, s, t, p, bos = 2, 5, 2, 3, cfg.dec_bos_id
    mask = torch.ones(b, s, dtype=torch.long)
    present, cross, past = (
        [f"{kind}.{i}.{part}" for i in range(n) for part in ("key", "value")]
        for kind in ("present", "cross", "past")
    )
    src, kv = "batch,source", {name: "batch,,source" for name in cross}
    # role -> (module, inputs, {input: axes}, {output: axes}); "batch,,source": {0:..., 2:...}
    specs: dict[str, tuple[nn.Module, tuple[Tensor, ...], dict[str, str], dict[str, str]]] = {
        "encoder": (
            EncoderGraph(student), (torch.ones(b, s, dtype=torch.long), mask),
            {"input_ids": src, "attention_mask": src},
            {"hidden": src, "pooled": "batch", "intent_logits": "batch"},
        ),
        "decoder": (
            DecoderGraph(student), (torch.full((b, t), bos), torch.randn(b, s, h), mask),
            {"input_ids": "batch,target", "encoder_hidden": src, "encoder_mask": src},
            {"logits": "batch,target", "hidden": "batch,target",
             **{k: "batch,,target" for k in present}, **kv},
        ),
        "decoder_with_past": (
            DecoderWithPastGraph(student),
            (torch.full((b, 1), bos), mask, *[torch.randn(b, heads, p, d) for _ in past],
             *[torch.randn(b, heads, s, d) for _ in cross]),
            {"input_ids": "batch,new", "encoder_mask": src,
             **{k: "batch,,past" for k in past}, **kv},
            {"logits": "batch,new", "hidden": "batch,new", **{k: "batch,,total" for k in present}},
        ),
        "decoder_step": (
            DecoderStepGraph(student),
            (torch.full((b, 1), bos), torch.full((b, 1), p), torch.ones(b, p + 1, dtype=torch.long),
             mask, *[torch.randn(b, heads, p, d) for _ in past],
             *[torch.randn(b, heads, s, d) for _ in cross]),
            {"input_ids": "batch,new", "positions": "batch,new", "self_mask": "batch,total",
             "encoder_mask": src, **{k: "batch,,past" for k in past}, **kv},
            {"logits": "batch,new", "hidden": "batch,new", **{k: "batch,,total" for k in present}},
        ),
        "cross_kv": (
            CrossKVGraph(student), (torch.randn(b, s, h),), {"encoder_hidden": src}, kv,
        ),
        "reward": (
            RewardGraph(student), (torch.randn(b, h), torch.randn(b, cfg.dec_hidden)),
            {"pooled": "batch", "reply_hidden_mean": "batch"}, {"reward": "batch"},
        ),
    }  # fmt: skip
    with torch.no_grad(), warnings.catch_warnings():
        # The head size becomes a constant (it is one); the TorchScript exporter is deprecated
        # but is the one that exports this decoder with its KV cache cleanly.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.simplefilter("ignore", DeprecationWarning)
        for role, (module, args, inputs, outputs) in specs.items():
            names = inputs | outputs
            axes = {k: {i: a for i, a in enumerate(v.split(",")) if a} for k, v in names.items()}
            torch.onnx.export(
                module, args, str(folder / f"{role}.onnx"), input_names=list(inputs),
                output_names=list(outputs), dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    student.eval()  # the exporter restores the module's training flag; parity needs eval
    return {role: f"{role}.onnx" for role in specs}


@dataclass(frozen=True)
class Int8Options:
    """How the INT8 graphs are made: dynamic quantization (weights INT8 ahead of time,
    activations scaled per batch at run time, no calibration data).

    `fp32_heads`: the intent and reward heads' layers stay FP32 (one small matrix each: their
    rounding lands straight on the predicted intent and the reply score, for a negligible share
    of the work). `per_channel`: one weight scale per output channel instead of one per
    matrix. `bench/int8_variants.py` measures each against FP32 on a bundle and data set."""

    fp32_heads: bool = False
    # measured on HWU64's valid split (1,076 rows): per-tensor INT8 cost 0.84 points of
    # accuracy against FP32, per-channel 0.19, at the same speed; FP32 heads added nothing
    per_channel: bool = True


_HEADS = ("/intent_head/", "/reward_head/")  # node-name prefixes of the heads' layers in the graphs


def quantize_graphs(
    folder: Path, fp32: dict[str, str], options: Int8Options | None = None
) -> tuple[dict[str, str], str | None]:
    """INT8 (dynamic, QInt8 weights) copies of the graphs; -> (role -> file, why it failed)."""
    import onnx
    import onnxruntime.quantization as ortq

    options = options or Int8Options()
    int8 = {role: f"{role}.int8.onnx" for role in fp32}
    weights = ortq.QuantType.QInt8
    try:
        for role, name in fp32.items():
            keep = []
            if options.fp32_heads:
                graph = onnx.load(str(folder / name), load_external_data=False).graph
                heads = [n.name for n in graph.node if n.name.startswith(_HEADS)]
                # the quantizer splits a Gemm into `<name>_MatMul` + `<name>_Add` first
                keep = [*heads, *(f"{name}_MatMul" for name in heads)]
            ortq.quantize_dynamic(
                folder / name,
                folder / int8[role],
                weight_type=weights,
                per_channel=options.per_channel,
                nodes_to_exclude=keep,
            )
    except Exception as exc:  # the quantizer raises many types; INT8 is optional
        for leftover in folder.glob("*.int8.onnx"):
            leftover.unlink()
        return {}, f"{type(exc).__name__}: {exc}"
    return int8, None


def _pad(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists -> (ids, mask) [B, longest]."""
    lengths = np.array([len(r) for r in rows])
    ids = np.array([r + [pad] * (lengths.max() - len(r)) for r in rows], dtype=np.int64)
    return ids, (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)


@torch.no_grad()
def check_parity(
    student: Student, folder: Path, samples: list[list[int]], tolerance: float
) -> dict[str, Any]:
    """The serving runtime on the bundle in `folder` vs the torch student (on the CPU) on the
    same inputs.
    Checking the runtime itself (`bundle_runtime`, torch-free), rather than a second copy of its
    loop, is the point."""
    fp32 = OnnxStudent(folder, precision="fp32")
    max_new_tokens = fp32.manifest.max_new_tokens
    ids, mask = _pad(samples, fp32.manifest.special_tokens["enc_pad"])
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    ref_tokens = student.generate(t_ids, t_mask, max_new_tokens)
    gen = fp32.run(ids, mask, max_new_tokens, Decoding.greedy())  # torch's generate is greedy
    # Teacher-forced torch pass over what the runtime fed the decoder: BOS + the tokens (all of
    # them after EOS, all but the last when the length limit cut the reply).
    pairs = zip(gen.tokens, gen.finished, strict=True)
    fed = [[student.cfg.dec_bos_id, *(t if done else t[:-1])] for t, done in pairs]
    dec_ids, dec_mask = _pad(fed, student.cfg.dec_pad_id)
    ref = student(t_ids, t_mask, torch.from_numpy(dec_ids), torch.from_numpy(dec_mask))
    steps = min(PARITY_STEPS, dec_ids.shape[1])
    valid = dec_mask[:, :steps, None] == 1
    step_diff = fp32.step_logits(ids, mask, steps) - ref["logits"][:, :steps].numpy()
    diffs = {
        "max_abs_logit_diff": np.abs(np.where(valid, step_diff, 0.0)).max(),
        "max_abs_intent_logit_diff": np.abs(gen.intent_logits - ref["intent_logits"].numpy()).max(),
        "max_abs_reward_diff": np.abs(gen.reward_logits - ref["reward"].numpy()).max(),
    }
    greedy = float(np.mean([a == b for a, b in zip(gen.tokens, ref_tokens, strict=True)]))
    report: dict[str, Any] = {k: float(v) for k, v in diffs.items()} | {
        "tolerance": tolerance, "samples": len(samples), "steps": steps,
        "greedy_match_rate": greedy, "int8_greedy_match_rate": None, "int8_intent_agreement": None,
    }  # fmt: skip
    report["passed"] = greedy == 1.0 and max(report[k] for k in diffs) <= tolerance
    if "int8" in fp32.manifest.graphs:
        int8 = OnnxStudent(folder, precision="int8")
        quant = int8.run(ids, mask, max_new_tokens, Decoding.greedy())
        same = [a == b for a, b in zip(quant.tokens, ref_tokens, strict=True)]
        report["int8_greedy_match_rate"] = float(np.mean(same))
        agree = quant.intent_logits.argmax(-1) == gen.intent_logits.argmax(-1)
        report["int8_intent_agreement"] = float(agree.mean())
    return report


def export_bundle(
    student: Student,
    out_dir: Path,
    *,
    model_version: str,
    intent_labels: list[str],
    oos_label: str | None,
    encoder_tokenizer_json: Path,
    decoder_tokenizer_json: Path,
    special_tokens: dict[str, int],
    max_source_tokens: int,
    max_new_tokens: int,
    context_turns: int,
    handoff_threshold: float,
    metrics: dict[str, Any],
    handoff_score: str = MAX_SOFTMAX,
    run_id: str | None,
    int8: bool = True,
    int8_options: Int8Options | None = None,
    parity_samples: list[list[int]],
    parity_tolerance: float = 1e-3,
    decoder_vocab: list[int] | None = None,
    decoding: Decoding | None = None,
    approved_seeds: dict[str, str] | None = None,
) -> Manifest:
    """Write the bundle at `out_dir` (must not exist) -> its manifest. ExportError otherwise.
    `decoding`: the serving decode settings stored in the manifest (None: the defaults);
    `approved_seeds`: intent -> the reply deploying seeds as its approved answer."""
    cfg = student.cfg
    lacking = sorted(set(SPECIAL_TOKENS) - set(special_tokens))
    dec_special = (special_tokens.get("dec_bos"), special_tokens.get("dec_eos"))
    checks = {
        f"{out_dir} exists; bundles are immutable, export to a new folder": out_dir.exists(),
        f"{len(intent_labels)} intent labels for {cfg.n_intents} intents": (
            len(intent_labels) != cfg.n_intents
        ),
        f"oos_label {oos_label!r} is not an intent label": oos_label not in (None, *intent_labels),
        f"special_tokens lacks {lacking}": bool(lacking),
        "dec_bos/dec_eos differ from the student config": (
            dec_special != (cfg.dec_bos_id, cfg.dec_eos_id)
        ),
        "parity_samples is empty": not parity_samples,
        "max_new_tokens must be at least 1": max_new_tokens < 1,
        f"decoder_vocab has {len(decoder_vocab or [])} ids for {cfg.dec_vocab_size} outputs": (
            decoder_vocab is not None and len(decoder_vocab) != cfg.dec_vocab_size
        ),
    }
    try:
        check_handoff(handoff_score, handoff_threshold)
    except ValueError as exc:
        checks[str(exc)] = True
    if any(checks.values()):
        raise ExportError("cannot export: " + "; ".join(m for m, bad in checks.items() if bad))
    if next(student.parameters()).device.type != "cpu":  # a GPU-trained student: a CPU copy
        student = copy.deepcopy(student).cpu()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    was_training = student.training
    student.eval()
    try:
        graphs = {"fp32": export_graphs(student, tmp)}
        quantized, int8_skipped = (
            quantize_graphs(tmp, graphs["fp32"], int8_options) if int8 else ({}, "not asked")
        )
        if quantized:
            graphs["int8"] = quantized
        elif int8:
            logger.warning("INT8 quantization skipped for %s: %s", model_version, int8_skipped)
        state = {k: v.detach().contiguous() for k, v in student.state_dict().items()}
        save_file(state, str(tmp / "student.safetensors"), metadata={"config": cfg.to_json()})
        shutil.copyfile(encoder_tokenizer_json, tmp / "encoder_tokenizer.json")
        shutil.copyfile(decoder_tokenizer_json, tmp / "decoder_tokenizer.json")
        manifest = Manifest(
            model_version=model_version,
            student_config=asdict(cfg),
            intent_labels=list(intent_labels),
            files={p.name: sha256_file(p) for p in sorted(tmp.iterdir())},
            graphs=graphs,
            special_tokens={k: int(special_tokens[k]) for k in SPECIAL_TOKENS},
            oos_label=oos_label,
            decoder_vocab=list(decoder_vocab) if decoder_vocab is not None else None,
            handoff_threshold=handoff_threshold,
            handoff_score=handoff_score,
            max_source_tokens=max_source_tokens,
            max_new_tokens=max_new_tokens,
            context_turns=context_turns,
            decoding=(decoding or Decoding()).to_dict(),
            approved_seeds=dict(approved_seeds or {}),
            metrics=dict(metrics),
            run_id=run_id,
            created_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        # Provisional manifest (parity pending) so that the runtime can load the folder.
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        parity = check_parity(student, tmp, parity_samples, parity_tolerance)
        parity["int8_skipped"] = int8_skipped
        if quantized:
            parity["int8_options"] = asdict(int8_options or Int8Options())
        if not parity["passed"]:
            raise ExportError(
                f"FP32 parity check failed for {model_version} ({parity}); the bundle was not "
                "written. Check the exported graphs against Student.forward"
            )
        manifest = replace(manifest, parity=parity)
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        tmp.rename(out_dir)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"export of {model_version} failed: {exc}") from exc
    finally:
        student.train(was_training)
    logger.info("exported bundle %s to %s (parity %s)", model_version, out_dir, parity)
    return manifest
