"""`carbonhub registry …`: the registry's commands, each a thin call into RegistryService."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer
from rich.progress import Progress

from carbonhub.core.cli_support import (
    JsonOpt,
    KeyOpt,
    actor,
    call,
    database,
    emit,
    fail,
    key_or_new,
)
from carbonhub.core.errors import InvalidInput
from carbonhub.core.textfile import decode_text
from carbonhub.registry.service import RegistryService

app = typer.Typer(
    help="Registry: accounts, issuance, allocation, transfers, holds, surrender, serials.",
    no_args_is_help=True,
)

TRANSFER_COLS = [
    "id",
    "op",
    "status",
    "from_account",
    "to_account",
    "unit_class",
    "quantity",
    "created_at",
]


def reg() -> RegistryService:
    return RegistryService(database())


@app.command()
def totals(as_json: bool = JsonOpt) -> None:
    """Registry totals per unit class (public)."""
    emit(reg().totals(), as_json, title="registry totals")


@app.command()
def accounts(
    as_json: bool = JsonOpt,
    status: str = typer.Option(None),
    limit: int = 100,
    after: str = typer.Option(None, help="cursor: last id of the previous page"),
) -> None:
    """Accounts the caller may see."""
    rows = call(lambda: reg().list_accounts(actor(), status=status, limit=limit, after=after))
    emit(rows, as_json, ["id", "type", "status", "entity_name", "name"], title="accounts")


@app.command()
def account(account_id: str, as_json: bool = JsonOpt) -> None:
    """One account with its holdings."""
    emit(call(lambda: reg().account(actor(), account_id)), as_json)


@app.command("request-account")
def request_account(
    name: str,
    type: str = typer.Option("HOLDING", help="HOLDING, TRADING or CUSTODY"),
    entity: str = typer.Option(None, help="entity id (operators opening for another entity)"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Request a new account; an operator approves it."""
    emit(
        call(
            lambda: reg().request_account(
                actor(), key_or_new(key), type=type, name=name, entity_id=entity
            )
        ),
        as_json,
    )


