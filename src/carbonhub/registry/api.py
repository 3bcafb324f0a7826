"""Registry REST endpoints: translate HTTP to RegistryService calls, nothing more."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from carbonhub.core.api import ActorDep, KeyDep, OptionalActorDep, Strict, page
from carbonhub.core.auth import Role, require_role
from carbonhub.duties import run_duties
from carbonhub.registry.service import RegistryService

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])

Quantity = Field(description="whole tonnes CO2e, > 0")


def svc(request: Request) -> RegistryService:
    registry: RegistryService = request.app.state.registry
    return registry


class AccountRequest(Strict):
    type: Literal["HOLDING", "TRADING", "CUSTODY"]
    name: str = Field(min_length=1, max_length=200)
    entity_id: str | None = Field(default=None, description="operators may open for another entity")


class StatusChange(Strict):
    status: Literal["OPEN", "RESTRICTED", "SUSPENDED", "CLOSURE_PENDING", "CLOSED"]
    reason: str = Field(min_length=1, max_length=500)


class Issuance(Strict):
    unit_class: str = Field(examples=["CEA-2023"])
    quantity: int = Quantity
    origin: str = Field(default="420000", description="province code (CEA) or project/method code")
    reason: str = Field(default="", max_length=500)


class Allocation(Strict):
    to_account: str
    unit_class: str
    quantity: int = Quantity
    reason: str = Field(default="", max_length=500)


class BulkRow(Strict):
    to_account: str
    unit_class: str
    quantity: int = Quantity


class BulkAllocation(Strict):
    rows: list[BulkRow] = Field(min_length=1, max_length=100_000)


class Transfer(Strict):
    from_account: str
    to_account: str
    unit_class: str
    quantity: int = Quantity
    reason: str = Field(default="", max_length=500)


class Surrender(Strict):
    from_account: str
    unit_class: str
    quantity: int = Quantity
    compliance_year: int


class Cancellation(Strict):
    from_account: str
    unit_class: str
    quantity: int = Quantity
    beneficiary: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=500)


class CourtTransfer(Strict):
    from_account: str
    to_account: str
    unit_class: str
    quantity: int = Quantity
    legal_basis: str = Field(min_length=1, max_length=200)
    hold_id: str | None = None


class Reason(Strict):
    reason: str = Field(min_length=1, max_length=500)


class OptionalReason(Strict):
    reason: str = Field(default="", max_length=500)


class Hold(Strict):
    account_id: str
    unit_class: str
    quantity: int = Quantity
    kind: Literal["PLEDGE", "JUDICIAL_FREEZE", "EXCHANGE_RESERVATION"]
    lien_holder: str | None = Field(default=None, description="entity id of the pledgee")
    legal_basis: str = Field(default="", max_length=200)
    reason: str = Field(default="", max_length=500)
    expires_at: str | None = Field(default=None, description="UTC, 2026-12-31T00:00:00.000000Z")


class Trusted(Strict):
    account_id: str
    trusted: bool = True


class SerialFlag(Strict):
    serial: str
    reason: str = Field(min_length=1, max_length=500)
    tainted: bool = True


class Suspension(Strict):
    suspended: bool
    reason: str = Field(min_length=1, max_length=500)


@router.get("/totals", summary="Registry totals per unit class (public)")
def totals(request: Request) -> list[dict[str, Any]]:
    return svc(request).totals()


@router.get("/market", summary="Market-wide suspension switch (public)")
def market(request: Request) -> dict[str, Any]:
    return {"market_suspended": svc(request).market_suspended()}


@router.post("/market/suspension", summary="Suspend or resume the market (operator)")
def suspend(body: Suspension, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).set_market_suspended(
        actor, key, suspended=body.suspended, reason=body.reason
    )


@router.get("/accounts")
def list_accounts(
    actor: ActorDep,
    request: Request,
    after: str | None = None,
    limit: int = 50,
    status: str | None = None,
    type: str | None = None,
) -> dict[str, Any]:
    items = svc(request).list_accounts(actor, after=after, limit=limit, status=status, type=type)
    return page(items, min(max(limit, 1), 500))


@router.post("/accounts", status_code=201, summary="Request an account (approved by an operator)")
def request_account(
    body: AccountRequest, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).request_account(
        actor, key, type=body.type, name=body.name, entity_id=body.entity_id
    )


@router.get("/accounts/{account_id}")
def get_account(account_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).account(actor, account_id)


@router.post("/accounts/{account_id}/approve")
def approve_account(
    account_id: str, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).decide_account(actor, key, account_id, approve=True)


@router.post("/accounts/{account_id}/reject")
def reject_account(
    account_id: str, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).decide_account(actor, key, account_id, approve=False)


@router.post("/accounts/{account_id}/status")
def change_status(
    account_id: str, body: StatusChange, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).change_status(
        actor, key, account_id, status=body.status, reason=body.reason
    )


@router.get("/accounts/{account_id}/blocks", summary="Serial blocks held by the account")
def blocks(
    account_id: str, actor: ActorDep, request: Request, unit_class: str | None = None
) -> list[dict[str, Any]]:
    return svc(request).blocks(actor, account_id, unit_class)


@router.get("/accounts/{account_id}/trusted", summary="Trusted-counterparty list")
def trusted(account_id: str, actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return svc(request).trusted_list(actor, account_id)


@router.post("/accounts/{account_id}/trusted")
def set_trusted(
    account_id: str, body: Trusted, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).set_trusted(actor, key, account_id, body.account_id, trusted=body.trusted)


@router.get("/transfers", summary="Transfers, newest first; cursor = last id of the previous page")
def list_transfers(
    actor: ActorDep,
    request: Request,
    account_id: str | None = None,
    status: str | None = None,
    op: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    items = svc(request).transfers(
        actor, account_id=account_id, status=status, op=op, after=after, limit=limit
    )
    return page(items, min(max(limit, 1), 500))


@router.get("/transfers/{transfer_id}")
def get_transfer(transfer_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).transfer_detail(actor, transfer_id)


@router.post(
    "/issuances", status_code=201, summary="Propose an issuance (maker; another operator approves)"
)
def issue(body: Issuance, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).issue(
        actor,
        key,
        unit_class=body.unit_class,
        quantity=body.quantity,
        origin=body.origin,
        reason=body.reason,
    )


@router.post("/allocations", status_code=201, summary="Propose an allocation (maker–checker)")
def allocate(body: Allocation, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).allocate(
        actor,
        key,
        to_account=body.to_account,
        unit_class=body.unit_class,
        quantity=body.quantity,
        reason=body.reason,
    )


@router.post("/allocations/bulk", status_code=201, summary="Propose many allocations as one batch")
def allocate_bulk(
    body: BulkAllocation, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    rows = [(r.to_account, r.unit_class, r.quantity) for r in body.rows]
    return svc(request).allocate_bulk(actor, key, rows)


@router.post("/batches/{batch_ref}/approve", summary="Approve every pending transfer of a batch")
def approve_batch(batch_ref: str, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).approve_batch(actor, key, batch_ref)


@router.post("/transfers", status_code=201, summary="Transfer units between holding accounts")
def transfer(body: Transfer, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).transfer(
        actor,
        key,
        from_account=body.from_account,
        to_account=body.to_account,
        unit_class=body.unit_class,
        quantity=body.quantity,
        reason=body.reason,
    )


@router.post("/surrenders", status_code=201, summary="Surrender units for compliance (清缴)")
def surrender(body: Surrender, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).surrender(
        actor,
        key,
        from_account=body.from_account,
        unit_class=body.unit_class,
        quantity=body.quantity,
        compliance_year=body.compliance_year,
    )


@router.post("/cancellations", status_code=201, summary="Voluntary cancellation with a beneficiary")
def cancel(body: Cancellation, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).cancel(
        actor,
        key,
        from_account=body.from_account,
        unit_class=body.unit_class,
        quantity=body.quantity,
        beneficiary=body.beneficiary,
        reason=body.reason,
    )


@router.post(
    "/court-transfers", status_code=201, summary="Court-ordered transfer (司法扣划, maker–checker)"
)
def court_transfer(
    body: CourtTransfer, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).court_transfer(
        actor,
        key,
        from_account=body.from_account,
        to_account=body.to_account,
        unit_class=body.unit_class,
        quantity=body.quantity,
        legal_basis=body.legal_basis,
        hold_id=body.hold_id,
    )


@router.post("/transfers/{transfer_id}/approve", summary="Checker approves a pending proposal")
def approve(transfer_id: str, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).approve(actor, key, transfer_id)


@router.post(
    "/transfers/{transfer_id}/void", summary="Void a pending transfer; its units are released"
)
def void(
    transfer_id: str, body: Reason, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).void(actor, key, transfer_id, reason=body.reason)


@router.post(
    "/transfers/{transfer_id}/reverse",
    status_code=201,
    summary="Propose a reversal within its window",
)
def reverse(
    transfer_id: str, body: Reason, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).reverse(actor, key, transfer_id=transfer_id, reason=body.reason)


@router.get("/approvals", summary="The operators' approval queue")
def approvals(actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return svc(request).approval_queue(actor)


@router.get("/holds")
def list_holds(
    actor: ActorDep, request: Request, account_id: str | None = None, status: str | None = "ACTIVE"
) -> list[dict[str, Any]]:
    return svc(request).holds_list(actor, account_id=account_id, status=status)


@router.post("/holds", status_code=201, summary="Pledge, judicial freeze or exchange reservation")
def place_hold(body: Hold, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).place_hold(
        actor,
        key,
        account_id=body.account_id,
        unit_class=body.unit_class,
        quantity=body.quantity,
        kind=body.kind,
        lien_holder=body.lien_holder,
        legal_basis=body.legal_basis,
        reason=body.reason,
        expires_at=body.expires_at,
    )


@router.post("/holds/{hold_id}/release")
def release_hold(
    hold_id: str, body: OptionalReason, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).release_hold(actor, key, hold_id, reason=body.reason)


@router.post("/serial-flags", summary="Flag a serial range tainted (or clear the flag)")
def flag_serials(
    body: SerialFlag, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).flag_serials(
        actor, key, serial=body.serial, reason=body.reason, tainted=body.tainted
    )


@router.get("/serials/{serial}", summary="Where a serial is, and its full history")
def serial(serial: str, actor: OptionalActorDep, request: Request) -> dict[str, Any]:
    return svc(request).serial(actor, serial)


@router.post(
    "/run-due",
    summary="Run the time-driven duties now: delayed transfers, stale proposals and holds, "
    "ended auctions, past trading days, journal days (operator)",
)
def run_due(actor: ActorDep, request: Request) -> dict[str, Any]:
    require_role(actor, Role.OPERATOR)
    return run_duties(request.app.state.exchange)
