"""Operator pages: the registry operator's tools (market suspension, tainted serials, court-ordered
transfers, reversals) and the journal with its Merkle receipts and the full verification.

The tools act only through RegistryService commands. The journal is read the way the REST API
reads it: `journal.recent` and `journal.receipt` on a read-only unit of work; verification runs
`carbonhub.verify.verify` off the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import run, ui

from carbonhub.console import registry_forms as forms
from carbonhub.console.i18n import t
from carbonhub.console.registry_pages import APPROVALS_PATH
from carbonhub.console.shell import (
    Services,
    add_nav,
    button_cell,
    call,
    card_title,
    current_actor,
    forbidden,
    frame,
    hint,
    operators,
    table,
    to_login,
    when,
)
from carbonhub.core import journal
from carbonhub.core.auth import Actor
from carbonhub.core.db import Database
from carbonhub.core.merkle import verify_inclusion
from carbonhub.verify import Report
from carbonhub.verify import verify as verify_all

OPERATOR_PATH = "/registry/operator"
JOURNAL_PATH = "/journal"
JOURNAL_PAGE = 50
PAYLOAD_CHARS = 160


def register_operator(svc: Services) -> None:
    add_nav(
        OPERATOR_PATH, "nav.operator", "admin_panel_settings", operators, "nav.section.registry"
    )
    add_nav(JOURNAL_PATH, "nav.journal", "receipt_long", operators, "nav.section.audit")

    @ui.page(OPERATOR_PATH)
    async def operator_tools() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "ops.title", OPERATOR_PATH):
            if not actor.is_operator:
                forbidden()
                return None
            await _tools(svc, actor)
        return None

    @ui.page(JOURNAL_PATH)
    async def journal_page(before: int | None = None) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "jr.title", JOURNAL_PATH):
            if not actor.is_operator:
                forbidden()
                return None
            await _journal(svc.db, before)
        return None


# ------------------------------------------------------------------ operator tools


async def _tools(svc: Services, actor: Actor) -> None:
    reg = svc.registry
    suspended = [bool(await call(reg.market_suspended))]

    async def nothing_to_refresh() -> None:
        return None

    async def refresh_market() -> None:
        suspended[0] = bool(await call(reg.market_suspended))
        market.refresh()

    @ui.refreshable
    def market() -> None:
        now = suspended[0]
        with ui.row().classes("items-center gap-2"):
            ui.label(t("dash.market") + ":").classes("text-subtitle2")
            ui.badge(
                t("dash.market.suspended" if now else "dash.market.open"),
                color="negative" if now else "positive",
            ).props('data-testid="ops-market-status"').classes("text-body2 q-pa-sm")
        ui.button(
            t("ops.resume" if now else "ops.suspend"),
            icon="play_arrow" if now else "pause",
            on_click=lambda: forms.open_market(svc, actor, now, refresh_market),
        ).props(
            f"unelevated no-caps color={'positive' if now else 'negative'} "
            'data-testid="open-market"'
        )

    with ui.element("div").classes("grid grid-cols-1 md:grid-cols-2 gap-4 w-full"):
        with ui.card():
            card_title("ops.market")
            hint("ops.market.hint")
            market()
        with ui.card():
            card_title("ops.serials")
            hint("ops.serials.hint")
            with ui.row().classes("gap-2"):
                ui.button(
                    t("form.flag"),
                    icon="flag",
                    on_click=lambda: forms.open_flag(svc, actor, True, nothing_to_refresh),
                ).props('unelevated no-caps color=negative data-testid="open-flag"')
                ui.button(
                    t("form.unflag"),
                    icon="outlined_flag",
                    on_click=lambda: forms.open_flag(svc, actor, False, nothing_to_refresh),
                ).props('outline no-caps color=primary data-testid="open-unflag"')
        with ui.card():
            card_title("ops.court")
            hint("ops.court.hint")
            ui.button(
                t("form.court"),
                icon="gavel",
                on_click=lambda: forms.open_court(svc, actor, nothing_to_refresh),
            ).props('unelevated no-caps color=primary data-testid="open-court"')
        with ui.card():
            card_title("ops.reverse")
            hint("ops.reverse.hint")
            ui.button(
                t("form.reverse"),
                icon="undo",
                on_click=lambda: forms.open_reverse(svc, actor, nothing_to_refresh),
            ).props('unelevated no-caps color=warning data-testid="open-reverse"')
    ui.link(t("ops.queue"), APPROVALS_PATH).classes("text-primary").props(
        'data-testid="to-approvals"'
    )


# ------------------------------------------------------------------ journal


def _recent(db: Database, limit: int, before: int | None) -> list[journal.Entry]:
    with db.read() as uow:
        return journal.recent(uow.conn, limit, before)


def _receipt(db: Database, seq: int) -> dict[str, Any] | None:
    with db.read() as uow:
        return journal.receipt(uow.conn, seq)


def _summary(payload: dict[str, Any]) -> str:
    text = journal.canonical(payload)
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 1] + "…"


async def _journal(db: Database, before: int | None) -> None:
    hint("jr.hint")
    with ui.card().classes("w-full"):
        with ui.row().classes("w-full items-center"):
            card_title("jr.verify")
            ui.space()
            button = ui.button(t("jr.verify"), icon="verified").props(
                'unelevated no-caps color=primary data-testid="verify-run"'
            )
        hint("jr.verify.hint")
        result_box = ui.column().classes("w-full gap-1")

    async def run_verify() -> None:
        button.props("loading")
        try:
            report = await run.io_bound(verify_all, db)
        finally:
            button.props(remove="loading")
        if report is None:  # the server is shutting down
            return
        result_box.clear()
        with result_box:
            _report(report)

    button.on_click(run_verify)

    entries = await run.io_bound(_recent, db, JOURNAL_PAGE, before) or []
    rows = [
        {
            "seq": e.seq,
            "time": when(e.time),
            "type": e.type,
            "actor": e.actor,
            "payload": _summary(e.payload),
            "hash": e.hash[:10] + "…",
        }
        for e in entries
    ]
    with ui.card().classes("w-full"):
        tbl = table(
            [
                ("seq", "col.seq"),
                ("time", "col.time"),
                ("type", "col.type"),
                ("actor", "col.actor"),
                ("payload", "col.payload"),
                ("hash", "col.hash"),
                ("actions", "common.actions"),
            ],
            rows,
            row_key="seq",
            testid="journal-table",
        )
        tbl.props("wrap-cells")
        for column in tbl.columns:
            if column["name"] in ("seq", "time", "type", "hash"):
                column["classes"] = column["headerClasses"] = "text-no-wrap"
        tbl.add_slot(
            "body-cell-payload",
            '<q-td :props="props" class="text-mono text-caption" '
            'style="min-width: 12rem; word-break: break-all">{{ props.value }}</q-td>',
        )
        tbl.add_slot(
            "body-cell-hash",
            '<q-td :props="props" class="text-mono text-caption">{{ props.value }}</q-td>',
        )
        button_cell(tbl, "actions", [("receipt", t("jr.receipt"), "primary")])
        tbl.on("receipt", lambda e: _show_receipt(db, int(e.args["seq"])))
    with ui.row():
        if before is not None:
            ui.button(t("common.first_page"), on_click=lambda: ui.navigate.to(JOURNAL_PATH)).props(
                "flat no-caps"
            )
        if len(entries) == JOURNAL_PAGE:
            last = entries[-1].seq
            ui.button(
                t("common.next_page"),
                on_click=lambda: ui.navigate.to(f"{JOURNAL_PATH}?before={last}"),
            ).props("flat no-caps")


def _report(report: Report) -> None:
    if report.ok:
        ui.badge(t("jr.verify.ok", entries=report.entries), color="positive").props(
            'data-testid="verify-status"'
        ).classes("text-body2 q-pa-sm")
        return
    ui.badge(t("jr.verify.bad", count=len(report.problems)), color="negative").props(
        'data-testid="verify-status"'
    ).classes("text-body2 q-pa-sm")
    for problem in report.problems:
        ui.label(problem).classes("text-negative text-mono text-caption")


def _pair(label_key: str, value: str, *, mono: bool = False, testid: str = "") -> None:
    ui.label(t(label_key)).classes("text-grey-7")
    value_label = ui.label(value).classes("text-mono text-caption break-all" if mono else "")
    if testid:
        value_label.props(f'data-testid="{testid}"')


async def _show_receipt(db: Database, seq: int) -> None:
    r = await run.io_bound(_receipt, db, seq)
    if r is None:
        ui.notify(t("jr.not_found", seq=seq), type="negative", position="bottom")
        return
    e = r["entry"]
    proof: list[str] = r["proof"]
    ok = verify_inclusion(e["hash"], r["leaf_index"], r["tree_size"], proof, r["merkle_root"])
    with (
        ui.dialog() as dialog,
        ui.card().classes("w-[52rem] max-w-full").props('data-testid="receipt"'),
    ):
        with ui.row().classes("w-full items-center"):
            ui.label(t("jr.receipt.title", seq=e["seq"])).classes("text-h6")
            ui.space()
            ui.badge(
                t("jr.proof_ok" if ok else "jr.proof_bad"), color="positive" if ok else "negative"
            ).props('data-testid="receipt-proof"').classes("text-body2 q-pa-sm")
        with ui.grid(columns="auto 1fr").classes("w-full gap-x-4 gap-y-1 items-baseline"):
            _pair("col.type", e["type"])
            _pair("col.actor", e["actor"])
            _pair("col.time", when(e["time"]))
            _pair("jr.day", r["day"])
            _pair("jr.leaf", f"{r['leaf_index']} / {r['tree_size']}")
            _pair("col.hash", e["hash"], mono=True, testid="receipt-hash")
            _pair("jr.prev_hash", e["prev_hash"], mono=True)
            _pair("jr.root", r["merkle_root"], mono=True, testid="receipt-root")
            ui.label(t("jr.checkpoint")).classes("text-grey-7")
            ui.badge(
                t("jr.checkpointed" if r["checkpointed"] else "jr.provisional"),
                color="primary" if r["checkpointed"] else "grey-7",
            ).classes("w-fit")
        card_title("col.payload")
        ui.label(json.dumps(e["payload"], ensure_ascii=False, indent=2, sort_keys=True)).classes(
            "text-mono text-caption whitespace-pre-wrap bg-grey-2 q-pa-sm rounded-borders w-full"
        )
        card_title("jr.proof")
        with ui.column().classes("w-full gap-0").props('data-testid="receipt-path"'):
            if not proof:
                ui.label(t("jr.proof_empty")).classes("text-caption text-grey-7")
            for i, h in enumerate(proof):
                ui.label(f"{i + 1}. {h}").classes("text-mono text-caption break-all")
        with ui.row().classes("w-full justify-end"):
            ui.button(t("common.close"), on_click=dialog.close).props(
                'flat no-caps data-testid="receipt-close"'
            )
    dialog.on("hide", dialog.delete)
    dialog.open()
