"""Fixtures with the real default teachers (slow tests): one prepared SmolLM2 folder shared by
every test process of a run and kept between runs (re-verified by hash on reuse)."""

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
    return prepare_responder(dest)  # safe when several test processes prepare at once
