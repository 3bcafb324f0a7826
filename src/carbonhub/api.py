"""FastAPI assembly: every context's router, problem+json errors, the console, background duties."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from carbonhub import __version__
from carbonhub.compliance.api import router as compliance_router
from carbonhub.compliance.service import ComplianceService
from carbonhub.core.api import (
    LeanRoutes,
    RejectControlCharacters,
    domain_error_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from carbonhub.core.api import router as core_router
from carbonhub.core.auth import AuthService
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError
from carbonhub.duties import run_duties
from carbonhub.exchange.api import router as exchange_router
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.api import router as registry_router
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.api import router as settlement_router
from carbonhub.settlement.service import CashService, SettlementService

log = logging.getLogger("carbonhub")


def run_server(app: FastAPI, host: str, port: int, **options: Any) -> None:
    """uvicorn.run, once what set-up made is out of the collector's way: modules, routes and
    models live as long as the process, and a full collection walking them all stopped the
    event loop for tens of milliseconds (gc.freeze; what dies later is still freed)."""
    import uvicorn

    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, **options)


def create_app(
    db: Database | None = None, *, console: bool = True, duties_every_s: float | None = None
) -> FastAPI:
    db = db or Database()
    registry = RegistryService(db)
    cash = CashService(db)
    exchange = ExchangeService(db, registry, cash)
    interval = (
        duties_every_s
        if duties_every_s is not None
        else float(os.environ.get("CARBONHUB_DUTIES_EVERY_S", "30"))
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.to_thread(run_duties, exchange)
                except Exception:  # keep serving; the next pass retries
                    log.exception("background duties failed")

        task = asyncio.create_task(loop()) if interval > 0 else None
        exchange.start_writer()
        yield
        exchange.stop_writer()
        if task:
            task.cancel()

    app = FastAPI(
        # no OpenTelemetry here: FastAPI would otherwise ask it about every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="carbonhub",
        version=__version__,
        lifespan=lifespan,
        description="Open carbon-market platform. Errors are RFC 9457 problem+json; every mutating "
        "call takes an Idempotency-Key header.",
    )
    app.state.db = db
    app.state.auth = AuthService(db)
    app.state.registry = registry
    app.state.cash = cash
    app.state.exchange = exchange
    app.state.settlement = SettlementService(db, registry, cash, exchange)
    app.state.compliance = ComplianceService(db, registry, exchange)
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(LeanRoutes, routers=[exchange_router], handlers=app.exception_handlers)
    app.add_middleware(RejectControlCharacters)  # added last: runs first
    # the exchange first: a request is matched against the routes in order, and order entry
    # is the busiest path (the prefixes do not overlap, so the order changes nothing else)
    app.include_router(exchange_router)
    app.include_router(core_router)
    app.include_router(registry_router)
    app.include_router(settlement_router)
    app.include_router(compliance_router)

    @app.get("/api/v1/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "backend": db.backend, "version": __version__}

    if console:
        from carbonhub.console import mount

        mount(app, db)
    return app
