"""Registry pages: dashboard, accounts, account detail with its forms, approval queue and serial
search. Pages only read through RegistryService queries and act through its commands."""

from __future__ import annotations

from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import run, ui

from carbonhub.console import registry_forms as forms
from carbonhub.console.i18n import error_text, t
from carbonhub.console.shell import (
    HOME_PATH,
    Services,
    add_nav,
    button_cell,
    call,
    card_title,
    current_actor,
    everyone,
    frame,
    hint,
    holders_and_operators,
    link_cell,
    notify_ok,
    operators,
    short_id,
    table,
    to_login,
    tonnes,
    when,
)
from carbonhub.core.auth import Actor, Role
from carbonhub.core.errors import DomainError
from carbonhub.core.ids import new_id
from carbonhub.registry import model as m

ACCOUNTS_PATH = "/registry/accounts"
APPROVALS_PATH = "/registry/approvals"
SERIALS_PATH = "/registry/serials"
PAGE_SIZE = 100

TOTAL_FIELDS = ("issued", "unallocated", "held", "surrendered", "cancelled")


def account_path(account_id: str) -> str:
    return f"{ACCOUNTS_PATH}/{account_id}"


# Roles that may ask for a registry account (RegistryService.request_account decides).
REQUESTER_ROLES = frozenset({Role.OPERATOR, Role.ENTERPRISE, Role.MEMBER, Role.LENDER})


def _transfer_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "short": short_id(r["id"]),
            "time": when(r["created_at"]),
            "op": t("op." + r["op"]),
            "status": t("tstatus." + r["status"]),
            "from": r["from_account"] or "",
            "to": r["to_account"] or "",
            "unit_class": r["unit_class"],
            "quantity": tonnes(r["quantity"]),
            "proposed_by": r["proposed_by"],
            "approved_by": r["approved_by"] or "",
            "expires": when(r["expires_at"]),
            "beneficiary": r.get("beneficiary") or "",
            "reversible": _reversible(r),
        }
        for r in items
    ]


def _reversible(r: dict[str, Any]) -> bool:
    """Whether a reversal may be proposed for this transfer (the service checks the window)."""
    return (
        r["status"] == "COMPLETED"
        and bool(r["from_account"])
        and m.operation(r["op"]).reversal_window_days is not None
    )


