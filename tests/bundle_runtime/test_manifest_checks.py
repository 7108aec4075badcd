"""Bundle checks that keep a bundle inside the artifact store: the model version is a plain
name, and symbolic links are refused (never followed) by `verify_bundle` and `store_bundle`.

The bundle here is built by hand (a manifest and two small files with their SHA-256): these
checks read no graph, so no torch export is needed, and `chatdistill deploy` is run for real on
the same folder."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from bundle_runtime.deploy import store_bundle
from bundle_runtime.manifest import (
    MANIFEST,
    BundleError,
    Manifest,
    check_model_version,
    sha256_file,
    verify_bundle,
)
from tests.fixtures.cli import run

FILES = {"encoder.onnx": b"graph bytes", "encoder_tokenizer.json": b"{}"}


def write_bundle(folder: Path, version: str = "v1-test") -> Path:
    """A bundle folder whose manifest lists its files with their SHA-256."""
    folder.mkdir(parents=True)
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    manifest = Manifest(
        model_version="placeholder",
        student_config={},
        intent_labels=["track_order"],
        files={name: sha256_file(folder / name) for name in FILES},
        graphs={"fp32": {"encoder": "encoder.onnx"}},
        special_tokens={},
    )
    write_manifest(folder, replace(manifest, model_version=version).to_json())
    return folder


def write_manifest(folder: Path, text: str) -> None:
    (folder / MANIFEST).write_text(text, encoding="utf-8")


def with_version(folder: Path, version: str) -> None:
    """Rewrite the manifest's version as raw JSON (a hand-edited, hostile manifest)."""
    text = (folder / MANIFEST).read_text(encoding="utf-8")
    write_manifest(
        folder, text.replace('"model_version": "v1-test"', f'"model_version": "{version}"')
    )


@pytest.mark.parametrize(
    "version",
    ["../../escaped", "..", "a/b", "/abs", ".hidden", "a..b", "", "x" * 121, "v 1", "v1\\..\\x"],
)
def test_a_version_that_is_not_a_plain_name_is_refused(tmp_path: Path, version: str) -> None:
    bundle = write_bundle(tmp_path / "b")
    with_version(bundle, version.replace("\\", "\\\\"))
    with pytest.raises(BundleError, match="not a plain name") as caught:
        verify_bundle(bundle)
    assert "export the bundle again" in str(caught.value)


@pytest.mark.parametrize("version", ["v1", "v20240501-120000-1a2b3c", "run-0123abcd.int8", "A_b"])
def test_plain_versions_pass(tmp_path: Path, version: str) -> None:
    check_model_version(version)  # does not raise
    assert verify_bundle(write_bundle(tmp_path / "b", version)).model_version == version


def test_store_bundle_refuses_an_escaping_version_and_writes_nothing(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "src" / "b")
    with_version(bundle, "../../escaped")
    root = tmp_path / "store" / "bundles"
    with pytest.raises(BundleError, match="not a plain name"):
        store_bundle(bundle, root)
    assert not (tmp_path / "escaped").exists() and not root.exists()


def test_verify_refuses_a_listed_file_that_is_a_symlink(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(FILES["encoder.onnx"])  # same bytes: the checksum alone would pass
    (bundle / "encoder.onnx").unlink()
    (bundle / "encoder.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="symbolic link"):
        verify_bundle(bundle)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_verify_refuses_any_symlink_in_the_folder(tmp_path: Path, kind: str) -> None:
    bundle = write_bundle(tmp_path / "b")
    target = tmp_path / "secret"
    if kind == "file":
        target.write_text("password", encoding="utf-8")
    else:
        target.mkdir()
    (bundle / "extra").symlink_to(target)
    with pytest.raises(BundleError, match="extra is a symbolic link"):
        verify_bundle(bundle)


def test_store_bundle_copies_a_plain_bundle(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "src" / "b")
    manifest, target = store_bundle(bundle, tmp_path / "store")
    assert target == (tmp_path / "store" / "v1-test").resolve()
    assert manifest.model_version == "v1-test" and verify_bundle(target) == manifest
    assert not any(os.path.islink(p) for p in target.iterdir())


def test_store_bundle_refuses_a_symlinked_bundle_and_stores_nothing(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "src" / "b")
    (bundle / "link").symlink_to(tmp_path)
    root = tmp_path / "store"
    with pytest.raises(BundleError, match="symbolic link"):
        store_bundle(bundle, root)
    assert not root.exists() or list(root.iterdir()) == []


def test_cli_deploy_refuses_an_escaping_version(
    tmp_path: Path,
    sqlite_env: dict[str, str],
) -> None:
    bundle = write_bundle(tmp_path / "src" / "b")
    with_version(bundle, "../../escaped")
    assert run(sqlite_env, "db", "upgrade").returncode == 0
    result = run(sqlite_env, "deploy", str(bundle))
    assert result.returncode == 1, result.stdout
    assert "not a plain name" in result.stderr and "export the bundle again" in result.stderr
    data = Path(sqlite_env["CHATDISTILL_DATA_DIR"])
    # bundles_dir is data/bundles: the escape would have landed in data's parent.
    assert not (data.parent / "escaped").exists()
    assert not (data / "bundles").exists() or list((data / "bundles").iterdir()) == []
