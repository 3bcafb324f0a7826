"""Exactly-once commands: (actor, key) → hash of the input and the first result.

A retry with the same key and input returns the stored result; the same key with other input is
a 409. The record is written in the command's own transaction, so a rolled-back command leaves no
key behind and may be retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from carbonhub.core import journal
from carbonhub.core.db import Database, UnitOfWork, first, insert_many, metadata
from carbonhub.core.errors import Conflict, InvalidInput
from carbonhub.core.timefmt import iso

idempotency = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("actor", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("command", sa.String(64), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

# a batch's keys: actor IN … AND key IN … searches the primary key (actor, key); SQLite scans
# the whole table for a row-value IN
KEYS_OF_ACTORS = sa.select(idempotency).where(
    idempotency.c.actor.in_(sa.bindparam("actors", expanding=True)),
    idempotency.c.key.in_(sa.bindparam("keys", expanding=True)),
)
_PRIOR = sa.select(idempotency).where(
    idempotency.c.actor == sa.bindparam("actor"), idempotency.c.key == sa.bindparam("key")
)
_KEY = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
T = TypeVar("T")


def request_hash(command: str, data: Any) -> str:
    body = json.dumps({"command": command, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInput(
            "IDEMPOTENCY_KEY_INVALID",
            "Idempotency-Key must be 8–128 characters of letters, digits and ._:-",
            "幂等键须为 8–128 位字母、数字或 ._:-",
        )
    return key


def key_reused() -> Conflict:
    return Conflict(
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was used before with different input",
        "该幂等键已用于不同的请求",
    )


_PLAIN = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _as_json_dumps_would(value: Any) -> Any:
    # tuples (named ones too) are lists to json.dumps; anything else it cannot write, str()
    return list(value) if isinstance(value, tuple) else str(value)


def _json_text(value: Any) -> str:
    """JSON as `json.dumps(value, sort_keys=True, default=str)` reads back, in a sixth of its
    time (every order stores its answer here: 2.0 µs against 11.6)."""
    return orjson.dumps(value, option=_PLAIN, default=_as_json_dumps_would).decode()


def key_row(
    actor: str, key: str, command: str, digest: str, result: Any, now: str
) -> dict[str, Any]:
    """The stored answer to (actor, key): a retry gets `result` back."""
    return {
        "actor": actor,
        "key": key,
        "command": command,
        "request_hash": digest,
        "result": _json_text(result),
        "created_at": now,
    }


def run(
    db: Database,
    actor: str,
    key: str,
    command: str,
    data: Any,
    body: Callable[[UnitOfWork], dict[str, Any]],
) -> dict[str, Any]:
    """Run `body` once per (actor, key); `body` must not commit — this does, with the key."""
    check_key(key)
    digest = request_hash(command, data)
    for _attempt in range(3):
        with db.uow() as uow:
            prior = first(uow.conn, _PRIOR, actor=actor, key=key)
            if prior is not None:
                if prior.request_hash != digest or prior.command != command:
                    raise key_reused()
                stored: dict[str, Any] = json.loads(prior.result)
                return stored
            journal.lock_head(uow)
            result = body(uow)
            # on the driver's cursor (`insert_many`): its own IntegrityError, not SQLAlchemy's
            duplicate = (IntegrityError, uow.conn.dialect.loaded_dbapi.IntegrityError)
            try:
                row = key_row(actor, key, command, digest, result, iso(uow.now))
                insert_many(uow.conn, idempotency, [row])
                uow.commit()
            except duplicate:
                continue  # a concurrent retry won the key: read its result on the next pass
            return result
    raise Conflict("IDEMPOTENCY_RACE", "concurrent requests with one key", "同一幂等键的并发请求")