def register_registry(svc: Services) -> None:
    add_nav(HOME_PATH, "nav.dashboard", "dashboard", everyone)
    add_nav(
        ACCOUNTS_PATH,
        "nav.accounts",
        "account_balance",
        holders_and_operators,
        "nav.section.registry",
    )
    add_nav(APPROVALS_PATH, "nav.approvals", "fact_check", operators, "nav.section.registry")
    add_nav(SERIALS_PATH, "nav.serials", "qr_code_2", holders_and_operators, "nav.section.registry")
    reg = svc.registry

    # -------------------------------------------------------------- dashboard

    @ui.page(HOME_PATH)
    async def dashboard() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "dash.title", HOME_PATH):
            totals = await call(reg.totals) or []
            suspended = await call(reg.market_suspended)
            with ui.row().classes("items-center gap-2"):
                ui.label(t("dash.welcome", user=actor.username)).classes("text-subtitle1")
                ui.space()
                ui.label(t("dash.market") + ":").classes("text-subtitle2")
                ui.badge(
                    t("dash.market.suspended" if suspended else "dash.market.open"),
                    color="negative" if suspended else "positive",
                ).props('data-testid="market-status"').classes("text-body2 q-pa-sm")
            with ui.card().classes("w-full"):
                ui.label(t("dash.totals")).classes("text-subtitle1 text-weight-medium")
                rows = [
                    {"unit_class": r["unit_class"], **{f: tonnes(r[f]) for f in TOTAL_FIELDS}}
                    for r in totals
                ]
                table(
                    [("unit_class", "col.unit_class"), *[(f, "col." + f) for f in TOTAL_FIELDS]],
                    rows,
                    row_key="unit_class",
                    testid="totals-table",
                )
            with ui.card().classes("w-full"):
                ui.label(t("dash.chart")).classes("text-subtitle1 text-weight-medium")
                ui.echart(
                    {
                        "animation": False,  # figures, not a show: draw them final at once
                        "tooltip": {"trigger": "axis"},
                        "legend": {"top": 0},
                        "grid": {"left": 90, "right": 20, "top": 40, "bottom": 30},
                        "xAxis": {"type": "category", "data": [r["unit_class"] for r in totals]},
                        "yAxis": {"type": "value", "name": t("common.tonnes")},
                        "series": [
                            {"type": "bar", "name": t("col." + f), "data": [r[f] for r in totals]}
                            for f in TOTAL_FIELDS
                        ],
                    }
                ).classes("w-full h-80").props('data-testid="totals-chart"')
        return None

    # -------------------------------------------------------------- accounts

    @ui.page(ACCOUNTS_PATH)
    async def accounts(after: str | None = None) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "acc.title", ACCOUNTS_PATH):
            items = await call(reg.list_accounts, actor, after=after, limit=PAGE_SIZE) or []
            if actor.role in REQUESTER_ROLES:
                entities: dict[str, str] = {}
                if actor.is_operator:
                    entities = {
                        e["id"]: e["name"]
                        for e in await call(svc.auth.list_entities) or []
                        if e["kind"] != "registry"
                    }
                ui.button(
                    t("form.request_account"),
                    icon="add_card",
                    on_click=lambda: forms.open_request_account(svc, actor, entities, reload),
                ).props('unelevated no-caps color=primary data-testid="open-request"')

            @ui.refreshable
            def render() -> None:
                rows = [
                    {
                        "id": a["id"],
                        "name": a["name"],
                        "entity": a["entity_name"],
                        "type": t("type." + a["type"]),
                        "status": t("status." + a["status"]),
                        "opened": when(a["opened_at"]),
                    }
                    for a in items
                ]
                tbl = table(
                    [
                        ("id", "acc.id"),
                        ("name", "acc.name"),
                        ("entity", "acc.entity"),
                        ("type", "acc.type"),
                        ("status", "acc.status"),
                        ("opened", "acc.opened"),
                    ],
                    rows,
                    testid="accounts-table",
                )
                link_cell(tbl, "id", ACCOUNTS_PATH)

            async def reload() -> None:
                items[:] = await call(reg.list_accounts, actor, after=after, limit=PAGE_SIZE) or []
                render.refresh()

            render()
            with ui.row():
                if after:
                    ui.button(
                        t("common.first_page"), on_click=lambda: ui.navigate.to(ACCOUNTS_PATH)
                    ).props("flat")
                if len(items) == PAGE_SIZE:
                    last = items[-1]["id"]
                    ui.button(
                        t("common.next_page"),
                        on_click=lambda: ui.navigate.to(f"{ACCOUNTS_PATH}?after={last}"),
                    ).props("flat")
        return None

    @ui.page(ACCOUNTS_PATH + "/{account_id}")
    async def account_page(account_id: str) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "acc.detail", ACCOUNTS_PATH):
            await AccountView(svc, actor, account_id).build()
        return None

    # -------------------------------------------------------------- approvals

    @ui.page(APPROVALS_PATH)
    async def approvals() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "appr.title", APPROVALS_PATH):
            hint("appr.hint")
            queue: list[dict[str, Any]] = await call(reg.approval_queue, actor) or []
            keys: dict[str, str] = {}

            @ui.refreshable
            def render() -> None:
                keys.clear()
                keys.update({item["id"]: new_id() for item in queue})
                tbl = table(
                    [
                        ("actions", "common.actions"),
                        ("op", "col.op"),
                        ("unit_class", "col.unit_class"),
                        ("quantity", "col.quantity"),
                        ("from", "col.from"),
                        ("to", "col.to"),
                        ("proposed_by", "col.proposed_by"),
                        ("time", "col.time"),
                        ("expires", "col.expires"),
                        ("short", "col.id"),
                    ],
                    _transfer_rows(queue),
                    testid="approval-table",
                )
                tbl.props(f'wrap-cells no-data-label="{t("appr.empty")}"')
                button_cell(
                    tbl,
                    "actions",
                    [
                        ("approve", t("appr.approve"), "primary"),
                        ("void", t("appr.void"), "negative"),
                    ],
                )
                tbl.on("approve", approve)
                tbl.on("void", lambda e: forms.open_void(svc, actor, e.args["id"], reload))

            async def reload() -> None:
                queue[:] = await call(reg.approval_queue, actor) or []
                render.refresh()

            async def approve(e: Any) -> None:
                transfer_id = e.args["id"]
                result = await call(
                    reg.approve, actor, keys.get(transfer_id, new_id()), transfer_id
                )
                if result is not None:
                    notify_ok(
                        t("appr.approved", id=result["id"], status=t("tstatus." + result["status"]))
                    )
                    await reload()

            with ui.card().classes("w-full"):
                with ui.row().classes("w-full items-center"):
                    card_title("appr.transfers")
                    ui.space()
                    ui.button(
                        t("form.issue"),
                        icon="add_circle",
                        on_click=lambda: forms.open_issue(svc, actor, reload),
                    ).props('unelevated no-caps color=primary data-testid="open-issue"')
                    ui.button(
                        t("form.allocate"),
                        icon="call_split",
                        on_click=lambda: forms.open_allocate(svc, actor, reload),
                    ).props('unelevated no-caps color=secondary data-testid="open-allocate"')
                render()
            if actor.is_operator:
                await _openings(svc, actor)
        return None

    # -------------------------------------------------------------- serial search

    @ui.page(SERIALS_PATH)
    async def serials(q: str | None = None) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "ser.title", SERIALS_PATH):
            with ui.row().classes("w-full items-start"):
                box = (
                    ui.input(t("ser.input"), value=q or "")
                    .props(f'outlined clearable hint="{t("ser.hint")}" data-testid="serial-input"')
                    .classes("w-[36rem]")
                )
                search = ui.button(t("ser.query"), icon="search").props(
                    'unelevated no-caps color=primary data-testid="serial-search"'
                )
            result_box = ui.column().classes("w-full gap-4")

            async def run_search() -> None:
                text = (box.value or "").strip()
                result_box.clear()
                if not text:
                    return
                found = await call(reg.serial, actor, text)
                if found is None:
                    return
                with result_box:
                    _serial_result(found)

            search.on_click(run_search)
            box.on("keydown.enter", run_search)
            if q:
                await run_search()
        return None


