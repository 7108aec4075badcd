"""The generated secret key: created once, atomically, readable only by its owner."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from feedback.secret_file import SecretFileError, read_or_create_secret
from feedback.settings import Settings


def test_first_start_creates_a_private_key_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    first = read_or_create_secret(path)
    assert len(first) >= 60 and read_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no staging file left


def test_settings_use_the_file_when_no_key_is_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.widget_signing_key() == (tmp_path / "secret.key").read_text().encode()
    configured = Settings(data_dir=tmp_path / "other", auth={"secret_key": "configured-key"})
    assert configured.widget_signing_key() == b"configured-key"
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("round_", range(30))
def test_concurrent_first_starts_all_read_the_same_full_key(tmp_path: Path, round_: int) -> None:
    path = tmp_path / f"data-{round_}" / "secret.key"
    threads = 8
    barrier = threading.Barrier(threads)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            keys.append(read_or_create_secret(path))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=start) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(keys) == threads and len(set(keys)) == 1 and len(keys[0]) >= 60
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_an_empty_key_file_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("", encoding="ascii")
    with pytest.raises(SecretFileError, match=r"delete it .* CHATDISTILL_AUTH__SECRET_KEY"):
        read_or_create_secret(path)
