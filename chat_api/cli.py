"""The `chatdistill` command line: serve the API, migrate the store, manage operators and keys.

Settings are read here, once, from the environment (`CHATDISTILL_...`), and passed down.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bundle_runtime.deploy import deploy_bundle
from bundle_runtime.manifest import BundleError
from chat_api.settings_view import masked_settings
from feedback import aliases, migrate
from feedback.db import make_engine, make_session_factory, session_scope
from feedback.errors import FeedbackError, SchemaOutOfDate
from feedback.models import ActorType, OperatorRole
from feedback.repositories.audit import AuditRepository
from feedback.repositories.model_versions import PRODUCTION
from feedback.repositories.operators import ApiKeyRepository, OperatorRepository
from feedback.settings import Settings


def _settings() -> Settings:
    return Settings()


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _migrated_engine(settings: Settings) -> Engine:
    """An engine on a database whose schema matches the code, or a clear exit."""
    engine = make_engine(settings)
    try:
        migrate.require_head(engine)
    except SchemaOutOfDate as exc:
        engine.dispose()
        _fail(str(exc))
    return engine


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory --no-proxy-headers chat_api.cli:app_factory` and
    multi-worker serve (`--no-proxy-headers`: the app reads X-Forwarded-For itself)."""
    from chat_api.app import create_app

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(settings)


# distill_worker's commands, added to `chatdistill` here and only here. They are imported when
# called (or listed by --help), never at start: `distill`, `export` and the teacher commands need
# torch, which the serving image does not have and `chatdistill serve` must not pay for.
WORKER_COMMANDS = (
    "beat", "distill", "eval", "export", "import", "ood-corpus", "quickstart", "simulate",
    "teacher", "worker",
)  # fmt: skip


def _worker_command(name: str) -> click.Command:
    """The distill_worker command `name` (one of WORKER_COMMANDS), imported now."""
    if name == "eval":
        from distill_worker.eval_cli import evaluate

        return evaluate
    if name == "ood-corpus":
        from distill_worker.ood_cli import ood_corpus

        return ood_corpus
    if name in ("worker", "beat"):
        from distill_worker.worker_cli import beat, worker

        return worker if name == "worker" else beat
    from distill_worker import cli

    by_name: dict[str, click.Command] = {
        "distill": cli.distill,
        "export": cli.export,
        "import": cli.import_corpus,
        "quickstart": cli.quickstart,
        "simulate": cli.simulate_command,
        "teacher": cli.teacher,
    }
    return by_name[name]


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *WORKER_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in WORKER_COMMANDS:
            return super().get_command(ctx, cmd_name)
        try:
            return _worker_command(cmd_name)
        except ImportError as exc:
            _fail(
                f"`chatdistill {cmd_name}` needs the training extra ({exc.name} is missing): "
                "pip install 'chatdistill[train]'"
            )


