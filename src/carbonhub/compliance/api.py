"""Compliance REST endpoints: HTTP to ComplianceService, nothing more."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from carbonhub.compliance.service import ComplianceService
from carbonhub.core.api import ActorDep, KeyDep, Strict
from carbonhub.core.errors import InvalidInput

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])

YearPath = Annotated[int, Path(ge=2000, le=2100, examples=[2024])]
Id = Field(max_length=36)
Tonnes = Field(ge=0, le=10**10, description="whole tonnes CO2")
MAX_FILE_BYTES = 64 * 1024 * 1024
FILE_TYPES = {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "format": "binary"}
    },
}


def svc(request: Request) -> ComplianceService:
    compliance: ComplianceService = request.app.state.compliance
    return compliance


class FactorBody(Strict):
    table: str = Field(max_length=40, examples=["power_benchmark"])
    key: str = Field(max_length=40, examples=["II"])
    first: int = Field(ge=2000, le=2100)
    last: int | None = Field(default=None, ge=2000, le=2100)
    value: str = Field(max_length=32, description="exact decimal, like '0.8049'")
    unit: str = Field(max_length=32, examples=["tCO2/MWh"])
    source: str = Field(min_length=1, max_length=2000, description="the official text")
    certainty: Literal["verified", "secondary", "unverified"]


class CoverBody(Strict):
    entity_id: str = Id
    account_id: str = Field(max_length=20, description="the entity's registry holding account")
    sector: Literal["power", "steel", "cement", "aluminium"]
    region: str = Field(min_length=1, max_length=32, examples=["湖北"])
    since: int = Field(ge=2000, le=2100, description="the first covered year")


class FacilityBody(Strict):
    name: str = Field(min_length=1, max_length=200)


class UnitBody(Strict):
    code: str = Field(min_length=1, max_length=40, examples=["#1"])
    category: Literal["I", "II", "III", "IV"]
    capacity_mw: str = Field(max_length=20, examples=["660"])
    cooling: Literal["water", "air"]
    fuel: Literal["coal", "gas"]
    heat_supply: bool = False


class RecordBody(Strict):
    kind: str = Field(max_length=24, examples=["fuel"])
    month: int = Field(ge=1, le=12)
    item: str = Field(default="", max_length=40, examples=["bituminous"])
    unit_id: str = Field(default="", max_length=36, description="a generating unit, or empty")
    quantity: str = Field(max_length=32, description="exact decimal in the kind's unit")
    params: dict[str, str] = Field(default_factory=dict, max_length=8)


class RecordsBody(Strict):
    records: list[RecordBody] = Field(min_length=1, max_length=10_000)


class ImportBody(Strict):
    rows: list[dict[str, str | int | None]] = Field(
        min_length=1,
        max_length=1_000_000,
        description="entity, unit, month, kind, item, quantity and the kind's parameters",
    )


class AssignBody(Strict):
    verifier_entity_id: str = Id


class VerifyBody(Strict):
    verified_emissions: int = Tonnes
    findings: str = Field(min_length=1, max_length=5000)


class ReturnBody(Strict):
    reasons: str = Field(min_length=1, max_length=5000)


class AllocateBody(Strict):
    kind: Literal["PRE", "TRUE_UP"]


class ExcludeBody(Strict):
    entity_id: str = Id
    reason: str = Field(min_length=1, max_length=500)


class SurrenderBody(Strict):
    unit_class: str = Field(max_length=40, examples=["CEA-2024"])
    quantity: int = Field(ge=1, le=10**10)


class PenaltyBody(Strict):
    multiple: str = Field(default="5", max_length=8, description="5 to 10 under Decree 775")
    average_price: str | None = Field(
        default=None, max_length=16, description="yuan; default: the exchange's monthly average"
    )
    fine: str = Field(default="20000.00", max_length=16, description="yuan, under the 2021 rules")


# ---------------------------------------------------------------- rules


@router.get("/plan-years", summary="Every plan year's rules and deadline (public)")
def plan_years(request: Request) -> list[dict[str, Any]]:
    return svc(request).plan_years()


@router.get("/factors", summary="Factor and benchmark tables with sources (public)")
def factors(request: Request) -> list[dict[str, Any]]:
    return svc(request).factors()


@router.post("/factors", status_code=201, summary="Enter or correct a factor (operator)")
def enter_factor(body: FactorBody, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).enter_factor(
        actor,
        key,
        table=body.table,
        factor_key=body.key,
        first=body.first,
        last=body.last,
        value=body.value,
        unit=body.unit,
        source=body.source,
        certainty=body.certainty,
    )


# ---------------------------------------------------------------- entities and evidence


@router.post("/entities", status_code=201, summary="Cover an entity (operator)")
def cover(body: CoverBody, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).cover_entity(actor, key, **body.model_dump())


@router.get("/entities", summary="Covered entities (operator: all; enterprise: its own)")
def covered(actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return svc(request).covered_entities(actor)


@router.get("/entities/{entity_id}", summary="A covered entity, its facilities, units, reports")
def covered_entity(entity_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).covered_entity(actor, entity_id)


@router.post(
    "/entities/{entity_id}/facilities", status_code=201, summary="Add a facility (own, operator)"
)
def add_facility(
    entity_id: str, body: FacilityBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).add_facility(actor, key, entity_id=entity_id, name=body.name)


@router.post(
    "/facilities/{facility_id}/units", status_code=201, summary="Add a generating unit (own)"
)
def add_unit(
    facility_id: str, body: UnitBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).add_unit(actor, key, facility_id=facility_id, **body.model_dump())


@router.post(
    "/entities/{entity_id}/years/{year}/records",
    status_code=201,
    summary="Record monthly evidence, all lines or none (own, operator)",
)
def record_months(
    entity_id: str,
    year: YearPath,
    body: RecordsBody,
    actor: ActorDep,
    key: KeyDep,
    request: Request,
) -> Any:
    records = [r.model_dump() for r in body.records]
    return svc(request).record_months(actor, key, entity_id=entity_id, year_=year, records=records)


@router.get("/entities/{entity_id}/years/{year}/records", summary="Monthly evidence of a year")
def records(
    entity_id: str, year: YearPath, actor: ActorDep, request: Request
) -> list[dict[str, Any]]:
    return svc(request).evidence(actor, entity_id, year)


@router.post(
    "/years/{year}/evidence-import",
    summary="Import many entities' evidence as JSON rows: good rows kept, bad ones listed",
)
def import_rows(
    year: YearPath, body: ImportBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).import_evidence(actor, key, year_=year, rows=body.rows)


@router.post(
    "/years/{year}/evidence-file",
    summary="Import a CSV (UTF-8 or GBK) or .xlsx file of evidence; rejections name the line",
    openapi_extra={"requestBody": {"required": True, "content": FILE_TYPES}},
)
async def import_file(year: YearPath, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FILE_BYTES:
            raise InvalidInput(
                "IMPORT_TOO_LARGE",
                f"the file exceeds {MAX_FILE_BYTES // 2**20} MiB: split it",
                "文件过大, 请拆分",
            )
    return await run_in_threadpool(
        svc(request).import_evidence_file, actor, key, year_=year, data=bytes(data)
    )


# ---------------------------------------------------------------- reports and verification


@router.post(
    "/entities/{entity_id}/years/{year}/report",
    summary="Work out the year's emissions from the evidence and submit the report (own)",
)
def submit(entity_id: str, year: YearPath, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).submit_report(actor, key, entity_id=entity_id, year_=year)


@router.get("/reports", summary="A year's reports I may read, without their lines")
def reports(
    actor: ActorDep,
    request: Request,
    year: Annotated[int, Query(ge=2000, le=2100)],
    status: Literal["DRAFT", "SUBMITTED", "UNDER_VERIFICATION", "VERIFIED", "RETURNED", "CONFIRMED"]
    | None = None,
) -> list[dict[str, Any]]:
    return svc(request).reports(actor, year, status)


@router.get("/verification-queue", summary="Reports waiting for my verification body")
def queue(actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return svc(request).verifier_queue(actor)


@router.get("/reports/{report_id}", summary="A report with its lines and timeline")
def report(report_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).report(actor, report_id)


@router.post("/reports/{report_id}/assign", summary="Assign a verification body (operator)")
def assign(report_id: str, body: AssignBody, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).assign_verifier(
        actor, key, report_id=report_id, verifier_entity_id=body.verifier_entity_id
    )


@router.post("/reports/{report_id}/verify", summary="Sign off verified emissions (the verifier)")
def verify(report_id: str, body: VerifyBody, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).verify_report(
        actor,
        key,
        report_id=report_id,
        verified_emissions=body.verified_emissions,
        findings=body.findings,
    )


@router.post("/reports/{report_id}/return", summary="Return with reasons (verifier, operator)")
def return_(
    report_id: str, body: ReturnBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).return_report(actor, key, report_id=report_id, reasons=body.reasons)


@router.post("/reports/{report_id}/confirm", summary="Confirm the verified report (operator)")
def confirm(report_id: str, actor: ActorDep, key: KeyDep, request: Request) -> Any:
    return svc(request).confirm_report(actor, key, report_id=report_id)


class AssignLotBody(Strict):
    verifier_entity_id: str = Id
    report_ids: list[str] | None = Field(
        default=None, max_length=10_000, description="default: every submitted report"
    )


class ConfirmLotBody(Strict):
    report_ids: list[str] | None = Field(
        default=None, max_length=10_000, description="default: every verified report"
    )


@router.post(
    "/years/{year}/reports/assign",
    summary="Assign one verification body a lot of the year's submitted reports (operator)",
)
def assign_lot(
    year: YearPath, body: AssignLotBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).assign_reports(
        actor,
        key,
        year_=year,
        verifier_entity_id=body.verifier_entity_id,
        report_ids=body.report_ids,
    )


@router.post(
    "/years/{year}/reports/confirm", summary="Confirm the year's verified reports (operator)"
)
def confirm_lot(
    year: YearPath, body: ConfirmLotBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).confirm_reports(actor, key, year_=year, report_ids=body.report_ids)


# ---------------------------------------------------------------- allocation, status, penalties


@router.post(
    "/years/{year}/allocations",
    summary="Pre-allocate or true up every covered entity, as registry proposals (operator)",
)
def allocate(
    year: YearPath, body: AllocateBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).allocate(actor, key, year_=year, kind=body.kind)


@router.get("/years/{year}/allocations", summary="The year's allocation table")
def allocations(year: YearPath, actor: ActorDep, request: Request) -> list[dict[str, Any]]:
    return svc(request).allocations(actor, year)


@router.post(
    "/years/{year}/exclusions", status_code=201, summary="Exclude an entity from a year (operator)"
)
def exclude(
    year: YearPath, body: ExcludeBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).exclude(
        actor, key, entity_id=body.entity_id, year_=year, reason=body.reason
    )


@router.post(
    "/entities/{entity_id}/years/{year}/surrender",
    summary="Surrender units for the year through the registry (the holder)",
)
def surrender(
    entity_id: str,
    year: YearPath,
    body: SurrenderBody,
    actor: ActorDep,
    key: KeyDep,
    request: Request,
) -> Any:
    return svc(request).surrender(
        actor,
        key,
        entity_id=entity_id,
        year_=year,
        unit_class=body.unit_class,
        quantity=body.quantity,
    )


class BorrowBody(Strict):
    quantity: int = Field(ge=1, le=10**10, description="whole tonnes of the lending year's CEA")


@router.post(
    "/entities/{entity_id}/years/{year}/borrow",
    summary="Record an entity's borrowing from next year's allowances (operator; 2021–22)",
)
def borrow(
    entity_id: str,
    year: YearPath,
    body: BorrowBody,
    actor: ActorDep,
    key: KeyDep,
    request: Request,
) -> Any:
    return svc(request).borrow(actor, key, entity_id=entity_id, year_=year, quantity=body.quantity)


@router.get("/entities/{entity_id}/years/{year}/status", summary="An entity's status")
def entity_status(
    entity_id: str, year: YearPath, actor: ActorDep, request: Request
) -> dict[str, Any]:
    return svc(request).entity_status(actor, entity_id, year)


@router.get("/years/{year}/status", summary="Every entity's status and the compliance rate")
def status(year: YearPath, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).status(actor, year)


@router.post("/years/{year}/penalties", summary="Set the year's penalties (operator)")
def penalties(
    year: YearPath, body: PenaltyBody, actor: ActorDep, key: KeyDep, request: Request
) -> Any:
    return svc(request).penalties(actor, key, year_=year, **body.model_dump())


@router.get("/years/{year}/penalties", summary="The penalties set for a year (operator)")
def penalty_report(year: YearPath, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).penalty_report(actor, year)
