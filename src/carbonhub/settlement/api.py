"""Settlement REST endpoints: cash accounts, the settlement run, reports and statements."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field

from carbonhub.core.api import ActorDep, KeyDep, Limit, Strict
from carbonhub.core.timefmt import parse_day
from carbonhub.settlement.service import CashService, SettlementService

router = APIRouter(prefix="/api/v1/settlement", tags=["settlement"])

DayPath = Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-23"])]


def cash(request: Request) -> CashService:
    service: CashService = request.app.state.cash
    return service


def settlement(request: Request) -> SettlementService:
    service: SettlementService = request.app.state.settlement
    return service


class CashAccountBody(Strict):
    entity_id: str = Field(max_length=36)
    bank_entity_id: str | None = Field(default=None, max_length=36)


class AmountBody(Strict):
    amount: str = Field(description="yuan, like '10000.00'", max_length=20)


@router.post("/cash-accounts", status_code=201, summary="Open a cash account (bank)")
def open_account(
    body: CashAccountBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return cash(request).open_account(
        actor, key, entity_id=body.entity_id, bank_entity_id=body.bank_entity_id
    )


@router.get("/cash-accounts", summary="Cash accounts I may see")
def accounts(
    actor: ActorDep, request: Request, after: str | None = None, limit: Limit = 100
) -> list[dict[str, Any]]:
    return cash(request).accounts(actor, limit=limit, cursor=after)


@router.get("/cash-accounts/mine", summary="My entity's cash account")
def my_account(actor: ActorDep, request: Request) -> dict[str, Any]:
    return cash(request).account_of(actor, actor.entity_id or "")


@router.get("/cash-accounts/{account_id}", summary="One cash account")
def account(account_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return cash(request).account(actor, account_id)


@router.get("/cash-accounts/{account_id}/entries", summary="Ledger entries, newest first")
def entries(
    account_id: str,
    actor: ActorDep,
    request: Request,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return cash(request).entries(actor, account_id, limit=limit, before=before)


@router.post("/cash-accounts/{account_id}/fund", summary="Credit money received (bank)")
def fund(
    account_id: str, body: AmountBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return cash(request).fund(actor, key, account_id=account_id, amount=body.amount)


@router.post("/cash-accounts/{account_id}/defund", summary="Pay out available money (bank)")
def defund(
    account_id: str, body: AmountBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return cash(request).defund(actor, key, account_id=account_id, amount=body.amount)


@router.post("/days/{day}/settle", summary="Close the day and settle its trades DvP (operator)")
def settle(day: DayPath, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    del key  # settling is idempotent by trade: a second run changes nothing
    return settlement(request).settle_day(actor, parse_day(day))


@router.get("/days/{day}/report", summary="The daily clearing report by mode (public)")
def report(day: DayPath, request: Request) -> dict[str, Any]:
    return settlement(request).report(parse_day(day))


@router.get("/days/{day}/statement", summary="My settlement statement for a day")
def statement(
    day: DayPath, actor: ActorDep, request: Request, entity_id: str | None = None
) -> dict[str, Any]:
    return settlement(request).statement(actor, entity_id or actor.entity_id or "", parse_day(day))


@router.get("/days/{day}/failures", summary="Trades that failed to settle (operator)")
def failures(day: DayPath, actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return settlement(request).failures(actor, parse_day(day))
