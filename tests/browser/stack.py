"""A real stack for the browser tests: a migrated PostgreSQL database, a real tiny student
bundle deployed as `production` (after an earlier version, so there is something to roll back
to), an admin operator, a real `chatdistill serve` process, and a host page on another origin
(a plain HTTP server) that embeds the widget with one script tag.

With `second_process=True` two `chatdistill serve` processes share the database and one Redis
(a fresh key prefix), as two replicas behind a load balancer would: the host page's widget talks
to the first (`api`), an operator's dashboard can use the second (`other_api`)."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from bundle_runtime.deploy import deploy_bundle, store_bundle
from bundle_runtime.manifest import bundle_checksum
from feedback import migrate
from feedback.db import session_scope
from feedback.models import ActorType, DistillRun, OperatorRole, RunStatus, RunTrigger, utcnow
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.operators import OperatorRepository
from tests.conftest import REDIS_URL, TEST_SECRET, create_database, drop_database
from tests.live.server import free_port, running_server

ADMIN_EMAIL = "ada.admin@example.com"
ADMIN_PASSWORD = "a long enough admin password"
WIDGET_TITLE = "Acme support"
WIDGET_GREETING = "Hi! I can help with orders and refunds."
HOST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Outdoor - help centre</title>
<style>body{{margin:0;font-family:sans-serif;color:#222}}header{{background:#0b3d2e;color:#fff;
padding:16px 24px}}main{{max-width:720px;margin:0 auto;padding:24px;line-height:1.5}}</style></head>
<body><header><h1>Acme Outdoor help centre</h1></header>
<main><h2>Orders and refunds</h2><p>Questions about an order or a refund? Our assistant answers
right away; a person takes over when it cannot help.</p></main>
<script src="{api}/widget.js" defer data-api="{api}" data-title="{title}"
  data-greeting="{greeting}" data-primary-color="#0b6e4f" data-text-color="#ffffff"></script>
</body></html>
"""


@dataclass(frozen=True)
class Stack:
    api: str  # the chat API's base URL
    host: str  # the host page's URL (another origin)
    db_url: str
    other_api: str | None = None  # a second API process on the same database and Redis
    pages: Path | None = None  # the host page's folder (served at `host`'s origin)

    def host_page_for(self, api: str, name: str) -> str:
        """Another host page, whose widget talks to `api` (a proxy in front of the stack's)."""
        assert self.pages is not None
        (self.pages / name).write_text(
            HOST_PAGE.format(api=api, title=WIDGET_TITLE, greeting=WIDGET_GREETING),
            encoding="utf-8",
        )
        return self.host.rsplit("/", 1)[0] + f"/{name}"


def _deploy(db_url: str, bundle_dir: Path, bundles_root: Path) -> None:
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with session_scope(factory) as session:
        # An earlier version (the same weights under another id), then the bundle itself.
        manifest, stored = store_bundle(bundle_dir, bundles_root)
        repo = ModelVersionRepository(session)
        repo.register(
            version_id="tiny-0",
            bundle_uri=str(stored),
            checksum=bundle_checksum(stored),
            # A run report's nested reply figures, as the model view shows them.
            metrics={**manifest.metrics, "replies": {"degenerate": 0.25, "chrf_vs_teacher": 31.5}},
        )
        repo.set_alias(PRODUCTION, "tiny-0", reason="first deploy")
        deploy_bundle(
            session,
            bundle_dir,
            bundles_root,
            alias=PRODUCTION,
            reason="browser tests",
            actor_type=ActorType.CLI,
        )
        _runs(session)
        OperatorRepository(session).create(
            email=ADMIN_EMAIL, name="Ada Admin", password=ADMIN_PASSWORD, role=OperatorRole.ADMIN
        )
    engine.dispose()


def _runs(session: Session) -> None:
    """One finished run with its loss curve, and one still running (the dashboard's runs page)."""
    started = utcnow() - dt.timedelta(hours=3)
    session.add(
        DistillRun(
            trigger=RunTrigger.SCHEDULE.value,
            status=RunStatus.SUCCEEDED.value,
            stage="promote",
            progress=1.0,
            metrics={"stage1_loss": [2.1, 1.6, 1.2, 0.9, 0.8], "intent_accuracy": 0.93},
            candidate_version_id="tiny-1",
            created_at=started,
            started_at=started,
            finished_at=started + dt.timedelta(minutes=20),
        )
    )
    session.add(
        DistillRun(
            trigger=RunTrigger.ACCURACY.value,
            status=RunStatus.RUNNING.value,
            stage="stage2_decoder",
            progress=0.45,
            metrics={"stage1_loss": [1.9, 1.4, 1.1]},
            started_at=utcnow() - dt.timedelta(minutes=5),
        )
    )
    session.flush()


@contextmanager
def running_stack(
    tmp: Path,
    bundle_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    second_process: bool = False,
) -> Iterator[Stack]:
    name = f"chatdistill_browser_{uuid.uuid4().hex[:12]}"
    db_url = create_database(name)
    host_port = free_port()
    try:
        _deploy(db_url, bundle_dir, tmp / "data" / "bundles")
        env = {
            "CHATDISTILL_DATA_DIR": str(tmp / "data"),
            "CHATDISTILL_DATABASE__URL": db_url,
            "CHATDISTILL_AUTH__SECRET_KEY": TEST_SECRET,
            "CHATDISTILL_SERVING__PRECISION": "fp32",
            "CHATDISTILL_API__CORS_ORIGINS": f'["http://127.0.0.1:{host_port}"]',
            "CHATDISTILL_RATE_LIMIT__PER_IP_PER_MINUTE": "10000",
            "CHATDISTILL_RATE_LIMIT__CONVERSATIONS_PER_IP_PER_HOUR": "10000",
            "CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": "1000",
            # Every browser test logs in, some twice (two contexts): more than the default 10
            # logins a minute from one address. The limit itself is tested in tests/chat_api.
            "CHATDISTILL_RATE_LIMIT__LOGINS_PER_IP_PER_MINUTE": "1000",
            "CHATDISTILL_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        if second_process:
            env["CHATDISTILL_REDIS__URL"] = REDIS_URL
            env["CHATDISTILL_REDIS__KEY_PREFIX"] = f"chatdistill-browser:{uuid.uuid4().hex}:"
        with ExitStack() as servers:
            api = servers.enter_context(running_server(env))
            other = servers.enter_context(running_server(env)) if second_process else None
            pages = tmp / "host"
            pages.mkdir()
            with _host_page_on(pages, api, host_port) as host:
                yield Stack(api=api, host=host, db_url=db_url, other_api=other, pages=pages)
    finally:
        drop_database(name)


@contextmanager
def _host_page_on(root: Path, api: str, port: int) -> Iterator[str]:
    """The host page on a port chosen before the API started (its origin is in the API's CORS
    settings)."""
    (root / "index.html").write_text(
        HOST_PAGE.format(api=api, title=WIDGET_TITLE, greeting=WIDGET_GREETING), encoding="utf-8"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/index.html"
    finally:
        server.shutdown()
        server.server_close()
