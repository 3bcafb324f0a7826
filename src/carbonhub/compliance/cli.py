"""`carbonhub compliance …`: rules, covered entities, evidence files, reports, allocation,
surrender, status, penalties, and `run-cycle` for a whole year."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress

from carbonhub.compliance.cycle import run_cycle, simulated_cast
from carbonhub.compliance.service import ComplianceService
from carbonhub.core.auth import AuthService
from carbonhub.core.cli_support import (
    JsonOpt,
    KeyOpt,
    actor,
    call,
    database,
    emit,
    err_console,
    key_or_new,
)
from carbonhub.exchange.service import ExchangeService
from carbonhub.registry.service import RegistryService
from carbonhub.settlement.service import CashService

app = typer.Typer(
    help="Compliance (MRV): evidence, reports, verification, allocation, surrender, penalties.",
    no_args_is_help=True,
)
YearOpt = typer.Option(..., "--year", help="the compliance year")

REPORT_COLS = ["id", "entity_id", "year", "status", "emissions", "verified_emissions", "version"]
STATUS_COLS = [
    "entity_id",
    "sector",
    "region",
    "status",
    "obligation",
    "surrendered",
    "shortfall",
    "allocation",
]


def svc() -> ComplianceService:
    db = database()
    registry = RegistryService(db)
    return ComplianceService(db, registry, ExchangeService(db, registry, CashService(db)))


# ---------------------------------------------------------------- rules


@app.command("plan-years")
def plan_years(as_json: bool = JsonOpt) -> None:
    """Every plan year's rules and its surrender deadline."""
    emit(
        ComplianceService.plan_years(),
        as_json,
        ["year", "power_basis", "coal_cap_share", "last_vintage", "deadline", "penalty"],
    )


@app.command()
def factors(
    table: str = typer.Option(None, help="only this table, like benchmark.power.generation"),
    as_json: bool = JsonOpt,
) -> None:
    """Factor and benchmark tables, each value with its years, source and certainty."""
    rows = [f for f in svc().factors() if table is None or f["table"] == table]
    emit(rows, as_json, ["table", "key", "first", "last", "value", "unit", "certainty"])


