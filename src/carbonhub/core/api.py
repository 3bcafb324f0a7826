"""HTTP plumbing shared by every context: problem+json, the caller's identity, idempotency keys,
cursor pages; plus the auth and journal endpoints."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from carbonhub.core import journal
from carbonhub.core.auth import PUBLIC, Actor, AuthService, Role
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError, Forbidden, InvalidInput, NotFound, Unauthorized
from carbonhub.core.timefmt import shanghai_day

PROBLEM = "application/problem+json"
MAX_INT64 = 2**63 - 1


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, not silently dropped; no control characters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("control characters are not allowed")
        return value


class RejectControlCharacters:
    """Path and query strings with NUL or other control characters never reach the database.

    Plain ASGI, not `app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every
    request through an extra task and stream, a fixed cost on each order sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # what Request(scope).url gives as path and query, without building the whole URL
            url = scope.get("root_path", "") + scope["path"] + "?"
            if _CONTROL.search(unquote(url + scope["query_string"].decode("latin-1"))):
                response = problem(
                    422,
                    "REQUEST_INVALID",
                    "Request invalid",
                    "control characters in the URL",
                    "URL 中含有控制字符",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def problem(
    status: int, code: str, title: str, detail: str, detail_zh: str = "", **extra: Any
) -> JSONResponse:
    body = {
        "type": f"urn:carbonhub:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "detail_zh": detail_zh or detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Forbidden | Unauthorized) and exc.code not in (
        "TOKEN_MISSING",
        "LOGIN_FAILED",
    ):
        actor = getattr(request.state, "actor", None) or PUBLIC
        request.app.state.auth.record_denied(
            actor, f"{request.method} {request.url.path}", exc.code
        )
    title = exc.code.replace("_", " ").capitalize()
    ctx = {k: v for k, v in exc.context.items() if isinstance(v, str | int)}
    return problem(exc.status, exc.code, title, exc.message, exc.message_zh, **ctx)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """404/405 and friends: problem+json under /api, the framework's default elsewhere."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith("/api/"):
        return await http_exception_handler(request, exc)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    response = problem(
        exc.status_code, code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}"
    )
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first route's methods; list them all
        allowed = sorted(
            method
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(
                route.matches({**request.scope, "method": method})[0] is Match.FULL
                for route in request.app.routes
            )
        )
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
    return problem(
        422, "REQUEST_INVALID", "Request invalid", detail, f"请求无效: {detail}", errors=errors
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        500,
        "INTERNAL",
        "Internal error",
        "an unexpected error occurred; nothing was changed",
        "系统错误，未做任何更改",
    )


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _actor(request: Request, authorization: str | None) -> Actor:
    """Async, like the other dependencies here: FastAPI runs a plain `def` dependency on its
    thread pool, a hop per dependency per request. Only a token not yet remembered costs a
    database read, and that goes to the thread pool."""
    if not authorization:
        return PUBLIC
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "TOKEN_INVALID", "use Authorization: Bearer <token>", "请使用 Bearer 令牌"
        )
    auth: AuthService = request.app.state.auth
    actor = auth.cached_actor(token)
    if actor is None:
        actor = await run_in_threadpool(auth.actor_for_token, token)
    request.state.actor = actor
    return actor


async def optional_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    return await _actor(request, authorization)


async def current_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    actor = await _actor(request, authorization)
    if actor is PUBLIC:
        raise Unauthorized("TOKEN_MISSING", "this endpoint needs a bearer token", "需要登录令牌")
    return actor


async def idempotency_key(
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    if not idempotency_key:
        raise InvalidInput(
            "IDEMPOTENCY_KEY_REQUIRED",
            "every mutating call needs an Idempotency-Key header",
            "每个写操作都需要 Idempotency-Key",
        )
    return idempotency_key


# ---------------------------------------------------------------- lean endpoints
# The order endpoints take the bare Request and do by hand what FastAPI's dependency solving and
# response serialisation would: at a thousand orders a second those cost a third of the web
# process's time. The checks are the same functions, and the OpenAPI document says the same.

M = TypeVar("M", bound=BaseModel)

_HEADER = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_LEAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Validation Error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
}


def _lean_openapi(body: type[BaseModel] | None) -> dict[str, Any]:
    """What FastAPI would document for `body`, ActorDep and KeyDep (`openapi_extra`)."""
    extra: dict[str, Any] = {
        "parameters": [
            {"name": "authorization", "in": "header", "required": False, "schema": _HEADER},
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": _HEADER},
        ]
    }
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
    return extra


LeanEndpoint = Callable[..., Awaitable[Response]]
E = TypeVar("E", bound=LeanEndpoint)


def lean_post(
    router: APIRouter, path: str, body: type[BaseModel] | None = None, **options: Any
) -> Callable[[E], E]:
    """`router.post` for an endpoint that takes only the Request and its path parameters:
    documented as FastAPI would document `body`, ActorDep and KeyDep, served by `LeanRoutes`."""

    def register(endpoint: E) -> E:
        endpoint.lean = True  # type: ignore[attr-defined]
        openapi = _lean_openapi(body)
        router.post(path, openapi_extra=openapi, responses=_LEAN_RESPONSES, **options)(endpoint)
        return endpoint

    return register


class LeanRoutes:
    """Requests for the lean endpoints go from here straight to them, past Starlette's exception
    middleware, FastAPI's exit stack, its router and its request handler: at a thousand orders a
    second those cost about a third of the web process's time. The routes stay in the app, for
    the OpenAPI document and for every request this does not match, and an endpoint's error
    goes to the app's handler for it, as from the router."""

    def __init__(
        self, app: ASGIApp, routers: Sequence[APIRouter], handlers: Mapping[Any, Any]
    ) -> None:
        self.app = app
        self._handlers = handlers
        self._routes = [
            (route.path_regex, route.param_convertors, route.methods, route.endpoint)
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and getattr(route.endpoint, "lean", False)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            for regex, convertors, methods, endpoint in self._routes:
                match = regex.match(path)
                if match and scope["method"] in methods:  # type: ignore[operator]
                    params = {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
                    scope["path_params"] = params
                    request = Request(scope, receive)
                    try:
                        response = await endpoint(request=request, **params)
                    except Exception as exc:
                        handler = self._handler(exc)
                        if handler is None:
                            raise  # to ServerErrorMiddleware, as from the router
                        response = await handler(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Awaitable[Response]] | None:
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self._handlers:
                handler: Callable[..., Awaitable[Response]] = self._handlers[cls]
                return handler
        return None


async def caller_and_key(request: Request) -> tuple[Actor, str]:
    """ActorDep and KeyDep for a lean endpoint."""
    headers = request.headers
    actor = await current_actor(request, headers.get("authorization"))
    return actor, await idempotency_key(headers.get("idempotency-key"))


async def lean_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`; invalid input is the same 422 as FastAPI's."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None