async def _openings(svc: Services, actor: Actor) -> None:
    """Pending account-opening requests, each approved or rejected by an operator other than the
    requester (the service refuses the requester)."""
    reg = svc.registry
    pending: list[dict[str, Any]] = (
        await call(reg.list_accounts, actor, status="REQUESTED", limit=PAGE_SIZE) or []
    )
    keys: dict[tuple[str, bool], str] = {}  # (account, approve) -> key, fresh on each render

    @ui.refreshable
    def render() -> None:
        keys.clear()
        keys.update({(a["id"], approve): new_id() for a in pending for approve in (True, False)})
        rows = [
            {
                "id": a["id"],
                "name": a["name"],
                "entity": a["entity_name"],
                "type": t("type." + a["type"]),
                "requested_by": a["requested_by"],
                "time": when(a["created_at"]),
            }
            for a in pending
        ]
        tbl = table(
            [
                ("actions", "common.actions"),
                ("id", "acc.id"),
                ("name", "acc.name"),
                ("entity", "acc.entity"),
                ("type", "acc.type"),
                ("requested_by", "col.requested_by"),
                ("time", "col.time"),
            ],
            rows,
            testid="opening-table",
        )
        tbl.props(f'wrap-cells no-data-label="{t("appr.openings.empty")}"')
        button_cell(
            tbl,
            "actions",
            [("accept", t("appr.approve"), "primary"), ("reject", t("appr.reject"), "negative")],
        )
        link_cell(tbl, "id", ACCOUNTS_PATH)
        tbl.on("accept", lambda e: decide(e.args["id"], True))
        tbl.on("reject", lambda e: decide(e.args["id"], False))

    async def decide(account_id: str, approve: bool) -> None:
        key = keys.get((account_id, approve), new_id())
        result = await call(reg.decide_account, actor, key, account_id, approve=approve)
        if result is None:
            return
        notify_ok(
            t("appr.account_approved" if approve else "appr.account_rejected", id=result["id"])
        )
        pending[:] = await call(reg.list_accounts, actor, status="REQUESTED", limit=PAGE_SIZE) or []
        render.refresh()

    with ui.card().classes("w-full"):
        card_title("appr.openings")
        hint("appr.openings.hint")
        render()


