"""Settlement pages: cash accounts (a holder's own; a bank's accounts with funding and payouts),
the settlement statement of a day, and the daily clearing report by mode, where operators also
settle a day and see the trades that failed.

Pages read through CashService and SettlementService and act through their commands; money
arrives as yuan text from both.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final
from urllib.parse import urlencode

from fastapi.responses import RedirectResponse
from nicegui import run, ui

from carbonhub.console.exchange_pages import (
    MODE_ORDER,
    TOTAL_ROW,
    Market,
    error_label,
    today,
    trade_ref,
    traders_and_operators,
    yuan,
)
from carbonhub.console.i18n import t
from carbonhub.console.registry_forms import Done, Submit, form_dialog, text_field
from carbonhub.console.shell import (
    Services,
    add_nav,
    button_cell,
    call,
    card_title,
    current_actor,
    everyone,
    frame,
    hint,
    table,
    to_login,
    tonnes,
    when,
)
from carbonhub.core import timefmt
from carbonhub.core.auth import Actor, Role
from carbonhub.core.errors import DomainError

CASH_PATH: Final = "/cash"
STATEMENT_PATH: Final = "/settlement/statement"
REPORT_PATH: Final = "/settlement/report"
PAGE_SIZE: Final = 100


def cash_users(actor: Actor) -> bool:
    return actor.is_operator or actor.role is Role.BANK or actor.entity_id is not None


def parse_day(text: str | None, svc: Services) -> date:
    """The day asked for, today by default."""
    return timefmt.parse_day(text or today(svc))


def day_picker(
    path: str,
    day: str,
    entities: dict[str, str] | None = None,
    entity: str | None = None,
) -> None:
    """A day field (and, given `entities`, an entity to choose) and a query button that reload
    the page for them: the URL says what is shown, so it can be bookmarked."""
    with ui.row().classes("items-center gap-2"):
        box = (
            ui.input(t("stl.day"), value=day)
            .props('outlined dense type=date data-testid="f-day"')
            .classes("w-48")
        )
        chosen: ui.select | None = None
        if entities is not None:
            chosen = (
                ui.select(
                    entities,
                    value=entity if entity in entities else None,
                    label=t("stl.entity"),
                    clearable=True,
                )
                .props('outlined dense data-testid="f-entity"')
                .classes("w-72")
            )

        def go() -> None:
            params = {"day": str(box.value or "")}
            if chosen is not None and chosen.value:
                params["entity"] = str(chosen.value)
            ui.navigate.to(f"{path}?{urlencode(params)}")

        ui.button(t("common.search"), icon="search", on_click=go).props(
            'unelevated no-caps color=primary data-testid="day-query"'
        )
    box.on("keydown.enter", go)


def figure(label_key: str, value: str, testid: str, classes: str = "") -> None:
    with ui.card().classes("q-pa-md min-w-[11rem]").props("flat bordered"):
        ui.label(t(label_key)).classes("text-caption text-grey-7")
        ui.label(value).classes(f"text-h6 text-weight-medium {classes}").props(
            f'data-testid="{testid}"'
        )


def register_settlement(svc: Services, mk: Market) -> None:
    add_nav(CASH_PATH, "nav.cash", "account_balance_wallet", cash_users, "nav.section.settlement")
    add_nav(
        STATEMENT_PATH, "nav.statement", "receipt", traders_and_operators, "nav.section.settlement"
    )
    add_nav(REPORT_PATH, "nav.report", "summarize", everyone, "nav.section.settlement")

    @ui.page(CASH_PATH)
    async def cash_page(account: str | None = None) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "cash.title", CASH_PATH):
            await CashView(svc, mk, actor).build(account)
        return None

    @ui.page(STATEMENT_PATH)
    async def statement_page(
        day: str | None = None, entity: str | None = None
    ) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "stl.statement", STATEMENT_PATH):
            await _statement(svc, mk, actor, day, entity)
        return None

    @ui.page(REPORT_PATH)
    async def report_page(day: str | None = None) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "stl.report", REPORT_PATH):
            await ReportView(svc, mk, actor).build(day)
        return None


# ------------------------------------------------------------------ cash


class CashView:
    """A holder sees its own account; a bank its accounts (and funds or pays them out); an
    operator every account. `?account=` shows one account with its ledger."""

    def __init__(self, svc: Services, mk: Market, actor: Actor) -> None:
        self.svc = svc
        self.cash = mk.cash
        self.actor = actor
        self.names: dict[str, str] = {}
        self.account_id = ""
        self.accounts: list[dict[str, Any]] = []

    @property
    def bank(self) -> bool:
        return self.actor.role is Role.BANK

    async def build(self, account: str | None) -> None:
        self.names = {e["id"]: e["name"] for e in await call(self.svc.auth.list_entities) or []}
        if account:
            ui.link(t("cash.back"), CASH_PATH).classes("text-primary")
            self.account_id = account
            await self.detail()
        elif self.bank or self.actor.is_operator:
            await self.load_accounts()
            if self.bank:
                ui.button(t("cash.open"), icon="add_card", on_click=self.open_account).props(
                    'unelevated no-caps color=primary data-testid="open-cash-account"'
                )
            self.account_list()
        else:
            try:
                mine = await run.io_bound(
                    self.cash.account_of, self.actor, self.actor.entity_id or ""
                )
            except DomainError as err:
                error_label(err, "cash-error")
                return
            if mine is None:
                return
            self.account_id = str(mine["id"])
            await self.detail()

    # -------------------------------------------------------------- one account

    @ui.refreshable_method
    async def detail(self) -> None:
        try:
            a = await run.io_bound(self.cash.account, self.actor, self.account_id)
            entries = await run.io_bound(
                self.cash.entries, self.actor, self.account_id, limit=PAGE_SIZE
            )
        except DomainError as err:
            error_label(err, "cash-error")
            return
        if a is None or entries is None:
            return
        with ui.card().classes("w-full"):
            with ui.row().classes("items-center gap-4"):
                ui.label(a["id"]).classes("text-h6 text-mono").props('data-testid="cash-id"')
                ui.badge(t("status." + a["status"]), color="positive")
                ui.label(
                    t(
                        "cash.holder",
                        holder=self.names.get(a["entity_id"] or "", a["entity_id"] or ""),
                        bank=self.names.get(a["bank_entity_id"] or "", ""),
                    )
                ).classes("text-body1")
                ui.space()
                if self.bank:
                    self._bank_buttons(a["id"])
            with ui.row().classes("gap-4"):
                figure("cash.balance", yuan(a["balance"]), "cash-balance")
                figure("cash.frozen", yuan(a["frozen"]), "cash-frozen", "text-orange-9")
                figure("cash.available", yuan(a["available"]), "cash-available", "text-primary")
            hint("cash.hint")
        with ui.card().classes("w-full"):
            card_title("cash.entries")
            tbl = table(
                [
                    ("time", "col.time"),
                    ("kind", "cash.kind"),
                    ("amount", "cash.amount"),
                    ("frozen_change", "cash.frozen_change"),
                    ("balance_after", "cash.balance_after"),
                    ("ref", "cash.ref"),
                ],
                [
                    {
                        "id": e["id"],
                        "time": when(e["at"]),
                        "kind": t("entry." + e["kind"]),
                        "amount": yuan(e["amount"]),
                        "frozen_change": yuan(e["frozen_change"]),
                        "balance_after": yuan(e["balance_after"]),
                        "ref": e["ref"],
                    }
                    for e in entries
                ],
                testid="cash-entries",
            )
            tbl.props("wrap-cells")

    async def reload_detail(self) -> None:
        await self.detail.refresh()

    def _bank_buttons(self, account_id: str) -> None:
        ui.button(
            t("cash.fund"),
            icon="savings",
            on_click=lambda: self.open_move(account_id, True, self.reload_detail),
        ).props('unelevated no-caps color=primary data-testid="open-fund"')
        ui.button(
            t("cash.defund"),
            icon="payments",
            on_click=lambda: self.open_move(account_id, False, self.reload_detail),
        ).props('outline no-caps color=primary data-testid="open-defund"')

    # -------------------------------------------------------------- a bank's accounts

    async def load_accounts(self) -> None:
        self.accounts = await call(self.cash.accounts, self.actor, limit=PAGE_SIZE) or []

    async def reload_accounts(self) -> None:
        await self.load_accounts()
        self.account_list.refresh()

    @ui.refreshable_method
    def account_list(self) -> None:
        with ui.card().classes("w-full"):
            card_title("cash.accounts")
            columns = [
                ("id", "cash.account"),
                ("holder", "cash.holder_name"),
                ("bank", "cash.bank"),
                ("balance", "cash.balance"),
                ("frozen", "cash.frozen"),
                ("available", "cash.available"),
                ("status", "col.status"),
            ]
            if self.bank:
                columns.append(("actions", "common.actions"))
            tbl = table(
                columns,
                [
                    {
                        "id": a["id"],
                        "holder": self.names.get(a["entity_id"] or "", t("cash.fees_account")),
                        "bank": self.names.get(a["bank_entity_id"] or "", ""),
                        "balance": yuan(a["balance"]),
                        "frozen": yuan(a["frozen"]),
                        "available": yuan(a["available"]),
                        "status": t("status." + a["status"]),
                    }
                    for a in self.accounts
                ],
                testid="cash-accounts",
            )
            tbl.add_slot(
                "body-cell-id",
                '<q-td :props="props"><a class="text-primary text-weight-medium" '
                f":href=\"'{CASH_PATH}?account=' + props.value\">{{{{ props.value }}}}</a></q-td>",
            )
            if self.bank:
                button_cell(
                    tbl,
                    "actions",
                    [("fund", t("cash.fund"), "primary"), ("defund", t("cash.defund"), "grey-8")],
                )
                tbl.on("fund", lambda e: self.open_move(e.args["id"], True, self.reload_accounts))
                tbl.on(
                    "defund", lambda e: self.open_move(e.args["id"], False, self.reload_accounts)
                )

    def open_move(self, account_id: str, funding: bool, done: Done) -> None:
        """入金 (money the bank received for the holder) or 出金 (available money paid out)."""

        def fields() -> Submit:
            ui.label(account_id).classes("text-caption text-mono")
            hint("cash.fund_hint" if funding else "cash.defund_hint")
            amount = text_field("cash.amount_yuan", "f-amount")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.cash.fund if funding else self.cash.defund,
                    self.actor,
                    key,
                    account_id=account_id,
                    amount=str(amount.value or "").strip(),
                )

            return submit

        form_dialog(
            "cash.fund" if funding else "cash.defund",
            "form-fund" if funding else "form-defund",
            fields,
            done,
            lambda r: t("cash.moved", id=r["id"], balance=yuan(r["balance"])),
        )

    def open_account(self) -> None:
        holders = {
            i: n for i, n in self.names.items() if i != self.actor.entity_id
        }  # the service checks the entity

        def fields() -> Submit:
            entity = (
                ui.select(holders, label=t("cash.holder_name"), with_input=True)
                .props('outlined dense data-testid="f-entity"')
                .classes("w-full")
            )

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.cash.open_account, self.actor, key, entity_id=str(entity.value or "")
                )

            return submit

        form_dialog(
            "cash.open",
            "form-cash-account",
            fields,
            self.reload_accounts,
            lambda r: t("cash.opened", id=r["id"]),
        )


# ------------------------------------------------------------------ statement


async def _statement(
    svc: Services, mk: Market, actor: Actor, day_text: str | None, entity: str | None
) -> None:
    try:
        day = parse_day(day_text, svc)
    except DomainError as err:
        day_picker(STATEMENT_PATH, today(svc))
        error_label(err, "statement-error")
        return
    names: dict[str, str] = {}
    if actor.is_operator:
        names = {m["entity_id"]: m["name"] for m in await call(mk.exchange.members) or []}
    day_picker(STATEMENT_PATH, day.isoformat(), names if actor.is_operator else None, entity)
    entity_id = entity if actor.is_operator else actor.entity_id
    if not entity_id:
        hint("stl.pick_entity" if actor.is_operator else "stl.no_entity")
        return
    try:
        st = await run.io_bound(mk.settlement.statement, actor, entity_id, day)
    except DomainError as err:
        error_label(err, "statement-error")
        return
    if st is None:
        return
    holder = names.get(entity_id) or next(
        (e["name"] for e in await call(svc.auth.list_entities) or [] if e["id"] == entity_id), ""
    )
    ui.label(t("stl.statement_of", holder=holder, day=day.isoformat())).classes(
        "text-subtitle1"
    ).props('data-testid="statement-title"')
    with ui.row().classes("gap-4"):
        figure("stl.cash_received", yuan(st["cash_received"]), "st-cash-received")
        figure("stl.cash_paid", yuan(st["cash_paid"]), "st-cash-paid")
        figure("stl.net_cash", yuan(st["net_cash"]), "st-net-cash", "text-primary")
        figure("stl.units_received", tonnes(st["units_received"]), "st-units-received")
        figure("stl.units_delivered", tonnes(st["units_delivered"]), "st-units-delivered")
        figure("stl.fees", yuan(st["fees"]), "st-fees")
    with ui.card().classes("w-full"):
        card_title("stl.lines")
        hint("stl.lines_hint")
        tbl = table(
            [
                ("trade", "mkt.trade_id"),
                ("instrument", "mkt.code"),
                ("mode", "mkt.mode"),
                ("side", "mkt.side"),
                ("quantity", "col.quantity"),
                ("value", "mkt.value"),
                ("fee", "mkt.fee_paid"),
                ("cash", "stl.cash"),
                ("units", "stl.units"),
                ("status", "col.status"),
                ("reason", "stl.reason"),
            ],
            [
                {
                    "id": f"{line['trade_id']}:{line['side']}",
                    "trade": trade_ref(line["trade_id"]),
                    "instrument": line["instrument"],
                    "mode": t("mode." + line["mode"]),
                    "side": t("side." + line["side"][0]),
                    "quantity": tonnes(line["quantity"]),
                    "value": yuan(line["value"]),
                    "fee": yuan(line["fee"]),
                    "cash": yuan(line["cash"]),
                    "units": f"{line['units']:+,}",
                    "status": t("sst." + line["status"]),
                    "reason": line["reason"],
                }
                for line in st["lines"]
            ],
            testid="statement-lines",
        )
        tbl.props("wrap-cells")


# ------------------------------------------------------------------ clearing report


class ReportView:
    """清结算信息日报: per mode and in total; operators settle the day and see its failures."""

    def __init__(self, svc: Services, mk: Market, actor: Actor) -> None:
        self.svc = svc
        self.settlement = mk.settlement
        self.actor = actor
        self.day = date.today()

    async def build(self, day_text: str | None) -> None:
        try:
            self.day = parse_day(day_text, self.svc)
        except DomainError as err:
            day_picker(REPORT_PATH, today(self.svc))
            error_label(err, "report-error")
            return
        with ui.row().classes("w-full items-center"):
            day_picker(REPORT_PATH, self.day.isoformat())
            ui.space()
            if self.actor.is_operator:
                ui.button(t("stl.settle"), icon="done_all", on_click=self.open_settle).props(
                    'unelevated no-caps color=accent data-testid="settle-day"'
                )
        await self.render()

    async def reload(self) -> None:
        await self.render.refresh()

    @ui.refreshable_method
    async def render(self) -> None:
        report = await call(self.settlement.report, self.day)
        if report is None:
            return
        run_ = report["run"]
        if run_:
            ui.label(
                t(
                    "stl.run",
                    by=run_["run_by"],
                    at=when(run_["run_at"]),
                    trades=run_["trades"],
                    settled=run_["settled"],
                    failed=run_["failed"],
                    checksum=str(run_["checksum"])[:16],
                )
            ).classes("text-body2 text-positive").props('data-testid="report-run"')
        else:
            ui.label(t("stl.not_run")).classes("text-body2 text-warning").props(
                'data-testid="report-run"'
            )
        with ui.card().classes("w-full"):
            card_title("stl.by_mode")
            hint("stl.report_hint")
            rows = [
                _report_row(t("mode." + mode), mode, report["modes"][mode])
                for mode in MODE_ORDER
                if mode in report["modes"]
            ]
            rows.append(_report_row(t("mkt.total"), "TOTAL", report["total"]))
            tbl = table(
                [
                    ("mode", "mkt.mode"),
                    ("trades", "stl.trades"),
                    ("volume", "stl.volume"),
                    ("value", "stl.value"),
                    ("average", "stl.average"),
                    ("high", "mkt.high"),
                    ("low", "mkt.low"),
                    ("fees", "stl.fees"),
                    ("settled", "stl.settled"),
                    ("failed", "stl.failed"),
                ],
                rows,
                row_key="key",
                testid="report-table",
            )
            tbl.add_slot("body", TOTAL_ROW)
            ui.echart(
                {
                    "animation": False,
                    "tooltip": {"trigger": "axis"},
                    "legend": {"top": 0},
                    "grid": {"left": 90, "right": 70, "top": 36, "bottom": 30},
                    "xAxis": {"type": "category", "data": [r["mode"] for r in rows[:-1]]},
                    "yAxis": [
                        {"type": "value", "name": t("stl.value_yuan")},
                        {"type": "value", "name": t("common.tonnes")},
                    ],
                    "series": [
                        {
                            "type": "bar",
                            "name": t("stl.value"),
                            "data": [float(report["modes"][r["key"]]["value"]) for r in rows[:-1]],
                        },
                        {
                            "type": "bar",
                            "name": t("stl.volume"),
                            "yAxisIndex": 1,
                            "data": [report["modes"][r["key"]]["volume"] for r in rows[:-1]],
                        },
                    ],
                }
            ).classes("w-full h-64").props('data-testid="report-chart"')
        if self.actor.is_operator:
            await self._failures()

    async def _failures(self) -> None:
        failures = await call(self.settlement.failures, self.actor, self.day) or []
        names = {e["id"]: e["name"] for e in await call(self.svc.auth.list_entities) or []}
        with ui.card().classes("w-full"):
            card_title("stl.failures")
            tbl = table(
                [
                    ("trade", "mkt.trade_id"),
                    ("instrument", "mkt.code"),
                    ("mode", "mkt.mode"),
                    ("quantity", "col.quantity"),
                    ("value", "stl.value"),
                    ("buyer", "stl.buyer"),
                    ("seller", "stl.seller"),
                    ("reason", "stl.reason"),
                ],
                [
                    {
                        "id": f["trade_id"],
                        "trade": f["trade_id"],
                        "instrument": f["instrument"],
                        "mode": t("mode." + f["mode"]),
                        "quantity": tonnes(int(f["quantity"])),
                        "value": yuan(f["value"]),
                        "buyer": names.get(f["buyer_entity"], f["buyer_entity"]),
                        "seller": names.get(f["seller_entity"], f["seller_entity"]),
                        "reason": f["reason"],
                    }
                    for f in failures
                ],
                testid="failures-table",
            )
            tbl.props(f'wrap-cells no-data-label="{t("stl.no_failures")}"')

    def open_settle(self) -> None:
        day = self.day

        def fields() -> Submit:
            ui.label(t("stl.settle_confirm", day=day.isoformat())).classes("text-body1")
            hint("stl.settle_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                del key  # settling is idempotent by trade: a second run changes nothing
                return await call(self.settlement.settle_day, self.actor, day)

            return submit

        form_dialog(
            "stl.settle",
            "form-settle",
            fields,
            self.reload,
            lambda r: t(
                "stl.settled_msg", day=r["day"], settled=r["settled_now"], failed=r["failed_now"]
            ),
        )


def _report_row(label: str, key: str, b: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "total": key == "TOTAL",
        "mode": label,
        "trades": b["trades"],
        "volume": tonnes(b["volume"]),
        "value": yuan(b["value"]),
        "average": yuan(b["average"]) or "—",
        "high": yuan(b["high"]) or "—",
        "low": yuan(b["low"]) or "—",
        "fees": yuan(b["fees"]),
        "settled": b["settled"],
        "failed": b["failed"],
    }