Limit = Annotated[int, Query(ge=1, le=500)]  # a page of a list
ActorDep = Annotated[Actor, Depends(current_actor)]
OptionalActorDep = Annotated[Actor, Depends(optional_actor)]
KeyDep = Annotated[str, Depends(idempotency_key)]
DbDep = Annotated[Database, Depends(get_db)]


def page(items: list[dict[str, Any]], limit: int, cursor_field: str = "id") -> dict[str, Any]:
    full = len(items) >= limit
    return {"items": items, "next_cursor": items[-1][cursor_field] if full and items else None}


class LoginBody(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


router = APIRouter(prefix="/api/v1")


@router.post("/auth/token", tags=["auth"], summary="Log in: username and password → bearer token")
def login(body: LoginBody, request: Request) -> dict[str, Any]:
    auth: AuthService = request.app.state.auth
    return auth.login(body.username, body.password)


@router.get("/auth/me", tags=["auth"])
def me(actor: ActorDep) -> dict[str, Any]:
    return {
        "user_id": actor.user_id,
        "username": actor.username,
        "role": actor.role.value,
        "entity_id": actor.entity_id,
    }


@router.post("/auth/tokens/{token_id}/revoke", tags=["auth"])
def revoke(token_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    auth: AuthService = request.app.state.auth
    return auth.revoke_token(actor, token_id)


@router.get(
    "/journal/entries", tags=["journal"], summary="Journal entries, newest first (operator)"
)
def journal_entries(
    actor: ActorDep,
    db: DbDep,
    before: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    if actor.role is not Role.OPERATOR:
        raise Forbidden(
            "ROLE_NOT_ALLOWED", "only operators read the journal", "仅登记机构可查看日志"
        )
    limit = min(max(limit, 1), db.settings.max_page_size)
    with db.read() as uow:
        rows = journal.recent(uow.conn, limit, before)
    items = [e.__dict__ for e in rows]
    return {"items": items, "next_cursor": items[-1]["seq"] if len(items) == limit else None}


@router.get(
    "/journal/entries/{seq}/receipt",
    tags=["journal"],
    summary="An entry with its Merkle inclusion proof against its day's checkpoint",
)
def journal_receipt(
    seq: Annotated[int, Path(ge=1, le=MAX_INT64)], actor: ActorDep, db: DbDep
) -> dict[str, Any]:
    with db.read() as uow:
        r = journal.receipt(uow.conn, seq)
    if r is None:
        raise NotFound("ENTRY_NOT_FOUND", f"no journal entry {seq}", "日志条目不存在")
    if actor.role is not Role.OPERATOR and r["entry"]["actor"] != actor.username:
        raise Forbidden(
            "NOT_YOUR_ENTRY",
            "receipts are for the entry's actor or an operator",
            "只能获取本人业务的回执",
        )
    return r


@router.get(
    "/journal/checkpoints", tags=["journal"], summary="Published daily Merkle roots (public)"
)
def journal_checkpoints(db: DbDep) -> list[dict[str, Any]]:
    with db.read() as uow:
        rows = uow.conn.execute(
            journal.checkpoints.select().order_by(journal.checkpoints.c.day)
        ).all()
    return [dict(r._mapping) for r in rows]


@router.post("/journal/checkpoints", tags=["journal"], summary="Close finished days (operator)")
def close_checkpoints(actor: ActorDep, db: DbDep) -> dict[str, Any]:
    if actor.role is not Role.OPERATOR:
        raise Forbidden(
            "ROLE_NOT_ALLOWED", "only operators close checkpoints", "仅登记机构可生成检查点"
        )
    with db.uow() as uow:
        days = journal.close_days(uow, shanghai_day(uow.now))
        uow.commit()
    return {"closed": days}