@app.command("enter-factor")
def enter_factor(
    table: str,
    factor_key: str,
    value: str,
    first: int = typer.Option(..., "--first"),
    last: int = typer.Option(None, "--last"),
    unit: str = typer.Option(..., "--unit"),
    source: str = typer.Option(..., "--source", help="the official text it comes from"),
    certainty: str = typer.Option("verified", "--certainty"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Enter or correct a factor (operator); the later row wins for its years."""
    emit(
        call(
            lambda: svc().enter_factor(
                actor(),
                key_or_new(key),
                table=table,
                factor_key=factor_key,
                first=first,
                last=last,
                value=value,
                unit=unit,
                source=source,
                certainty=certainty,
            )
        ),
        as_json,
    )


# ---------------------------------------------------------------- entities


@app.command()
def cover(
    entity_id: str,
    account_id: str,
    sector: str = typer.Option(..., "--sector", help="power, steel, cement or aluminium"),
    region: str = typer.Option(..., "--region"),
    since: int = typer.Option(..., "--since", help="the first covered year"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cover an entity with its registry holding account (operator)."""
    emit(
        call(
            lambda: svc().cover_entity(
                actor(),
                key_or_new(key),
                entity_id=entity_id,
                account_id=account_id,
                sector=sector,
                region=region,
                since=since,
            )
        ),
        as_json,
    )


@app.command()
def entities(as_json: bool = JsonOpt) -> None:
    """Covered entities (an enterprise sees itself)."""
    emit(
        call(lambda: svc().covered_entities(actor())),
        as_json,
        ["entity_id", "name", "credit_code", "sector", "region", "since", "account_id"],
    )


@app.command()
def entity(entity_id: str, as_json: bool = JsonOpt) -> None:
    """A covered entity with its facilities, generating units and reports."""
    emit(call(lambda: svc().covered_entity(actor(), entity_id)), as_json)


@app.command("add-facility")
def add_facility(entity_id: str, name: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Add a facility to a covered entity (the entity or an operator)."""
    emit(
        call(lambda: svc().add_facility(actor(), key_or_new(key), entity_id=entity_id, name=name)),
        as_json,
    )


@app.command("add-unit")
def add_unit(
    facility_id: str,
    code: str,
    category: str = typer.Option(..., "--category", help="I, II, III or IV (gas)"),
    capacity_mw: str = typer.Option(..., "--capacity-mw"),
    cooling: str = typer.Option("water", "--cooling", help="water or air"),
    fuel: str = typer.Option("coal", "--fuel", help="coal or gas"),
    heat_supply: bool = typer.Option(False, "--heat-supply"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add a generating unit to a power facility."""
    emit(
        call(
            lambda: svc().add_unit(
                actor(),
                key_or_new(key),
                facility_id=facility_id,
                code=code,
                category=category,
                capacity_mw=capacity_mw,
                cooling=cooling,
                fuel=fuel,
                heat_supply=heat_supply,
            )
        ),
        as_json,
    )


# ---------------------------------------------------------------- evidence


@app.command()
def records(entity_id: str, year: int = YearOpt, as_json: bool = JsonOpt) -> None:
    """An entity's monthly evidence of a year."""
    emit(
        call(lambda: svc().evidence(actor(), entity_id, year)),
        as_json,
        ["month", "kind", "item", "unit_id", "quantity", "params", "source"],
    )


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    year: int = YearOpt,
    errors: Path = typer.Option(None, "--errors", help="write the rejected lines here as CSV"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import monthly evidence from a CSV (UTF-8 or GBK) or .xlsx file: good rows are kept,
    bad ones listed with their line and reason."""
    data = file.read_bytes()
    with Progress(transient=True, disable=as_json, console=err_console) as progress:
        task = progress.add_task(f"importing {file.name}", total=None)
        out = call(
            lambda: svc().import_evidence_file(
                actor(),
                key_or_new(key),
                year_=year,
                data=data,
                progress=lambda n, total: progress.update(task, completed=n, total=total),
            )
        )
    if errors is not None:
        _write_errors(errors, out["rejected"])
    if as_json:
        emit(out, True)
        return
    emit(
        {k: out[k] for k in ("year", "rows", "accepted", "encoding")}
        | {"rejected": len(out["rejected"])},
        False,
    )
    if out["rejected"]:
        emit(out["rejected"][:50], False, ["line", "code", "message"], title="rejected lines")


def _write_errors(path: Path, rejected: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["line", "code", "message", "message_zh"])
        for r in rejected:
            w.writerow([r["line"], r["code"], r["message"], r["message_zh"]])


# ---------------------------------------------------------------- reports


@app.command()
def submit(entity_id: str, year: int = YearOpt, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Work out the year's emissions from the evidence and submit the report."""
    emit(
        call(
            lambda: svc().submit_report(actor(), key_or_new(key), entity_id=entity_id, year_=year)
        ),
        as_json,
    )


@app.command()
def reports(
    year: int = YearOpt,
    status: str = typer.Option(None, "--status"),
    as_json: bool = JsonOpt,
) -> None:
    """A year's reports I may read."""
    emit(call(lambda: svc().reports(actor(), year, status)), as_json, REPORT_COLS)


@app.command()
def report(report_id: str, as_json: bool = JsonOpt) -> None:
    """A report with its lines and timeline."""
    out = call(lambda: svc().report(actor(), report_id))
    if as_json:
        emit(out, True)
        return
    emit({k: v for k, v in out.items() if k not in ("lines", "timeline")}, False)
    emit(out["lines"], False, ["source", "tco2", "direct", "defaults", "unverified"], "lines")
    emit(out["timeline"], False, ["at", "from", "to", "actor", "note"], "timeline")


@app.command()
def queue(as_json: bool = JsonOpt) -> None:
    """Reports waiting for my verification body."""
    emit(call(lambda: svc().verifier_queue(actor())), as_json, REPORT_COLS)


@app.command()
def assign(
    report_id: str, verifier_entity_id: str, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Assign a verification body to a submitted report (operator)."""
    emit(
        call(
            lambda: svc().assign_verifier(
                actor(), key_or_new(key), report_id=report_id, verifier_entity_id=verifier_entity_id
            )
        ),
        as_json,
    )


@app.command()
def verify(
    report_id: str,
    verified_emissions: int,
    findings: str = typer.Option(..., "--findings"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Sign off the verified emissions (the assigned verifier)."""
    emit(
        call(
            lambda: svc().verify_report(
                actor(),
                key_or_new(key),
                report_id=report_id,
                verified_emissions=verified_emissions,
                findings=findings,
            )
        ),
        as_json,
    )


@app.command("return")
def return_report(
    report_id: str,
    reasons: str = typer.Option(..., "--reasons"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Return a report to its entity with reasons (verifier or operator)."""
    emit(
        call(
            lambda: svc().return_report(
                actor(), key_or_new(key), report_id=report_id, reasons=reasons
            )
        ),
        as_json,
    )


@app.command()
def confirm(report_id: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Confirm a verified report (operator)."""
    emit(call(lambda: svc().confirm_report(actor(), key_or_new(key), report_id=report_id)), as_json)


@app.command("assign-lot")
def assign_lot(
    verifier_entity_id: str,
    year: int = YearOpt,
    report: list[str] = typer.Option(None, "--report", help="these reports only (repeatable)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Assign one verification body the year's submitted reports, or those named (operator)."""
    emit(
        call(
            lambda: svc().assign_reports(
                actor(),
                key_or_new(key),
                year_=year,
                verifier_entity_id=verifier_entity_id,
                report_ids=report or None,
            )
        ),
        as_json,
    )


@app.command("confirm-lot")
def confirm_lot(
    year: int = YearOpt,
    report: list[str] = typer.Option(None, "--report", help="these reports only (repeatable)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Confirm the year's verified reports, or those named (operator)."""
    emit(
        call(
            lambda: svc().confirm_reports(
                actor(), key_or_new(key), year_=year, report_ids=report or None
            )
        ),
        as_json,
    )


# ---------------------------------------------------------------- allocation, surrender, status


@app.command()
def allocate(
    year: int = YearOpt,
    kind: str = typer.Option(..., "--kind", help="PRE or TRUE_UP"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pre-allocate or true up every covered entity, as one batch for the checker (operator)."""
    out = call(lambda: svc().allocate(actor(), key_or_new(key), year_=year, kind=kind))
    if as_json:
        emit(out, True)
        return
    emit({k: v for k, v in out.items() if k not in ("lines", "skipped")}, False)
    if out["skipped"]:
        emit(out["skipped"], False, ["entity_id", "reason"], "skipped")


@app.command()
def allocations(year: int = YearOpt, as_json: bool = JsonOpt) -> None:
    """The year's allocation table."""
    emit(
        call(lambda: svc().allocations(actor(), year)),
        as_json,
        ["entity_id", "kind", "tonnes", "transfer_id", "transfer_status"],
    )


@app.command()
def exclude(
    entity_id: str,
    year: int = YearOpt,
    reason: str = typer.Option(..., "--reason"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Exclude an entity from a year (closed, merged …) (operator)."""
    emit(
        call(
            lambda: svc().exclude(
                actor(), key_or_new(key), entity_id=entity_id, year_=year, reason=reason
            )
        ),
        as_json,
    )


@app.command()
def surrender(
    entity_id: str,
    unit_class: str,
    quantity: int,
    year: int = YearOpt,
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Surrender units for a compliance year through the registry (the holder)."""
    emit(
        call(
            lambda: svc().surrender(
                actor(),
                key_or_new(key),
                entity_id=entity_id,
                year_=year,
                unit_class=unit_class,
                quantity=quantity,
            )
        ),
        as_json,
    )


@app.command()
def borrow(
    entity_id: str,
    quantity: int,
    year: int = YearOpt,
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record an entity's borrowing from the lending year's allowances (operator; 2021–22)."""
    emit(
        call(
            lambda: svc().borrow(
                actor(), key_or_new(key), entity_id=entity_id, year_=year, quantity=quantity
            )
        ),
        as_json,
    )


@app.command()
def status(
    year: int = YearOpt,
    entity_id: str = typer.Option(None, "--entity", help="one entity (an enterprise: its own)"),
    as_json: bool = JsonOpt,
) -> None:
    """Compliance status: every entity and the market's rate, or one entity."""
    if entity_id is not None:
        emit(call(lambda: svc().entity_status(actor(), entity_id, year)), as_json)
        return
    out = call(lambda: svc().status(actor(), year))
    if as_json:
        emit(out, True)
        return
    emit(out["entities"], False, STATUS_COLS, f"{year} status")
    emit(
        {
            "deadline": out["deadline"],
            "compliance_rate": out["compliance_rate"],
            "non_compliant": len(out["non_compliant"]),
        },
        False,
    )


@app.command()
def penalties(
    year: int = YearOpt,
    set_: bool = typer.Option(False, "--set", help="set them (operator, after the deadline)"),
    multiple: str = typer.Option("5", "--multiple", help="5 to 10 under Decree 775"),
    average_price: str = typer.Option(None, "--average-price", help="yuan; default: exchange"),
    fine: str = typer.Option("20000.00", "--fine", help="yuan, under the 2021 Measures"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The year's penalties; with --set, work them out and record next year's deductions."""
    if set_:
        out = call(
            lambda: svc().penalties(
                actor(),
                key_or_new(key),
                year_=year,
                multiple=multiple,
                average_price=average_price,
                fine=fine,
            )
        )
    else:
        out = call(lambda: svc().penalty_report(actor(), year))
    if as_json:
        emit(out, True)
        return
    emit(
        out["penalties"],
        False,
        ["entity_id", "shortfall", "price", "multiple", "fine", "deduction_next_year"],
        f"{year} penalties ({out['rule']})",
    )


# ---------------------------------------------------------------- the whole cycle


@app.command("run-cycle")
def run_cycle_command(
    year: int = YearOpt,
    checker: str = typer.Option(..., "--checker", help="the second operator, who approves"),
    verifier: str = typer.Option(..., "--verifier", help="a user of the verification body"),
    as_json: bool = JsonOpt,
) -> None:
    """Drive a whole year: pre-allocation, reports, verification, true-up, surrender, status.

    Each step is made by its party (the logged-in operator, the checker, the verifier, each
    entity's enterprise user), so this runs on a simulation market only
    (CARBONHUB_SIMULATION=1). Steps already done are skipped: a second run changes nothing."""
    db = database()
    service = svc()
    operator = actor()
    cast = call(lambda: simulated_cast(AuthService(db), operator, checker, verifier))
    with Progress(transient=True, disable=as_json, console=err_console) as progress:
        tasks: dict[str, Any] = {}

        def step(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        out = call(lambda: run_cycle(service, cast, year, progress=step))
    if as_json:
        emit(out, True)
        return
    phases = [
        {"phase": name, "seconds": done.pop("seconds"), "done": json.dumps(done)}
        for name, done in out["phases"].items()
    ]
    emit(phases, False, ["phase", "done", "seconds"], f"{year} cycle")
    emit(
        {
            "status": json.dumps(out["status"]),
            "compliance_rate": out["compliance_rate"],
            "non_compliant": len(out["non_compliant"]),
        },
        False,
    )
