"""Operators, their login sessions (bearer tokens) and API keys."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedback.credentials import (
    hash_password,
    hash_token,
    new_token,
    verify_password,
)
from feedback.errors import AuthError, Conflict, InvalidInput, NotFound
from feedback.lockout import LockoutPolicy, LockState, Verdict, judge
from feedback.models import ApiKey, Operator, OperatorRole, OperatorSession, utcnow

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    """The form e-mails are stored and looked up in."""
    return email.strip().lower()


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, never stored
    expires_at: dt.datetime


@dataclass(frozen=True)
class IssuedApiKey:
    key: str  # shown once, never stored
    api_key: ApiKey


class OperatorRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self,
        *,
        email: str,
        name: str,
        password: str,
        role: OperatorRole = OperatorRole.OPERATOR,
        min_password_length: int = 12,
    ) -> Operator:
        email = normalize_email(email)
        if not _EMAIL.match(email):
            raise InvalidInput(f"{email!r} is not an e-mail address")
        if len(password) < min_password_length:
            raise InvalidInput(f"the password must have at least {min_password_length} characters")
        if self.session.scalar(select(Operator.id).where(Operator.email == email)) is not None:
            raise Conflict(f"an operator with e-mail {email} already exists")
        operator = Operator(
            email=email,
            name=name.strip() or email,
            role=role.value,
            password_hash=hash_password(password),
            active=True,
        )
        self.session.add(operator)
        try:
            with self.session.begin_nested():
                self.session.flush()
        except IntegrityError as exc:
            raise Conflict(f"an operator with e-mail {email} already exists") from exc
        return operator

    def get(self, operator_id: uuid.UUID) -> Operator:
        operator = self.session.get(Operator, operator_id)
        if operator is None:
            raise NotFound(f"operator {operator_id} does not exist")
        return operator

    def list(self) -> Sequence[Operator]:
        return self.session.scalars(select(Operator).order_by(Operator.created_at)).all()

    def set_active(self, operator: Operator, active: bool) -> None:
        operator.active = active
        if not active:
            self.revoke_all_sessions(operator.id)
        self.session.flush()

    def find_for_login(self, email: str) -> Operator | None:
        """The operator with this e-mail, its row locked until the transaction ends (PostgreSQL;
        SQLite transactions take the write lock anyway), so that concurrent attempts on one
        account are judged one after the other and none escapes the lockout count."""
        return self.session.scalar(
            select(Operator).where(Operator.email == normalize_email(email)).with_for_update()
        )

    def attempt_login(
        self, operator: Operator, password: str, *, policy: LockoutPolicy, now: dt.datetime
    ) -> Verdict:
        """Judge a login to this account under the lockout policy and store the new count and
        lock on its row. A successful attempt stamps `last_login_at`; a deactivated account
        still counts wrong passwords like any other (its answer must not differ before the
        password is right)."""
        before = LockState(operator.failed_logins, operator.locked_until)
        verdict = judge(
            before, policy, now, lambda: verify_password(password, operator.password_hash)
        )
        if verdict.state != before:
            operator.failed_logins = verdict.state.failures
            operator.locked_until = verdict.state.locked_until
        if verdict.ok and operator.active:
            operator.last_login_at = now
        self.session.flush()
        return verdict

    def issue_session(self, operator: Operator, *, ttl: dt.timedelta) -> IssuedToken:
        token = new_token("cdo")
        expires_at = utcnow() + ttl
        self.session.add(
            OperatorSession(
                operator_id=operator.id, token_hash=hash_token(token), expires_at=expires_at
            )
        )
        self.session.flush()
        return IssuedToken(token=token, expires_at=expires_at)

    def resolve_session(self, token: str) -> Operator:
        row = self.session.execute(
            select(OperatorSession, Operator)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(OperatorSession.token_hash == hash_token(token))
        ).first()
        if row is None:
            raise AuthError("invalid token; log in again")
        op_session, operator = row
        if op_session.revoked_at is not None:
            raise AuthError("this token was revoked (logged out); log in again")
        if op_session.expires_at <= utcnow():
            raise AuthError("this token has expired; log in again")
        if not operator.active:
            raise AuthError("this operator account is deactivated; ask an admin to reactivate it")
        return operator

    def revoke_session(self, token: str) -> None:
        op_session = self.session.scalar(
            select(OperatorSession).where(OperatorSession.token_hash == hash_token(token))
        )
        if op_session is not None and op_session.revoked_at is None:
            op_session.revoked_at = utcnow()
            self.session.flush()

    def revoke_all_sessions(self, operator_id: uuid.UUID) -> None:
        now = utcnow()
        for op_session in self.session.scalars(
            select(OperatorSession).where(
                OperatorSession.operator_id == operator_id, OperatorSession.revoked_at.is_(None)
            )
        ):
            op_session.revoked_at = now


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, *, name: str, created_by: uuid.UUID | None = None) -> IssuedApiKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("an API key needs a name of 1 to 100 characters")
        if self.session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise Conflict(f"an API key named {name!r} already exists; pick another name")
        key = new_token("cdk")
        api_key = ApiKey(
            name=name, prefix=key[:10], key_hash=hash_token(key), created_by=created_by
        )
        self.session.add(api_key)
        self.session.flush()
        return IssuedApiKey(key=key, api_key=api_key)

    def list(self) -> Sequence[ApiKey]:
        return self.session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()

    def get(self, key_id: uuid.UUID) -> ApiKey:
        api_key = self.session.get(ApiKey, key_id)
        if api_key is None:
            raise NotFound(f"API key {key_id} does not exist")
        return api_key

    def revoke(self, api_key: ApiKey) -> None:
        if api_key.revoked_at is None:
            api_key.revoked_at = utcnow()
            self.session.flush()

    def resolve(self, key: str) -> ApiKey:
        api_key = self.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(key)))
        if api_key is None:
            raise AuthError("invalid API key")
        if api_key.revoked_at is not None:
            raise AuthError("this API key was revoked; ask an admin for a new one")
        api_key.last_used_at = utcnow()
        return api_key