@click.group(cls=_Commands)
def main() -> None:
    """chatdistill: customer-service chat with a continual distillation loop."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: settings api.host).")
@click.option("--port", type=int, default=None, help="Port (default: settings api.port).")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes.")
@click.option(
    "--migrate/--no-migrate",
    "migrate_first",
    default=None,
    help="Apply migrations first (default: yes on the embedded SQLite file, no on Postgres).",
)
def serve(host: str | None, port: int | None, workers: int, migrate_first: bool | None) -> None:
    """Run the chat API with uvicorn."""
    import uvicorn

    settings = _settings()
    engine = make_engine(settings)
    try:
        embedded = settings.database_url.startswith("sqlite")
        if migrate_first or (migrate_first is None and embedded):
            migrate.upgrade(engine)
        migrate.require_head(engine)
    except SchemaOutOfDate as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    click.echo(f"chatdistill API on http://{bind_host}:{bind_port}  (docs: /docs)")
    uvicorn.run(
        "chat_api.cli:app_factory",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # The app counts trusted proxies itself (api.trusted_proxy_hops, chat_api.forwarded):
        # uvicorn must leave the client address as the TCP peer.
        proxy_headers=False,
    )


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    settings = _settings()
    engine = make_engine(settings)
    try:
        migrate.upgrade(engine, revision)
        click.echo(f"database at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` drops everything)."""
    settings = _settings()
    engine = make_engine(settings)
    try:
        migrate.downgrade(engine, revision)
        click.echo(f"database at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    engine = make_engine(_settings())
    try:
        click.echo(
            json.dumps(
                {"current": migrate.current_revision(engine), "head": migrate.head_revision()}
            )
        )
    finally:
        engine.dispose()


@contextmanager
def _store(settings: Settings) -> Iterator[Session]:
    """A unit of work on the migrated store; expected store errors end the command clearly."""
    engine = _migrated_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    except FeedbackError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()


def _audit(session: Session, action: str, target_type: str, target_id: str, **details: Any) -> None:
    AuditRepository(session).record(
        actor_type=ActorType.CLI,
        actor_id=None,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )


@main.group()
def operators() -> None:
    """Dashboard operators."""


@operators.command("create")
@click.option("--email", required=True)
@click.option("--name", default="", help="Display name (default: the e-mail).")
@click.option(
    "--role",
    type=click.Choice([r.value for r in OperatorRole]),
    default="admin",
    show_default=True,
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def operators_create(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create an operator (the first one is usually an admin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    with _store(settings) as session:
        operator = OperatorRepository(session).create(
            email=email,
            name=name,
            password=password,
            role=OperatorRole(role),
            min_password_length=settings.auth.min_password_length,
        )
        _audit(
            session,
            "operator.create",
            "operator",
            str(operator.id),
            email=operator.email,
            role=operator.role,
        )
    click.echo(f"created {operator.role} {operator.email} ({operator.id})")


@operators.command("list")
def operators_list() -> None:
    """List operators as JSON lines."""
    with _store(_settings()) as session:
        for op in OperatorRepository(session).list():
            line = {"id": str(op.id), "email": op.email, "role": op.role, "active": op.active}
            click.echo(json.dumps(line))


@main.group()
def apikeys() -> None:
    """API keys for server-to-server clients."""


@apikeys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. the client's name.")
def apikeys_create(name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    with _store(_settings()) as session:
        issued = ApiKeyRepository(session).create(name=name)
        _audit(
            session,
            "api_key.create",
            "api_key",
            str(issued.api_key.id),
            name=issued.api_key.name,
            prefix=issued.api_key.prefix,
        )
    click.echo(issued.key)
    click.echo(f"(store it now: it will not be shown again; id {issued.api_key.id})", err=True)


@apikeys.command("list")
def apikeys_list() -> None:
    """List keys (name, prefix, state) as JSON lines; secrets are never shown."""
    with _store(_settings()) as session:
        for key in ApiKeyRepository(session).list():
            line = {
                "id": str(key.id),
                "name": key.name,
                "prefix": key.prefix,
                "revoked": key.revoked_at is not None,
            }
            click.echo(json.dumps(line))


@apikeys.command("revoke")
@click.option("--name", required=True)
def apikeys_revoke(name: str) -> None:
    """Revoke the key with this name."""
    with _store(_settings()) as session:
        repo = ApiKeyRepository(session)
        matches = [k for k in repo.list() if k.name == name]
        if not matches:
            _fail(f"no API key named {name!r}; see `chatdistill apikeys list`")
        repo.revoke(matches[0])
        _audit(session, "api_key.revoke", "api_key", str(matches[0].id), name=name)
    click.echo(f"revoked {name}")


@main.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--alias", default=PRODUCTION, show_default=True, help="Alias to point at it.")
@click.option("--reason", default="manual deploy", show_default=True)
def deploy(bundle_dir: Path, alias: str, reason: str) -> None:
    """Verify a bundle, copy it into the artifact store, register it and point ALIAS at it."""
    settings = _settings()
    try:
        with _store(settings) as session:
            done = deploy_bundle(
                session,
                bundle_dir,
                settings.bundles_dir,
                alias=alias,
                reason=reason,
                actor_type=ActorType.CLI,
            )
    except BundleError as exc:
        _fail(f"{bundle_dir} cannot be deployed: {exc}")
    aliases.publish(settings, done.move)  # after the unit of work committed the move
    click.echo(
        f"{done.manifest.model_version} is now {alias} (was {done.previous or 'nothing'}); "
        f"bundle at {done.bundle_dir}. Running API processes swap to it (Redis event, or "
        f"within {settings.events.poll_interval_s:g} s by polling)."
    )


@main.group()
def bench() -> None:
    """Benchmarks; they live in the repository's bench/ folder (run from a checkout)."""


@bench.command(
    "serving",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_serving(args: tuple[str, ...]) -> None:
    """Serving throughput and latency: `--bundle DIR --json OUT [--clients 1 8 32 64]
    [--duration S]`; `--help` lists every option (bench/serving.py)."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "bench" / "serving.py"
    if not script.is_file():
        _fail(f"{script} is missing: benchmarks run from a repository checkout, not a wheel")
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    click.echo(json.dumps(masked_settings(_settings()), indent=2))


if __name__ == "__main__":
    main()
