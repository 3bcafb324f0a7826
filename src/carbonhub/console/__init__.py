"""The web console: NiceGUI pages on the same FastAPI app as the REST API.

`mount(app, db)` registers the shell (login, layout, i18n) and each context's pages, then hands
the app to NiceGUI. The console answers every path outside /api that the app itself does not;
its catch-all mount is kept last in the route table, so `/api/v1` routes added before or after
`mount` win, and unknown /api paths get the API's own 404/405, never the console's page.

The exchange and settlement pages call the services `create_app` put on `app.state` (see
`exchange_pages.Market.of`), so the console and the API share one set of order books in memory
and one order writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import fastapi
from nicegui import ui
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from carbonhub.compliance.service import ComplianceService
from carbonhub.console.compliance_pages import register_compliance
from carbonhub.console.exchange_pages import Market, register_exchange
from carbonhub.console.i18n import register as register_texts
from carbonhub.console.i18n import t
from carbonhub.console.operator_pages import register_operator
from carbonhub.console.registry_pages import register_registry
from carbonhub.console.settlement_pages import register_settlement
from carbonhub.console.shell import Services, add_nav, register_shell
from carbonhub.core.db import Database

__all__ = ["add_nav", "mount", "register_texts", "t"]

_mounted = False


def mount(app: fastapi.FastAPI, db: Database) -> None:
    """Register the console pages on `app`. NiceGUI keeps one global page registry per process,
    so this may run once."""
    global _mounted
    if _mounted:
        raise RuntimeError("the console is mounted once per process")
    _mounted = True
    services = Services.build(db)
    market = Market.of(app, services)
    register_shell(services)
    register_registry(services)
    register_operator(services)
    register_exchange(services, market)
    register_settlement(services, market)
    compliance = getattr(app.state, "compliance", None) or ComplianceService(
        db, services.registry, market.exchange
    )
    register_compliance(services, compliance)
    ui.run_with(
        app,
        storage_secret=db.settings.console_secret,
        title="carbonhub",
        language="zh-CN",
        favicon="🌿",
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
    _keep_console_last(app)


API_PREFIX = "/api"


class _ConsoleMount(Mount):
    """NiceGUI's mount at "/", except that it never answers under /api: an unknown API path or
    method falls through to the app's own 404 or 405 instead of the console's HTML 404 page."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = str(scope.get("path", ""))
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def _keep_console_last(app: fastapi.FastAPI) -> None:
    """NiceGUI mounts itself at "/", which matches every path, so routes the API adds after this
    call would never be reached. Swap that mount for one that leaves /api alone and, at startup,
    move it behind every other route."""
    routes: list[BaseRoute] = app.router.routes
    console: list[BaseRoute] = []
    for i, route in enumerate(routes):
        if isinstance(route, Mount) and route.path == "":
            routes[i] = _ConsoleMount("", app=route.app, name=route.name)
            console.append(routes[i])
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        routes[:] = [r for r in routes if r not in console] + console
        async with inner(app_) as state:
            yield state

    app.router.lifespan_context = lifespan