def _serial_result(found: dict[str, Any]) -> None:
    with ui.row().classes("items-center gap-2"):
        ui.label(found["query"]).classes("text-subtitle1 text-mono").props(
            'data-testid="serial-query"'
        )
        ui.badge(
            t("ser.tainted" if found["tainted"] else "ser.clean"),
            color="negative" if found["tainted"] else "positive",
        )
    with ui.card().classes("w-full"):
        ui.label(t("ser.current")).classes("text-subtitle1 text-weight-medium")
        tbl = table(
            [
                ("account_id", "col.account"),
                ("serial", "col.serial"),
                ("start", "col.start"),
                ("end", "col.end"),
            ],
            [
                {
                    "account_id": b["account_id"],
                    "serial": b["serial"],
                    "start": b["start"],
                    "end": b["end"],
                }
                for b in found["blocks"]
            ],
            row_key="serial",
            testid="serial-blocks",
        )
        link_cell(tbl, "account_id", ACCOUNTS_PATH)
    with ui.card().classes("w-full"):
        ui.label(t("ser.history")).classes("text-subtitle1 text-weight-medium")
        rows = [
            dict(r, range=f"{h['range'][0]}–{h['range'][1]}")
            for r, h in zip(_transfer_rows(found["history"]), found["history"], strict=True)
        ]
        table(
            [
                ("time", "col.time"),
                ("op", "col.op"),
                ("status", "col.status"),
                ("from", "col.from"),
                ("to", "col.to"),
                ("range", "col.range"),
                ("quantity", "col.quantity"),
            ],
            rows,
            testid="serial-history",
        )


