"""Legal entities, users, roles and revocable API tokens.

Entity: the legal person that holds accounts (an enterprise, a bank, the registry operator).
User: (username, role, entity) with an Argon2 password hash. Token: random secret shown once,
stored as its SHA-256, with an expiry and a revocation time. Personal data stays out of the journal.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from carbonhub.core import journal
from carbonhub.core.db import Database, UnitOfWork, metadata
from carbonhub.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from carbonhub.core.ids import new_id
from carbonhub.core.timefmt import iso


class Role(StrEnum):
    OPERATOR = "operator"
    ENTERPRISE = "enterprise"
    VERIFIER = "verifier"
    MEMBER = "member"
    BANK = "bank"
    PARTNER = "partner"
    PARTICIPANT = "participant"
    LENDER = "lender"
    PUBLIC = "public"


entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_en", sa.String(200), nullable=False, server_default=""),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("credit_code", sa.String(32), nullable=False, unique=True),
    sa.Column("sector", sa.String(32), nullable=False, server_default=""),
    sa.Column("region", sa.String(32), nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("entity_id", sa.String(36), sa.ForeignKey("entities.id"), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.String(32), nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
)

_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{2,63}$")
# 统一社会信用代码: 18 characters from 0-9 and A-Z without I, O, S, V, Z.
_CREDIT_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")


@dataclass(frozen=True)
class Actor:
    user_id: str
    username: str
    role: Role
    entity_id: str | None

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


SYSTEM = Actor("system", "system", Role.OPERATOR, None)
PUBLIC = Actor("public", "public", Role.PUBLIC, None)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKEN_CACHE_S = 2.0  # how long another process's revocation may take to reach this one
_TOKEN_CACHE_MAX = 10_000


class AuthService:
    def __init__(self, db: Database) -> None:
        self.db = db
        # token digest → (actor, expires_at, monotonic time the entry lapses): every API call
        # names its token, and a read transaction per call costs more than the order it carries
        self._tokens: dict[str, tuple[Actor, str, float]] = {}

    def create_entity(
        self,
        name: str,
        kind: str,
        credit_code: str,
        *,
        name_en: str = "",
        sector: str = "",
        region: str = "",
        actor: Actor = SYSTEM,
    ) -> dict[str, Any]:
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidInput(
                "ENTITY_NAME_INVALID", "entity name is required (≤ 200 characters)", "主体名称必填"
            )
        if not _CREDIT_CODE.fullmatch(credit_code or ""):
            raise InvalidInput(
                "CREDIT_CODE_INVALID",
                "unified social credit code must be 18 characters (0-9, A-Z without I O S V Z)",
                "统一社会信用代码须为18位",
            )
        with self.db.uow() as uow:
            if uow.conn.execute(
                sa.select(entities.c.id).where(entities.c.credit_code == credit_code)
            ).first():
                raise Conflict(
                    "ENTITY_EXISTS",
                    f"an entity with credit code {credit_code} exists",
                    "该统一社会信用代码已存在",
                )
            entity_id = new_id()
            row = dict(
                id=entity_id,
                name=name,
                name_en=name_en,
                kind=kind,
                credit_code=credit_code,
                sector=sector,
                region=region,
                created_at=iso(uow.now),
            )
            uow.conn.execute(sa.insert(entities).values(**row))
            journal.append(
                uow, "entity.created", actor.username, {"entity_id": entity_id, "kind": kind}
            )
            uow.commit()
            return row

    def create_user(
        self,
        username: str,
        password: str,
        role: str,
        entity_id: str | None = None,
        display_name: str = "",
        actor: Actor = SYSTEM,
    ) -> dict[str, Any]:
        if not _USERNAME.fullmatch(username or ""):
            raise InvalidInput(
                "USERNAME_INVALID", "username: 3–64 of a-z 0-9 _ . -", "用户名格式错误"
            )
        if len(password or "") < 8:
            raise InvalidInput(
                "PASSWORD_TOO_SHORT", "password must have at least 8 characters", "密码至少8位"
            )
        try:
            role_ = Role(role)
        except ValueError:
            raise InvalidInput(
                "ROLE_UNKNOWN", f"unknown role {role!r}", f"未知角色 {role!r}"
            ) from None
        with self.db.uow() as uow:
            if uow.conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
                raise Conflict("USER_EXISTS", f"user {username} exists", f"用户 {username} 已存在")
            if (
                entity_id is not None
                and not uow.conn.execute(
                    sa.select(entities.c.id).where(entities.c.id == entity_id)
                ).first()
            ):
                raise NotFound("ENTITY_NOT_FOUND", f"no entity {entity_id}", "主体不存在")
            user_id = new_id()
            uow.conn.execute(
                sa.insert(users).values(
                    id=user_id,
                    username=username,
                    display_name=display_name,
                    password_hash=_hasher.hash(password),
                    role=role_.value,
                    entity_id=entity_id,
                    created_at=iso(uow.now),
                )
            )
            journal.append(
                uow,
                "user.created",
                actor.username,
                {"user_id": user_id, "role": role_.value, "entity_id": entity_id},
            )
            uow.commit()
        return {"id": user_id, "username": username, "role": role_.value, "entity_id": entity_id}

    def authenticate(self, username: str, password: str) -> Actor:
        """Check a password; journals the login or the failure either way."""
        with self.db.uow() as uow:
            row = uow.conn.execute(sa.select(users).where(users.c.username == username)).first()
            ok = False
            if row is not None and row.active:
                try:
                    ok = _hasher.verify(row.password_hash, password)
                except VerificationError:
                    ok = False
            journal.append(
                uow,
                "auth.login" if ok else "auth.login_failed",
                username if ok else "anonymous",
                {"user_id": row.id if row is not None else None},
            )
            uow.commit()
        if not ok or row is None:
            raise Unauthorized("LOGIN_FAILED", "wrong username or password", "用户名或密码错误")
        return Actor(row.id, row.username, Role(row.role), row.entity_id)

    def impersonate(self, by: Actor, username: str) -> Actor:
        """Another user, for an operator on a simulation market only: a scripted cycle acts for
        each party as that party. Every use is journaled under the operator."""
        if not self.db.settings.simulation:
            raise Forbidden(
                "SIMULATION_ONLY",
                "acting as another user is possible on a simulation market only "
                "(CARBONHUB_SIMULATION=1)",
                "仅模拟市场可代他人操作",
            )
        require_role(by, Role.OPERATOR)
        with self.db.uow() as uow:
            row = uow.conn.execute(sa.select(users).where(users.c.username == username)).first()
            if row is None or not row.active:
                raise NotFound("USER_NOT_FOUND", f"no active user {username}", "用户不存在")
            journal.append(
                uow, "auth.impersonated", by.username, {"user_id": row.id, "username": username}
            )
            uow.commit()
        return Actor(row.id, row.username, Role(row.role), row.entity_id)

    def issue_token(self, actor: Actor) -> dict[str, Any]:
        token = "chk_" + secrets.token_urlsafe(32)
        with self.db.uow() as uow:
            expires = uow.now + timedelta(minutes=self.db.settings.token_ttl_minutes)
            token_id = new_id()
            uow.conn.execute(
                sa.insert(api_tokens).values(
                    id=token_id,
                    user_id=actor.user_id,
                    token_hash=_token_digest(token),
                    created_at=iso(uow.now),
                    expires_at=iso(expires),
                )
            )
            journal.append(uow, "auth.token_issued", actor.username, {"token_id": token_id})
            uow.commit()
        return {
            "token": token,
            "token_id": token_id,
            "expires_at": iso(expires),
            "role": actor.role.value,
        }

    def login(self, username: str, password: str) -> dict[str, Any]:
        return self.issue_token(self.authenticate(username, password))

    def cached_actor(self, token: str) -> Actor | None:
        """The token's actor if it is remembered (no I/O: the API's event loop calls this)."""
        return self._remembered(_token_digest(token))

    def _remembered(self, digest: str) -> Actor | None:
        cached = self._tokens.get(digest)
        if cached is None or time.monotonic() >= cached[2]:
            return None
        actor, expires_at, _ = cached
        if expires_at <= iso(self.db.clock()):
            raise Unauthorized("TOKEN_EXPIRED", "the bearer token has expired", "令牌已过期")
        return actor

    def actor_for_token(self, token: str) -> Actor:
        """The token's actor. A valid token is remembered for TOKEN_CACHE_S seconds (its expiry
        is still checked on every call); revoking it in this process forgets it at once."""
        digest = _token_digest(token)
        actor = self._remembered(digest)
        if actor is not None:
            return actor
        with self.db.read() as uow:
            row = uow.conn.execute(
                sa.select(
                    api_tokens, users.c.username, users.c.role, users.c.entity_id, users.c.active
                )
                .join(users, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.token_hash == digest)
            ).first()
            now = iso(uow.now)
        if row is None or not row.active:
            raise Unauthorized("TOKEN_INVALID", "the bearer token is not valid", "令牌无效")
        if row.revoked_at is not None:
            raise Unauthorized("TOKEN_REVOKED", "the bearer token was revoked", "令牌已撤销")
        if row.expires_at <= now:
            raise Unauthorized("TOKEN_EXPIRED", "the bearer token has expired", "令牌已过期")
        actor = Actor(row.user_id, row.username, Role(row.role), row.entity_id)
        if len(self._tokens) >= _TOKEN_CACHE_MAX:
            self._tokens.clear()
        self._tokens[digest] = (actor, row.expires_at, time.monotonic() + TOKEN_CACHE_S)
        return actor

    def token_id(self, token: str) -> str:
        with self.db.read() as uow:
            found = uow.conn.execute(
                sa.select(api_tokens.c.id).where(api_tokens.c.token_hash == _token_digest(token))
            ).scalar()
        if found is None:
            raise Unauthorized("TOKEN_INVALID", "the bearer token is not valid", "令牌无效")
        return str(found)

    def revoke_token(self, actor: Actor, token_id: str) -> dict[str, Any]:
        with self.db.uow() as uow:
            row = uow.conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
            if row is None:
                raise NotFound("TOKEN_NOT_FOUND", "no such token", "令牌不存在")
            if row.user_id != actor.user_id and not actor.is_operator:
                raise Forbidden(
                    "TOKEN_NOT_YOURS", "you may revoke only your own tokens", "只能撤销自己的令牌"
                )
            self._tokens.pop(row.token_hash, None)
            if row.revoked_at is None:
                uow.conn.execute(
                    sa.update(api_tokens)
                    .where(api_tokens.c.id == token_id)
                    .values(revoked_at=iso(uow.now))
                )
                journal.append(uow, "auth.token_revoked", actor.username, {"token_id": token_id})
            uow.commit()
        return {"token_id": token_id, "revoked": True}

    def record_denied(self, actor: Actor, action: str, code: str) -> None:
        """Every denied action is journaled (DESIGN §12), in its own transaction."""
        with self.db.uow() as uow:
            journal.append(uow, "auth.denied", actor.username, {"action": action, "code": code})
            uow.commit()

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        with self.db.read() as uow:
            row = uow.conn.execute(sa.select(entities).where(entities.c.id == entity_id)).first()
        return dict(row._mapping) if row else None

    def list_entities(self) -> list[dict[str, Any]]:
        with self.db.read() as uow:
            rows = uow.conn.execute(sa.select(entities).order_by(entities.c.name)).all()
        return [dict(r._mapping) for r in rows]

    def user_count(self) -> int:
        with self.db.read() as uow:
            return int(uow.conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())


def require_role(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(
            "ROLE_NOT_ALLOWED",
            f"role {actor.role.value} may not do this",
            f"角色 {actor.role.value} 无此权限",
        )


__all__ = ["PUBLIC", "SYSTEM", "Actor", "AuthService", "Role", "UnitOfWork", "require_role"]
