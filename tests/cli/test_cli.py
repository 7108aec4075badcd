"""The `chatdistill` command as a user runs it: real processes, real databases, real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_database, drop_database
from tests.fixtures.cli import run
from tests.live.server import running_server


@pytest.fixture
def pg_env(sqlite_env: dict[str, str]) -> Iterator[dict[str, str]]:
    name = f"chatdistill_cli_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    yield {**sqlite_env, "CHATDISTILL_DATABASE__URL": url}
    drop_database(name)


def test_db_upgrade_downgrade_current_on_postgres(pg_env: dict[str, str]) -> None:
    up = run(pg_env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    current = json.loads(run(pg_env, "db", "current").stdout)
    assert current["current"] == current["head"] is not None
    down = run(pg_env, "db", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert json.loads(run(pg_env, "db", "current").stdout)["current"] is None


def test_operator_and_api_key_commands(sqlite_env: dict[str, str]) -> None:
    assert run(sqlite_env, "db", "upgrade").returncode == 0
    created = run(
        sqlite_env,
        "operators",
        "create",
        "--email",
        "Admin@Example.com",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "admin admin@example.com" in created.stdout
    again = run(
        sqlite_env,
        "operators",
        "create",
        "--email",
        "admin@example.com",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run(
        sqlite_env,
        "operators",
        "create",
        "--email",
        "x@example.com",
        "--password-stdin",
        stdin="short\n",
    )
    assert short.returncode == 1 and "at least 12" in short.stderr

    key = run(sqlite_env, "apikeys", "create", "--name", "crm")
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    assert secret.startswith("cdk_") and "not be shown again" in key.stderr
    listed = [json.loads(line) for line in run(sqlite_env, "apikeys", "list").stdout.splitlines()]
    assert [(k["name"], k["revoked"]) for k in listed] == [("crm", False)]
    assert secret not in run(sqlite_env, "apikeys", "list").stdout
    assert run(sqlite_env, "apikeys", "revoke", "--name", "crm").returncode == 0
    missing = run(sqlite_env, "apikeys", "revoke", "--name", "nope")
    assert missing.returncode == 1 and "no API key named" in missing.stderr


def test_settings_masks_secrets(sqlite_env: dict[str, str]) -> None:
    env = {
        **sqlite_env,
        "CHATDISTILL_DATABASE__URL": "postgresql://app:hunter2secret@db.internal/chat",
        "CHATDISTILL_AUTH__SECRET_KEY": "super-secret-signing-key",
        "CHATDISTILL_REDIS__URL": "redis://:redispass@cache:6379/0",
    }
    shown = run(env, "settings")
    assert shown.returncode == 0, shown.stderr
    assert "hunter2secret" not in shown.stdout
    assert "super-secret-signing-key" not in shown.stdout
    assert "redispass" not in shown.stdout
    assert json.loads(shown.stdout)["database"]["url"].startswith("postgresql+psycopg://app:***@")


def test_settings_masks_the_password_of_every_url(sqlite_env: dict[str, str]) -> None:
    env = {
        **sqlite_env,
        "CHATDISTILL_WORKER__RESPONDER_URL": "http://teacher:respsecret@llm:8001/v1?api_key=qk1",
        "CHATDISTILL_WORKER__RESPONDER_API_KEY": "sk-responder-key",
        "CHATDISTILL_DATABASE__URL": "postgresql://app:p@ss@db.internal/chat?sslpassword=sslpw",
    }
    shown = run(env, "settings")
    assert shown.returncode == 0, shown.stderr
    for secret in ("respsecret", "qk1", "sk-responder-key", "p@ss", "sslpw"):
        assert secret not in shown.stdout, secret
    data = json.loads(shown.stdout)
    assert data["worker"]["responder_url"] == "http://teacher:***@llm:8001/v1?api_key=***"
    assert data["database_url"].startswith("postgresql+psycopg://app:***@db.internal/chat")


def test_bad_setting_is_a_clear_error(sqlite_env: dict[str, str]) -> None:
    result = run({**sqlite_env, "CHATDISTILL_DATABASE__URL": "mysql://x/y"}, "settings")
    assert result.returncode != 0
    assert "PostgreSQL or SQLite" in result.stderr


def test_serve_on_the_embedded_default(sqlite_env: dict[str, str]) -> None:
    """The README's main job: serve on SQLite with nothing else installed; chat and log in."""
    created = run(
        sqlite_env,
        "operators",
        "create",
        "--email",
        "ops@example.com",
        "--password-stdin",
        stdin="another-long-password\n",
    )
    # The database did not exist yet: operators create needs the schema first, and says so.
    assert created.returncode == 1
    assert "run `chatdistill db upgrade` first" in created.stderr
    overrides = {"CHATDISTILL_DATA_DIR": sqlite_env["CHATDISTILL_DATA_DIR"]}
    with running_server(overrides) as base:
        assert (
            run(
                sqlite_env,
                "operators",
                "create",
                "--email",
                "ops@example.com",
                "--password-stdin",
                stdin="another-long-password\n",
            ).returncode
            == 0
        )
        started = httpx.post(f"{base}/v1/widget/conversations", json={}).json()
        headers = {"Authorization": f"Bearer {started['token']}"}
        posted = httpx.post(
            f"{base}/v1/widget/conversations/{started['conversation_id']}/messages",
            json={"text": "Where is my order?"},
            headers=headers,
        )
        assert posted.status_code == 503 and posted.json()["error"]["code"] == "no_model_deployed"
        login = httpx.post(
            f"{base}/v1/operator/login",
            json={"email": "ops@example.com", "password": "another-long-password"},
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        listing = httpx.get(
            f"{base}/v1/operator/conversations", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert listing["total"] == 1 and listing["items"][0]["last_message"] == "Where is my order?"
        metrics = httpx.get(f"{base}/metrics").text
        assert 'route="/v1/widget/conversations/{conversation_id}/messages"' in metrics


def test_two_bundles_of_one_name_get_their_own_run_folders(tmp_path: Path) -> None:
    from distill_worker.cli import default_work_dir

    a = default_work_dir(tmp_path, tmp_path / "clinc" / "bundle")
    b = default_work_dir(tmp_path, tmp_path / "banking" / "bundle")
    assert a != b and a.parent == b.parent == tmp_path / "runs"
    assert a.name.startswith("bundle-") and b.name.startswith("bundle-")
    # The same --out, even spelt another way, resumes the same run.
    assert default_work_dir(tmp_path, tmp_path / "clinc" / ".." / "clinc" / "bundle") == a