class AccountView:
    """One account: summary, holdings, trusted counterparties, holds, blocks, history, and the
    forms that act on it (operators also change its status, order court transfers and propose
    reversals)."""

    def __init__(self, svc: Services, actor: Actor, account_id: str) -> None:
        self.svc = svc
        self.actor = actor
        self.account_id = account_id
        self.account: dict[str, Any] | None = None
        self.blocks: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.holds: list[dict[str, Any]] = []
        self.trusted: list[dict[str, Any]] = []
        self.trust_keys: dict[str, str] = {}
        self.lien_holders: dict[str, str] = {}
        self.error = ""

    async def load(self) -> None:
        reg, actor, acc = self.svc.registry, self.actor, self.account_id
        try:
            self.account = await run.io_bound(reg.account, actor, acc)
        except DomainError as err:
            self.account, self.error = None, error_text(err)
            return
        self.blocks = await call(reg.blocks, actor, acc) or []
        self.history = await call(reg.transfers, actor, account_id=acc) or []
        self.holds = await call(reg.holds_list, actor, account_id=acc) or []
        if self.holder_account:
            self.trusted = await call(reg.trusted_list, actor, acc) or []

    async def reload(self) -> None:
        await self.load()
        self.render.refresh()

    @property
    def holder_account(self) -> bool:
        a = self.account
        return a is not None and m.AccountType(a["type"]) in m.HOLDER_TYPES

    def classes(self) -> list[str]:
        return [h["unit_class"] for h in (self.account or {}).get("holdings", [])]

    async def build(self) -> None:
        ui.link(t("acc.back"), ACCOUNTS_PATH).classes("text-primary")
        await self.load()
        if self.account is None:
            ui.label(self.error).classes("text-negative text-subtitle1").props(
                'data-testid="account-error"'
            )
            return
        entities = await call(self.svc.auth.list_entities) or []
        self.lien_holders = {e["id"]: e["name"] for e in entities}
        self.render()

    def _buttons(self, a: dict[str, Any]) -> None:
        svc, actor, acc = self.svc, self.actor, self.account_id

        def may(op: m.Op) -> bool:  # the registry model says who starts what; hide the rest
            return actor.role.value in m.OPERATIONS[op].initiators

        with ui.row().classes("gap-2"):
            if may(m.Op.TRANSFER):
                ui.button(
                    t("form.transfer"),
                    icon="swap_horiz",
                    on_click=lambda: forms.open_transfer(
                        svc, actor, acc, self.classes(), self.reload
                    ),
                ).props('unelevated color=primary no-caps data-testid="open-transfer"')
            if may(m.Op.SURRENDER):
                ui.button(
                    t("form.surrender"),
                    icon="task_alt",
                    on_click=lambda: forms.open_surrender(
                        svc, actor, acc, self.classes(), self.reload
                    ),
                ).props('unelevated color=secondary no-caps data-testid="open-surrender"')
            if may(m.Op.CANCEL):
                ui.button(
                    t("form.cancel"),
                    icon="eco",
                    on_click=lambda: forms.open_cancel(
                        svc, actor, acc, self.classes(), self.reload
                    ),
                ).props('unelevated color=accent no-caps data-testid="open-cancel"')
            ui.button(
                t("form.hold"),
                icon="lock",
                on_click=lambda: forms.open_hold(
                    svc, actor, acc, self.classes(), self.lien_holders, self.reload
                ),
            ).props('outline color=primary no-caps data-testid="open-hold"')
            if not actor.is_operator or not self.holder_account:
                return
            if a["status"] != "REQUESTED" and forms.status_targets(a["status"]):
                ui.button(
                    t("form.status"),
                    icon="published_with_changes",
                    on_click=lambda: forms.open_status(svc, actor, acc, a["status"], self.reload),
                ).props('outline color=warning no-caps data-testid="open-status"')
            ui.button(
                t("form.court"),
                icon="gavel",
                on_click=lambda: forms.open_court(
                    svc,
                    actor,
                    self.reload,
                    account_id=acc,
                    classes=self.classes(),
                    holds=self.holds,
                ),
            ).props('outline color=negative no-caps data-testid="open-court"')

    @ui.refreshable_method
    def render(self) -> None:
        a = self.account
        if a is None:
            return
        self._buttons(a)
        with ui.card().classes("w-full"):
            with ui.row().classes("items-center gap-4"):
                ui.label(a["id"]).classes("text-h6 text-mono").props('data-testid="account-id"')
                ui.badge(t("type." + a["type"]), color="primary")
                ui.badge(
                    t("status." + a["status"]),
                    color="positive" if a["status"] == "OPEN" else "warning",
                ).props('data-testid="account-status"')
            ui.label(f"{a['name']} · {a.get('entity_name') or ''}").classes("text-body1")
        with ui.card().classes("w-full"):
            ui.label(t("acc.holdings")).classes("text-subtitle1 text-weight-medium")
            table(
                [
                    ("unit_class", "col.unit_class"),
                    ("posted", "col.posted"),
                    ("pending", "col.pending"),
                    ("held", "col.held_units"),
                    ("available", "col.available"),
                ],
                [
                    {
                        "unit_class": h["unit_class"],
                        "posted": tonnes(h["posted"]),
                        "pending": tonnes(h["pending"]),
                        "held": tonnes(h["held"]),
                        "available": tonnes(h["available"]),
                    }
                    for h in a["holdings"]
                ],
                row_key="unit_class",
                testid="holdings-table",
            )
        if self.holder_account:
            self._trusted_card()
        with ui.card().classes("w-full"):
            ui.label(t("acc.holds")).classes("text-subtitle1 text-weight-medium")
            tbl = table(
                [
                    ("short", "col.id"),
                    ("kind", "col.kind"),
                    ("unit_class", "col.unit_class"),
                    ("quantity", "col.quantity"),
                    ("lien_holder", "col.lien_holder"),
                    ("created_by", "col.created_by"),
                    ("time", "col.time"),
                    ("actions", "common.actions"),
                ],
                [
                    {
                        "id": h["id"],
                        "short": short_id(h["id"]),
                        "kind": t("hold." + h["kind"]),
                        "unit_class": h["unit_class"],
                        "quantity": tonnes(h["quantity"]),
                        "lien_holder": h["lien_holder"] or "",
                        "created_by": h["created_by"],
                        "time": when(h["created_at"]),
                    }
                    for h in self.holds
                ],
                testid="holds-table",
            )
            button_cell(tbl, "actions", [("release", t("form.release"), "primary")])
            tbl.on(
                "release",
                lambda e: forms.open_release(self.svc, self.actor, e.args["id"], self.reload),
            )
        with ui.card().classes("w-full"):
            ui.label(t("acc.blocks")).classes("text-subtitle1 text-weight-medium")
            tbl = table(
                [
                    ("serial", "col.serial"),
                    ("unit_class", "col.unit_class"),
                    ("size", "col.size"),
                    ("tainted", "col.tainted"),
                ],
                [
                    {
                        "serial": b["serial"],
                        "unit_class": b["unit_class"],
                        "size": tonnes(b["size"]),
                        "tainted": t("common.yes" if b["tainted"] else "common.no"),
                    }
                    for b in self.blocks
                ],
                row_key="serial",
                testid="blocks-table",
            )
            tbl.add_slot(
                "body-cell-serial",
                f'<q-td :props="props"><a class="text-primary text-mono" '
                f":href=\"'{SERIALS_PATH}?q=' + props.value\">{{{{ props.value }}}}</a></q-td>",
            )
        with ui.card().classes("w-full"):
            ui.label(t("acc.history")).classes("text-subtitle1 text-weight-medium")
            columns = [
                ("time", "col.time"),
                ("op", "col.op"),
                ("status", "col.status"),
                ("from", "col.from"),
                ("to", "col.to"),
                ("unit_class", "col.unit_class"),
                ("quantity", "col.quantity"),
                ("short", "col.id"),
            ]
            if self.actor.is_operator:
                columns.append(("actions", "common.actions"))
            tbl = table(columns, _transfer_rows(self.history), testid="history-table")
            if self.actor.is_operator:
                button_cell(
                    tbl,
                    "actions",
                    [("reverse", t("form.reverse"), "warning")],
                    show_if="reversible",
                )
                tbl.on(
                    "reverse",
                    lambda e: forms.open_reverse(self.svc, self.actor, self.reload, e.args["id"]),
                )

    def _trusted_card(self) -> None:
        self.trust_keys = {r["trusted_id"]: new_id() for r in self.trusted}
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center"):
                card_title("acc.trusted")
                ui.space()
                ui.button(
                    t("form.trust"),
                    icon="verified_user",
                    on_click=lambda: forms.open_trust(
                        self.svc, self.actor, self.account_id, self.reload
                    ),
                ).props('outline dense no-caps color=primary data-testid="open-trust"').classes(
                    "q-px-sm"
                )
            hint("acc.trusted.hint")
            tbl = table(
                [
                    ("id", "col.trusted_id"),
                    ("added_by", "col.added_by"),
                    ("added_at", "col.added_at"),
                    ("actions", "common.actions"),
                ],
                [
                    {
                        "id": r["trusted_id"],
                        "added_by": r["added_by"],
                        "added_at": when(r["added_at"]),
                    }
                    for r in self.trusted
                ],
                testid="trusted-table",
            )
            button_cell(tbl, "actions", [("untrust", t("form.untrust"), "negative")])
            tbl.on("untrust", lambda e: self.untrust(e.args["id"]))

    async def untrust(self, trusted_id: str) -> None:
        key = self.trust_keys.get(trusted_id, new_id())
        result = await call(
            self.svc.registry.set_trusted,
            self.actor,
            key,
            self.account_id,
            trusted_id,
            trusted=False,
        )
        if result is not None:
            notify_ok(t("result.untrusted", id=trusted_id))
            await self.reload()