@app.command("approve-account")
def approve_account(
    account_id: str,
    reject: bool = typer.Option(False, "--reject"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Approve (or --reject) an account opening request."""
    emit(
        call(
            lambda: reg().decide_account(actor(), key_or_new(key), account_id, approve=not reject)
        ),
        as_json,
    )


@app.command("status")
def status(
    account_id: str,
    new_status: str,
    reason: str = typer.Option(..., "--reason"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Change an account's status (OPEN, RESTRICTED, SUSPENDED, CLOSURE_PENDING, CLOSED)."""
    emit(
        call(
            lambda: reg().change_status(
                actor(), key_or_new(key), account_id, status=new_status, reason=reason
            )
        ),
        as_json,
    )


@app.command()
def blocks(account_id: str, as_json: bool = JsonOpt) -> None:
    """Serial blocks held by an account."""
    emit(
        call(lambda: reg().blocks(actor(), account_id)),
        as_json,
        ["serial", "size", "tainted"],
        title=account_id,
    )


@app.command()
def issue(
    unit_class: str,
    quantity: int,
    origin: str = typer.Option("420000"),
    reason: str = "",
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Propose an issuance into the issuance account (another operator approves)."""
    emit(
        call(
            lambda: reg().issue(
                actor(),
                key_or_new(key),
                unit_class=unit_class,
                quantity=quantity,
                origin=origin,
                reason=reason,
            )
        ),
        as_json,
    )


@app.command()
def allocate(
    to_account: str, unit_class: str, quantity: int, key: str = KeyOpt, as_json: bool = JsonOpt
) -> None:
    """Propose an allocation from the issuance account (maker–checker)."""
    emit(
        call(
            lambda: reg().allocate(
                actor(),
                key_or_new(key),
                to_account=to_account,
                unit_class=unit_class,
                quantity=quantity,
            )
        ),
        as_json,
    )


def read_allocation_csv(path: Path) -> list[tuple[str, str, int]]:
    """CSV with header account_id,unit_class,quantity; UTF-8 (with or without BOM) or GBK."""
    text, _encoding = decode_text(path.read_bytes(), "CSV_ENCODING")
    reader = csv.DictReader(io.StringIO(text))
    expected = ["account_id", "unit_class", "quantity"]
    if [c.strip() for c in (reader.fieldnames or [])] != expected:
        raise InvalidInput(
            "CSV_COLUMNS",
            f"columns must be {','.join(expected)}",
            "列须为 account_id,unit_class,quantity",
        )
    rows, seen = [], set()
    for n, r in enumerate(reader, start=2):
        if None in r or any(v is None for v in r.values()):
            raise InvalidInput(
                "CSV_FIELDS", f"line {n}: expected exactly 3 fields", f"第 {n} 行须为 3 列"
            )
        q = (r.get("quantity") or "").strip()
        if not q.isdigit():
            raise InvalidInput(
                "CSV_QUANTITY",
                f"line {n}: quantity {q!r} is not a whole number",
                f"第 {n} 行数量错误",
            )
        row = ((r["account_id"] or "").strip(), (r["unit_class"] or "").strip(), int(q))
        if row[:2] in seen:
            raise InvalidInput(
                "CSV_DUPLICATE", f"line {n}: {row[0]} {row[1]} appears twice", f"第 {n} 行重复"
            )
        seen.add(row[:2])
        rows.append(row)
    return rows


@app.command("allocate-bulk")
def allocate_bulk(file: Path, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Propose allocations from a CSV file (account_id,unit_class,quantity) as one batch."""
    if not file.exists():
        fail(f"no such file: {file}")
    rows = call(lambda: read_allocation_csv(file))
    with Progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("allocating", total=len(rows))
        result = call(
            lambda: reg().allocate_bulk(
                actor(),
                key_or_new(key),
                rows,
                progress=lambda n: progress.update(task, completed=n),
            )
        )
    emit(
        {k: v for k, v in result.items() if k != "transfers"}
        | {"transfers": len(result["transfers"])},
        as_json,
    )


@app.command()
def approve(transfer_id: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Approve a pending proposal (checker ≠ maker)."""
    emit(call(lambda: reg().approve(actor(), key_or_new(key), transfer_id)), as_json)


@app.command("approve-batch")
def approve_batch(batch_ref: str, key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Approve every pending transfer of a bulk allocation."""
    emit(call(lambda: reg().approve_batch(actor(), key_or_new(key), batch_ref)), as_json)


@app.command()
def void(
    transfer_id: str,
    reason: str = typer.Option(..., "--reason"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Void a pending transfer."""
    emit(call(lambda: reg().void(actor(), key_or_new(key), transfer_id, reason=reason)), as_json)


@app.command()
def transfer(
    from_account: str,
    to_account: str,
    unit_class: str,
    quantity: int,
    reason: str = "",
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Transfer units between holding accounts."""
    emit(
        call(
            lambda: reg().transfer(
                actor(),
                key_or_new(key),
                from_account=from_account,
                to_account=to_account,
                unit_class=unit_class,
                quantity=quantity,
                reason=reason,
            )
        ),
        as_json,
    )


@app.command()
def surrender(
    from_account: str,
    unit_class: str,
    quantity: int,
    year: int = typer.Option(..., "--year"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Surrender units for a compliance year (清缴)."""
    emit(
        call(
            lambda: reg().surrender(
                actor(),
                key_or_new(key),
                from_account=from_account,
                unit_class=unit_class,
                quantity=quantity,
                compliance_year=year,
            )
        ),
        as_json,
    )


@app.command()
def cancel(
    from_account: str,
    unit_class: str,
    quantity: int,
    beneficiary: str = typer.Option(..., "--beneficiary"),
    reason: str = "",
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel units voluntarily on behalf of a beneficiary (自愿注销)."""
    emit(
        call(
            lambda: reg().cancel(
                actor(),
                key_or_new(key),
                from_account=from_account,
                unit_class=unit_class,
                quantity=quantity,
                beneficiary=beneficiary,
                reason=reason,
            )
        ),
        as_json,
    )


@app.command("court-transfer")
def court_transfer(
    from_account: str,
    to_account: str,
    unit_class: str,
    quantity: int,
    legal_basis: str = typer.Option(..., "--legal-basis"),
    hold: str = typer.Option(None, "--hold"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Propose a court-ordered transfer (司法扣划), optionally consuming a judicial freeze."""
    emit(
        call(
            lambda: reg().court_transfer(
                actor(),
                key_or_new(key),
                from_account=from_account,
                to_account=to_account,
                unit_class=unit_class,
                quantity=quantity,
                legal_basis=legal_basis,
                hold_id=hold,
            )
        ),
        as_json,
    )


@app.command()
def reverse(
    transfer_id: str,
    reason: str = typer.Option(..., "--reason"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Propose the reversal of a completed transfer within its window."""
    emit(
        call(
            lambda: reg().reverse(actor(), key_or_new(key), transfer_id=transfer_id, reason=reason)
        ),
        as_json,
    )


@app.command()
def hold(
    account_id: str,
    unit_class: str,
    quantity: int,
    kind: str = typer.Option(..., "--kind"),
    lien_holder: str = typer.Option(None, "--lien-holder"),
    legal_basis: str = "",
    reason: str = "",
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Place a hold: PLEDGE, JUDICIAL_FREEZE or EXCHANGE_RESERVATION."""
    emit(
        call(
            lambda: reg().place_hold(
                actor(),
                key_or_new(key),
                account_id=account_id,
                unit_class=unit_class,
                quantity=quantity,
                kind=kind,
                lien_holder=lien_holder,
                legal_basis=legal_basis,
                reason=reason,
            )
        ),
        as_json,
    )


@app.command()
def release(hold_id: str, reason: str = "", key: str = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Release a hold."""
    emit(
        call(lambda: reg().release_hold(actor(), key_or_new(key), hold_id, reason=reason)), as_json
    )


@app.command()
def holds(account_id: str = typer.Option(None, "--account"), as_json: bool = JsonOpt) -> None:
    """Active holds the caller may see."""
    emit(
        call(lambda: reg().holds_list(actor(), account_id=account_id)),
        as_json,
        ["id", "account_id", "unit_class", "quantity", "kind", "status"],
        title="holds",
    )


@app.command()
def trust(
    account_id: str,
    trusted_id: str,
    remove: bool = typer.Option(False, "--remove"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add (or --remove) an account on the trusted-counterparty list."""
    emit(
        call(
            lambda: reg().set_trusted(
                actor(), key_or_new(key), account_id, trusted_id, trusted=not remove
            )
        ),
        as_json,
    )


@app.command()
def flag(
    serial: str,
    reason: str = typer.Option(..., "--reason"),
    clear: bool = typer.Option(False, "--clear"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Flag a serial range as tainted (or --clear the flag)."""
    emit(
        call(
            lambda: reg().flag_serials(
                actor(), key_or_new(key), serial=serial, reason=reason, tainted=not clear
            )
        ),
        as_json,
    )


@app.command()
def suspend(
    reason: str = typer.Option(..., "--reason"),
    resume: bool = typer.Option(False, "--resume"),
    key: str = KeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Market-wide suspend switch (allocation and surrender still pass); --resume lifts it."""
    emit(
        call(
            lambda: reg().set_market_suspended(
                actor(), key_or_new(key), suspended=not resume, reason=reason
            )
        ),
        as_json,
    )


@app.command()
def serial(serial: str, as_json: bool = JsonOpt) -> None:
    """Where a serial is now, and its history."""
    emit(call(lambda: reg().serial(actor(), serial)), as_json)


@app.command()
def transfers(
    account_id: str = typer.Option(None, "--account"),
    status: str = typer.Option(None),
    limit: int = 50,
    as_json: bool = JsonOpt,
) -> None:
    """Transfers, newest first."""
    emit(
        call(lambda: reg().transfers(actor(), account_id=account_id, status=status, limit=limit)),
        as_json,
        TRANSFER_COLS,
        title="transfers",
    )


@app.command()
def approvals(as_json: bool = JsonOpt) -> None:
    """The approval queue (operators)."""
    emit(
        call(lambda: reg().approval_queue(actor())),
        as_json,
        TRANSFER_COLS,
        title="awaiting approval",
    )


@app.command("run-due")
def run_due(as_json: bool = JsonOpt) -> None:
    """The server's time-driven duties, now: post due delayed transfers, expire stale
    proposals and holds, finish ended auctions, close past trading days and journal days."""
    from carbonhub.duties import run_duties
    from carbonhub.exchange.cli import ex

    emit(run_duties(ex()), as_json)
