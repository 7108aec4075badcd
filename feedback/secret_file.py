"""A secret kept in a file of the data folder, created once, atomically.

The key is written in full to a temporary file (mode 0600) in the same folder and hard-linked
into place: the name appears only with its whole content, so processes starting at once never
read an empty or half-written key, and every one of them ends up with the same key (a loser
of the race finds the name taken and reads the winner's).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


class SecretFileError(RuntimeError):
    """The secret file exists but cannot be used; the message says what to do."""


def read_or_create_secret(path: Path) -> bytes:
    """The secret in `path`, generated (48 random bytes, URL-safe) when the file is absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(path)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise SecretFileError(
            f"{path} is empty (an interrupted first start); delete it and start again, or set "
            "CHATDISTILL_AUTH__SECRET_KEY (widget tokens signed with the old key stop working)"
        )
    return key.encode()


def _create(path: Path) -> None:
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)  # mkstemp's default, made explicit
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        # FileExistsError: another process created it first; everyone reads theirs.
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        os.unlink(staging)
