"""Compliance pages: the operator's dashboard (status by sector and region, chart, deadlines,
the year's runs), allocation tables, reports with their lines and timeline, the verifier's queue,
the enterprise's own page (evidence, file import, report, surrender, reminders) and the factor
tables with unverified values flagged.

Pages read through ComplianceService and act through its commands, as the API does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Final, ParamSpec, TypeVar

from fastapi.responses import RedirectResponse
from nicegui import app, run, ui
from nicegui.events import UploadEventArguments

from carbonhub.compliance import model as cm
from carbonhub.compliance.service import ComplianceService
from carbonhub.console.exchange_pages import error_label
from carbonhub.console.i18n import error_text, lang, t
from carbonhub.console.registry_forms import Submit, form_dialog, text_field
from carbonhub.console.settlement_pages import figure
from carbonhub.console.shell import (
    Services,
    add_nav,
    call,
    card_title,
    current_actor,
    everyone,
    forbidden,
    frame,
    hint,
    notify_ok,
    operators,
    table,
    to_login,
    tonnes,
    when,
    whole,
)
from carbonhub.core.auth import Actor, Role
from carbonhub.core.errors import DomainError
from carbonhub.core.ids import new_id
from carbonhub.core.timefmt import shanghai_day

DASHBOARD_PATH: Final = "/compliance"
MINE_PATH: Final = "/compliance/mine"
REPORTS_PATH: Final = "/compliance/reports"
REPORT_PATH: Final = "/compliance/report"
QUEUE_PATH: Final = "/compliance/queue"
ALLOCATIONS_PATH: Final = "/compliance/allocations"
FACTORS_PATH: Final = "/compliance/factors"
STATUSES: Final = ("compliant", "in-deficit", "not-verified", "excluded")
STATUS_COLOURS: Final = {
    "compliant": "positive",
    "in-deficit": "negative",
    "not-verified": "warning",
    "excluded": "grey-7",
}
CHART_COLOURS: Final = {
    "compliant": "#2e7d32",
    "in-deficit": "#c62828",
    "not-verified": "#f9a825",
    "excluded": "#9e9e9e",
}
FLASH: Final = "compliance_flash"
ITEM_KINDS: Final = frozenset(k.value for k in cm.ITEM_REQUIRED)
KINDS: Final = tuple(k.value for k in cm.EvidenceKind)


P = ParamSpec("P")
R = TypeVar("R")


class PageGone(Exception):
    """The server stopped while a read ran: there is no page left to fill."""


async def read(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """A blocking service read off the event loop; its domain error reaches the page."""
    out = await run.io_bound(fn, *args, **kwargs)
    if out is None:
        raise PageGone
    return out


def enterprises(actor: Actor) -> bool:
    return actor.role is Role.ENTERPRISE and actor.entity_id is not None


def report_readers(actor: Actor) -> bool:
    return actor.role in (Role.OPERATOR, Role.ENTERPRISE, Role.VERIFIER)


def verifiers(actor: Actor) -> bool:
    return actor.role is Role.VERIFIER


def allocation_readers(actor: Actor) -> bool:
    return actor.role in (Role.OPERATOR, Role.ENTERPRISE)


def register_compliance(svc: Services, compliance: ComplianceService) -> None:
    section = "nav.section.compliance"
    add_nav(DASHBOARD_PATH, "nav.compliance", "fact_check", operators, section)
    add_nav(MINE_PATH, "nav.my_compliance", "factory", enterprises, section)
    add_nav(REPORTS_PATH, "nav.reports", "description", report_readers, section)
    add_nav(QUEUE_PATH, "nav.queue", "pending_actions", verifiers, section)
    add_nav(ALLOCATIONS_PATH, "nav.allocations", "table_chart", allocation_readers, section)
    add_nav(FACTORS_PATH, "nav.factors", "functions", everyone, section)

    def page(path: str, title: str, build: Any) -> None:
        @ui.page(path)
        async def _page(year: int | None = None, id: str | None = None) -> RedirectResponse | None:
            actor = current_actor()
            if actor is None:
                return to_login()
            with frame(actor, title, path):
                flash = app.storage.user.pop(FLASH, None)
                if isinstance(flash, str):
                    notify_ok(flash)
                view = Compliance(svc, compliance, actor)
                try:
                    await build(view, year, id)
                except DomainError as err:
                    error_label(err, "cmp-error")
                except PageGone:
                    pass
            return None

    page(DASHBOARD_PATH, "cmp.dashboard", lambda v, y, _i: v.dashboard(y))
    page(MINE_PATH, "cmp.mine", lambda v, y, _i: v.mine(y))
    page(REPORTS_PATH, "cmp.reports", lambda v, y, _i: v.reports(y))
    page(REPORT_PATH, "cmp.report", lambda v, _y, i: v.report(i or ""))
    page(QUEUE_PATH, "cmp.queue", lambda v, _y, _i: v.queue())
    page(ALLOCATIONS_PATH, "cmp.allocations", lambda v, y, _i: v.allocations(y))
    page(FACTORS_PATH, "cmp.factors", lambda v, _y, _i: v.factors())


def status_badge(status: str) -> str:
    return t("cst." + status)


def days_text(deadline: str | None, today: date) -> str:
    """The reminder beside a deadline: days left, due today, or days past."""
    if not deadline:
        return t("cmp.deadline_unknown")
    days = (date.fromisoformat(deadline) - today).days
    if days > 0:
        return t("cmp.days_left", days=days)
    if days == 0:
        return t("cmp.due_today")
    return t("cmp.days_past", days=-days)


class Compliance:
    """One page's view of the compliance context for the signed-in actor."""

    def __init__(self, svc: Services, compliance: ComplianceService, actor: Actor) -> None:
        self.svc = svc
        self.c = compliance
        self.actor = actor
        self.names: dict[str, str] = {}

    async def load_names(self) -> None:
        self.names = {e["id"]: e["name"] for e in await call(self.svc.auth.list_entities) or []}

    def name(self, entity_id: str | None) -> str:
        return self.names.get(entity_id or "", entity_id or "")

    @property
    def today(self) -> date:
        return shanghai_day(self.svc.db.clock())

    async def pick_year(self, year: int | None) -> int:
        """The year asked for, else the newest with reports or allocations, else last year."""
        if year is not None:
            return year
        active = await read(self.c.active_years)
        return active[0] if active else self.today.year - 1

    def year_select(self, path: str, year: int) -> None:
        years = sorted({p["year"] for p in self.c.plan_years()} | {year}, reverse=True)
        ui.select(
            {y: str(y) for y in years},
            value=year,
            label=t("cmp.year"),
            on_change=lambda e: ui.navigate.to(f"{path}?year={e.value}"),
        ).props('outlined dense data-testid="cmp-year"').classes("w-40")

    # -------------------------------------------------------------- the operator's dashboard

    async def dashboard(self, year: int | None) -> None:
        if not self.actor.is_operator:
            forbidden()
            return
        y = await self.pick_year(year)
        await self.load_names()
        st = await read(self.c.status, self.actor, y)
        with ui.row().classes("items-center gap-4 w-full"):
            self.year_select(DASHBOARD_PATH, y)
            ui.space()
            self.run_buttons(y)
        entities = st["entities"]
        counts = {s: sum(1 for e in entities if e["status"] == s) for s in STATUSES}
        rate = st["compliance_rate"]
        with ui.row().classes("gap-4"):
            figure("cmp.covered", str(len(entities)), "cmp-covered")
            figure(
                "cmp.rate",
                f"{float(rate) * 100:.1f}%" if rate is not None else "—",
                "cmp-rate",
                "text-primary",
            )
            figure("cst.in-deficit", str(counts["in-deficit"]), "cmp-deficit", "text-negative")
            figure("cst.not-verified", str(counts["not-verified"]), "cmp-unverified")
            figure(
                "cmp.deadline",
                f"{st['deadline'] or '—'} · {days_text(st['deadline'], self.today)}",
                "cmp-deadline",
            )
        with ui.row().classes("w-full gap-4 no-wrap items-start"):
            with ui.card().classes("w-1/2"):
                card_title("cmp.by_sector")
                self.breakdown(st["by_sector"], "sector", "cmp-by-sector")
                self.chart(st["by_sector"])
            with ui.card().classes("w-1/2"):
                card_title("cmp.by_region")
                self.breakdown(st["by_region"], "region", "cmp-by-region")
                card_title("cmp.deadlines")
                self.deadlines()
        with ui.card().classes("w-full"):
            card_title("cmp.entities")
            self.entity_table(entities)

    def breakdown(self, groups: dict[str, dict[str, int]], field: str, testid: str) -> None:
        """The service's counts by sector or region, a row each."""
        rows = [
            {
                "id": k,
                "group": t("sector." + k) if field == "sector" else k,
                **{s: v[s] for s in STATUSES},
                "total": sum(v.values()),
            }
            for k, v in sorted(groups.items())
        ]
        table(
            [
                ("group", f"cmp.{field}"),
                *((s, "cst." + s) for s in STATUSES),
                ("total", "cmp.total"),
            ],
            rows,
            testid=testid,
        )

    def chart(self, by_sector: dict[str, dict[str, int]]) -> None:
        sectors = sorted(by_sector)
        ui.echart(
            {
                "animation": False,
                "tooltip": {"trigger": "axis"},
                "legend": {"top": 0},
                "grid": {"left": 40, "right": 20, "top": 36, "bottom": 30},
                "xAxis": {"type": "category", "data": [t("sector." + s) for s in sectors]},
                "yAxis": {"type": "value", "minInterval": 1},
                "series": [
                    {
                        "type": "bar",
                        "stack": "status",
                        "name": t("cst." + s),
                        "itemStyle": {"color": CHART_COLOURS[s]},
                        "data": [by_sector[sec][s] for sec in sectors],
                    }
                    for s in STATUSES
                ],
            }
        ).classes("w-full h-64").props('data-testid="cmp-chart"')

    def deadlines(self) -> None:
        rows = [
            {
                "id": p["year"],
                "year": p["year"],
                "deadline": p["deadline"] or "—",
                "reminder": days_text(p["deadline"], self.today),
                "rule": t("rule." + p["penalty"]),
                "certainty": t("cert." + p["certainty"]),
            }
            for p in sorted(self.c.plan_years(), key=lambda p: p["year"], reverse=True)
        ]
        table(
            [
                ("year", "cmp.year"),
                ("deadline", "cmp.deadline"),
                ("reminder", "cmp.reminder"),
                ("rule", "cmp.penalty_rule"),
                ("certainty", "cmp.certainty"),
            ],
            rows,
            testid="cmp-deadlines",
        )

    def entity_table(self, entities: list[dict[str, Any]]) -> None:
        tbl = table(
            [
                ("name", "cmp.entity"),
                ("sector", "cmp.sector"),
                ("region", "cmp.region"),
                ("status", "col.status"),
                ("obligation", "cmp.obligation"),
                ("allocation", "cmp.allocation"),
                ("surrendered", "cmp.surrendered"),
                ("shortfall", "cmp.shortfall"),
            ],
            [
                {
                    "id": e["entity_id"],
                    "name": self.name(e["entity_id"]),
                    "sector": t("sector." + e["sector"]),
                    "region": e["region"],
                    "status": status_badge(e["status"]),
                    "colour": STATUS_COLOURS[e["status"]],
                    "obligation": tonnes(e["obligation"])
                    + (" *" if e["obligation_provisional"] else ""),
                    "allocation": tonnes(e["allocation"]),
                    "surrendered": tonnes(e["surrendered"]),
                    "shortfall": tonnes(e["shortfall"]),
                }
                for e in entities
            ],
            testid="cmp-entities",
        )
        tbl.add_slot(
            "body-cell-status",
            '<q-td :props="props"><q-badge :color="props.row.colour" :label="props.value" />'
            "</q-td>",
        )
        hint("cmp.provisional_hint")

    def run_buttons(self, y: int) -> None:
        for kind, label, testid in (
            ("PRE", "cmp.run_pre", "cmp-run-pre"),
            ("TRUE_UP", "cmp.run_true_up", "cmp-run-true-up"),
        ):
            ui.button(
                t(label), icon="playlist_add", on_click=lambda k=kind: self.open_allocate(y, k)
            ).props(f'unelevated no-caps color=primary data-testid="{testid}"')
        ui.button(
            t("cmp.set_penalties"), icon="gavel", on_click=lambda: self.open_penalties(y)
        ).props('outline no-caps color=negative data-testid="cmp-set-penalties"')

    def open_allocate(self, y: int, kind: str) -> None:
        def fields() -> Submit:
            hint("cmp.run_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(self.c.allocate, self.actor, key, year_=y, kind=kind)

            return submit

        form_dialog(
            "cmp.run_pre" if kind == "PRE" else "cmp.run_true_up",
            "cmp-allocate-form",
            fields,
            self.reload,
            self.flashed(
                lambda r: t(
                    "cmp.run_done",
                    proposed=len([ln for ln in r["lines"] if ln["transfer_id"]]),
                    skipped=len(r["skipped"]),
                    issue=tonnes(r["issue"]),
                    claw_back=tonnes(r["claw_back"]),
                    batch=r["batch_ref"],
                )
            ),
        )

    def open_penalties(self, y: int) -> None:
        def fields() -> Submit:
            hint("cmp.penalty_hint")
            multiple = text_field("cmp.multiple", "f-multiple", "5")
            price = text_field("cmp.average_price", "f-average-price")
            fine = text_field("cmp.fine", "f-fine", "20000.00")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.penalties,
                    self.actor,
                    key,
                    year_=y,
                    multiple=(multiple.value or "").strip(),
                    average_price=(price.value or "").strip() or None,
                    fine=(fine.value or "").strip(),
                )

            return submit

        form_dialog(
            "cmp.set_penalties",
            "cmp-penalty-form",
            fields,
            self.reload,
            self.flashed(lambda r: t("cmp.penalties_done", n=len(r["penalties"]))),
        )

    async def reload(self) -> None:
        ui.navigate.reload()

    @staticmethod
    def flashed(message: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
        """The form's message, kept for the reloaded page to show again."""

        def keep(result: dict[str, Any]) -> str:
            text = message(result)
            app.storage.user[FLASH] = text
            return text

        return keep

    # -------------------------------------------------------------- allocation tables

    async def allocations(self, year: int | None) -> None:
        if not allocation_readers(self.actor):
            forbidden()
            return
        y = await self.pick_year(year)
        await self.load_names()
        rows = await read(self.c.allocations, self.actor, y)
        self.year_select(ALLOCATIONS_PATH, y)
        with ui.card().classes("w-full"):
            card_title("cmp.allocation_table")
            tbl = table(
                [
                    ("name", "cmp.entity"),
                    ("kind", "cmp.kind"),
                    ("tonnes", "cmp.tonnes"),
                    ("basis", "cmp.basis"),
                    ("transfer_status", "cmp.proposal"),
                    ("flags", "cmp.flags"),
                ],
                [
                    {
                        "id": f"{a['entity_id']}-{a['kind']}",
                        "name": self.name(a["entity_id"]),
                        "kind": t("akind." + a["kind"]),
                        "tonnes": tonnes(a["tonnes"]),
                        "basis": self.basis(a),
                        "transfer_status": t("tstatus." + a["transfer_status"])
                        if a["transfer_status"]
                        else "—",
                        "flags": ", ".join(a["parameters"].get("unverified", [])),
                    }
                    for a in rows
                ],
                testid="cmp-allocations",
            )
            tbl.props("wrap-cells")
            tbl.add_slot(
                "body-cell-flags",
                '<q-td :props="props"><q-badge v-if="props.value" color="orange-8" '
                ":label=\"'" + t("cert.unverified") + ": ' + props.value\" /></q-td>",
            )
            hint("cmp.allocation_hint")

    @staticmethod
    def basis(a: dict[str, Any]) -> str:
        p = a["parameters"]
        if "units" in p:
            return ", ".join(
                f"{code}: {tonnes(u['tonnes'])} ({u.get('benchmark', '')})"
                for code, u in sorted(p["units"].items())
            )
        if "shortfall" in p:
            return t("cmp.deduction_of", year=p.get("penalty_year", ""))
        if "pre" in p:
            return t("cmp.true_up_of", pre=tonnes(p["pre"]))
        return ", ".join(f"{k}: {v}" for k, v in sorted(p.items()) if not isinstance(v, list))

    # -------------------------------------------------------------- reports

    async def reports(self, year: int | None) -> None:
        if not report_readers(self.actor):
            forbidden()
            return
        y = await self.pick_year(year)
        await self.load_names()
        rows = await read(self.c.reports, self.actor, y)
        with ui.row().classes("items-center gap-4 w-full"):
            self.year_select(REPORTS_PATH, y)
            ui.space()
            if self.actor.is_operator:
                self.action("cmp.assign_lot", "cmp-assign-lot", lambda: self.open_assign_lot(y))
                self.action("cmp.confirm_lot", "cmp-confirm-lot", lambda: self.open_confirm_lot(y))
        with ui.card().classes("w-full"):
            card_title("cmp.reports")
            self.report_table(rows, "cmp-reports")

    def report_table(self, rows: list[dict[str, Any]], testid: str) -> None:
        tbl = table(
            [
                ("name", "cmp.entity"),
                ("year", "cmp.year"),
                ("status", "col.status"),
                ("emissions", "cmp.emissions"),
                ("verified", "cmp.verified_emissions"),
                ("verifier", "cmp.verifier"),
                ("updated", "col.time"),
            ],
            [
                {
                    "id": r["id"],
                    "name": self.name(r["entity_id"]),
                    "year": r["year"],
                    "status": t("rst." + r["status"]),
                    "emissions": tonnes(r["emissions"]),
                    "verified": tonnes(r["verified_emissions"]),
                    "verifier": self.name(r["verifier_entity_id"]),
                    "updated": when(r["updated_at"]),
                }
                for r in rows
            ],
            testid=testid,
        )
        tbl.add_slot(
            "body-cell-name",
            '<q-td :props="props"><a class="text-primary text-weight-medium" '
            f":href=\"'{REPORT_PATH}?id=' + props.row.id\">{{{{ props.value }}}}</a></q-td>",
        )

    async def queue(self) -> None:
        if not verifiers(self.actor):
            forbidden()
            return
        await self.load_names()
        rows = await read(self.c.verifier_queue, self.actor)
        with ui.card().classes("w-full"):
            card_title("cmp.queue")
            hint("cmp.queue_hint")
            self.report_table(rows, "cmp-queue")

    async def report(self, report_id: str) -> None:
        await self.load_names()
        r = await read(self.c.report, self.actor, report_id)
        with ui.card().classes("w-full"):
            with ui.row().classes("items-center gap-4"):
                ui.label(f"{self.name(r['entity_id'])} · {r['year']}").classes("text-h6")
                ui.badge(t("rst." + r["status"])).props('data-testid="cmp-report-status"')
                ui.label(t("cmp.version", version=r["version"])).classes("text-caption")
                ui.space()
                self.report_actions(r)
            with ui.row().classes("gap-4"):
                figure("cmp.emissions", tonnes(r["emissions"]), "cmp-report-emissions")
                figure(
                    "cmp.verified_emissions",
                    tonnes(r["verified_emissions"]) or "—",
                    "cmp-report-verified",
                    "text-primary",
                )
                figure("cmp.verifier", self.name(r["verifier_entity_id"]) or "—", "cmp-verifier")
            if r["findings"]:
                ui.label(f"{t('cmp.findings')}: {r['findings']}").classes("text-body2")
        with ui.card().classes("w-full"):
            card_title("cmp.lines")
            tbl = table(
                [
                    ("source", "cmp.source"),
                    ("tco2", "cmp.tco2"),
                    ("direct", "cmp.scope"),
                    ("defaults", "cmp.defaults"),
                    ("unverified", "cmp.flags"),
                ],
                [
                    {
                        "id": n,
                        "source": ln["source"],
                        "tco2": ln["tco2"],
                        "direct": t("cmp.direct" if ln["direct"] else "cmp.indirect"),
                        "defaults": ", ".join(ln["defaults"]),
                        "unverified": ", ".join(ln["unverified"]),
                    }
                    for n, ln in enumerate(r["lines"])
                ],
                testid="cmp-lines",
            )
            tbl.props("wrap-cells")
            tbl.add_slot(
                "body-cell-unverified",
                '<q-td :props="props"><q-badge v-if="props.value" color="orange-8" '
                ":label=\"'" + t("cert.unverified") + ": ' + props.value\" /></q-td>",
            )
            hint("cmp.unverified_hint")
        with ui.card().classes("w-full"):
            card_title("cmp.timeline")
            with ui.timeline(side="right").props('data-testid="cmp-timeline"'):
                for e in r["timeline"]:
                    ui.timeline_entry(
                        e["note"],
                        title=f"{t('rst.' + e['from'])} → {t('rst.' + e['to'])}",
                        subtitle=f"{when(e['at'])} · {e['actor']}",
                    )

    def report_actions(self, r: dict[str, Any]) -> None:
        status, mine = r["status"], self.actor.entity_id == r["verifier_entity_id"]
        if self.actor.is_operator and status == cm.ReportStatus.SUBMITTED.value:
            self.action("cmp.assign", "cmp-assign", lambda: self.open_assign(r["id"]))
        if status == cm.ReportStatus.UNDER_VERIFICATION.value and (
            (self.actor.role is Role.VERIFIER and mine) or self.actor.is_operator
        ):
            if self.actor.role is Role.VERIFIER:
                self.action("cmp.verify", "cmp-verify", lambda: self.open_verify(r))
            self.action("cmp.return", "cmp-return", lambda: self.open_return(r["id"]), "grey-8")
        if self.actor.is_operator and status == cm.ReportStatus.VERIFIED.value:
            self.action("cmp.confirm", "cmp-confirm", lambda: self.open_confirm(r["id"]))

    @staticmethod
    def action(label: str, testid: str, on_click: Any, colour: str = "primary") -> None:
        ui.button(t(label), on_click=on_click).props(
            f'unelevated no-caps color={colour} data-testid="{testid}"'
        )

    def open_assign(self, report_id: str) -> None:
        def fields() -> Submit:
            body = self.verifier_select()

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.assign_verifier,
                    self.actor,
                    key,
                    report_id=report_id,
                    verifier_entity_id=body.value or "",
                )

            return submit

        form_dialog("cmp.assign", "cmp-assign-form", fields, self.reload, self.flashed(self.moved))

    def verifier_select(self) -> ui.select:
        bodies = {
            e["id"]: e["name"] for e in self.svc.auth.list_entities() if e["kind"] == "verifier"
        }
        return (
            ui.select(bodies, label=t("cmp.verifier"))
            .props('outlined dense data-testid="f-verifier"')
            .classes("w-full")
        )

    def open_assign_lot(self, y: int) -> None:
        def fields() -> Submit:
            hint("cmp.assign_lot_hint")
            body = self.verifier_select()

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.assign_reports,
                    self.actor,
                    key,
                    year_=y,
                    verifier_entity_id=body.value or "",
                )

            return submit

        form_dialog(
            "cmp.assign_lot",
            "cmp-assign-lot-form",
            fields,
            self.reload,
            self.flashed(lambda r: t("cmp.lot_done", n=len(r["assigned"]))),
        )

    def open_confirm_lot(self, y: int) -> None:
        def fields() -> Submit:
            hint("cmp.confirm_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(self.c.confirm_reports, self.actor, key, year_=y)

            return submit

        form_dialog(
            "cmp.confirm_lot",
            "cmp-confirm-lot-form",
            fields,
            self.reload,
            self.flashed(lambda r: t("cmp.lot_done", n=len(r["confirmed"]))),
        )

    def open_verify(self, r: dict[str, Any]) -> None:
        def fields() -> Submit:
            figure_ = (
                ui.number(t("cmp.verified_emissions"), value=r["emissions"], format="%.0f")
                .props('outlined dense data-testid="f-verified"')
                .classes("w-full")
            )
            findings = (
                ui.textarea(t("cmp.findings"))
                .props('outlined dense data-testid="f-findings"')
                .classes("w-full")
            )

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.verify_report,
                    self.actor,
                    key,
                    report_id=r["id"],
                    verified_emissions=whole(figure_.value),
                    findings=findings.value or "",
                )

            return submit

        form_dialog("cmp.verify", "cmp-verify-form", fields, self.reload, self.flashed(self.moved))

    def open_return(self, report_id: str) -> None:
        def fields() -> Submit:
            reasons = (
                ui.textarea(t("cmp.reasons"))
                .props('outlined dense data-testid="f-reasons"')
                .classes("w-full")
            )

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.return_report,
                    self.actor,
                    key,
                    report_id=report_id,
                    reasons=reasons.value or "",
                )

            return submit

        form_dialog("cmp.return", "cmp-return-form", fields, self.reload, self.flashed(self.moved))

    def open_confirm(self, report_id: str) -> None:
        def fields() -> Submit:
            hint("cmp.confirm_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(self.c.confirm_report, self.actor, key, report_id=report_id)

            return submit

        form_dialog(
            "cmp.confirm", "cmp-confirm-form", fields, self.reload, self.flashed(self.moved)
        )

    @staticmethod
    def moved(r: dict[str, Any]) -> str:
        return t("cmp.moved", status=t("rst." + r["status"]))

    # -------------------------------------------------------------- the enterprise's page

    async def mine(self, year: int | None) -> None:
        if not enterprises(self.actor):
            forbidden()
            return
        entity_id = self.actor.entity_id or ""
        await self.load_names()
        ent = await read(self.c.covered_entity, self.actor, entity_id)
        y = await self.pick_year(year)
        st = await read(self.c.entity_status, self.actor, entity_id, y)
        plans = {p["year"]: p for p in self.c.plan_years()}
        with ui.row().classes("items-center gap-4 w-full"):
            ui.label(self.name(entity_id)).classes("text-h6")
            ui.badge(t("sector." + ent["sector"]))
            self.year_select(MINE_PATH, y)
            ui.space()
            ui.button(
                t("cmp.submit_report"), icon="send", on_click=lambda: self.open_submit(y)
            ).props('unelevated no-caps color=primary data-testid="cmp-submit-report"')
            ui.button(
                t("cmp.surrender"), icon="task_alt", on_click=lambda: self.open_surrender(y)
            ).props('outline no-caps color=primary data-testid="cmp-open-surrender"')
        deadline = plans.get(y, {}).get("deadline")
        with ui.row().classes("gap-4"):
            figure("col.status", status_badge(st["status"]), "cmp-my-status")
            figure("cmp.obligation", tonnes(st["obligation"]) or "—", "cmp-my-obligation")
            figure("cmp.allocation", tonnes(st["allocation"]) or "—", "cmp-my-allocation")
            figure("cmp.surrendered", tonnes(st["surrendered"]), "cmp-my-surrendered")
            figure(
                "cmp.deadline",
                f"{deadline or '—'} · {days_text(deadline, self.today)}",
                "cmp-my-deadline",
            )
        if st["shortfall"]:
            ui.label(
                t(
                    "cmp.reminder_text",
                    year=y,
                    shortfall=tonnes(st["shortfall"]),
                    deadline=deadline or "—",
                )
            ).classes("text-negative text-subtitle1").props('data-testid="cmp-reminder"')
        with ui.row().classes("w-full gap-4 no-wrap items-start"):
            with ui.card().classes("w-1/2"):
                card_title("cmp.units")
                table(
                    [
                        ("code", "cmp.unit"),
                        ("category", "cmp.category"),
                        ("capacity_mw", "cmp.capacity"),
                        ("cooling", "cmp.cooling"),
                        ("fuel", "cmp.fuel"),
                    ],
                    ent["units"],
                    testid="cmp-units",
                )
            with ui.card().classes("w-1/2"):
                card_title("cmp.my_reports")
                tbl = table(
                    [
                        ("year", "cmp.year"),
                        ("status", "col.status"),
                        ("verified", "cmp.verified_emissions"),
                    ],
                    [
                        {
                            "id": r["id"],
                            "year": r["year"],
                            "status": t("rst." + r["status"]),
                            "verified": tonnes(r["verified_emissions"]),
                        }
                        for r in ent["reports"]
                    ],
                    testid="cmp-my-reports",
                )
                tbl.add_slot(
                    "body-cell-year",
                    '<q-td :props="props"><a class="text-primary text-weight-medium" '
                    f":href=\"'{REPORT_PATH}?id=' + props.row.id\">{{{{ props.value }}}}</a></q-td>",
                )
        await self.evidence(entity_id, y, ent["units"])

    async def evidence(self, entity_id: str, y: int, units: list[dict[str, Any]]) -> None:
        rows = await read(self.c.evidence, self.actor, entity_id, y)
        codes = {u["id"]: u["code"] for u in units}
        with ui.card().classes("w-full"):
            with ui.row().classes("items-center w-full"):
                card_title("cmp.evidence")
                ui.space()
                ui.button(
                    t("cmp.add_record"),
                    icon="add",
                    on_click=lambda: self.open_record(entity_id, y, units),
                ).props('unelevated no-caps color=primary data-testid="cmp-add-record"')
            self.upload(y)
            table(
                [
                    ("month", "cmp.month"),
                    ("kind", "cmp.kind"),
                    ("item", "cmp.item"),
                    ("unit", "cmp.unit"),
                    ("quantity", "cmp.quantity"),
                    ("params", "cmp.params"),
                    ("source", "cmp.record_source"),
                ],
                [
                    {
                        "id": n,
                        "month": r["month"],
                        "kind": t("ek." + r["kind"]),
                        "item": r["item"],
                        "unit": codes.get(r["unit_id"] or "", ""),
                        "quantity": r["quantity"],
                        "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()),
                        "source": r["source"],
                    }
                    for n, r in enumerate(rows)
                ],
                testid="cmp-evidence",
            )

    def upload(self, y: int) -> None:
        """A CSV (UTF-8 or GBK) or .xlsx file of evidence, with a progress bar and the rejected
        lines listed under it."""
        progress = ui.linear_progress(value=0, show_value=False).props('data-testid="cmp-progress"')
        progress.visible = False
        report = ui.column().classes("w-full")
        seen = {"rows": 0, "total": 0}

        def tick() -> None:  # on the event loop: the import reports from its worker thread
            progress.set_value(seen["rows"] / seen["total"] if seen["total"] else 0)

        async def on_upload(e: UploadEventArguments) -> None:
            data = await e.file.read()
            progress.visible = True
            timer = ui.timer(0.2, tick)
            try:
                out = await read(
                    self.c.import_evidence_file,
                    self.actor,
                    new_id(),  # each upload a command of its own: lines recorded are refused
                    year_=y,
                    data=data,
                    progress=lambda n, total: seen.update(rows=n, total=total),
                )
            except DomainError as err:
                ui.notify(error_text(err), type="negative", position="bottom", multi_line=True)
                return
            finally:
                timer.cancel()
                progress.set_value(1.0)
            notify_ok(t("cmp.imported", accepted=out["accepted"], rows=out["rows"]))
            report.clear()
            with report:
                if out["rejected"]:
                    card_title("cmp.rejected")
                    table(
                        [("line", "cmp.line"), ("code", "cmp.code"), ("message", "cmp.message")],
                        [
                            {
                                "id": r["line"],
                                "line": r["line"],
                                "code": r["code"],
                                "message": r["message"] if lang() == "en" else r["message_zh"],
                            }
                            for r in out["rejected"]
                        ],
                        testid="cmp-rejected",
                    )
                ui.button(t("cmp.refresh"), on_click=self.reload).props(
                    'flat no-caps color=primary data-testid="cmp-refresh"'
                )

        ui.upload(label=t("cmp.upload"), on_upload=on_upload, auto_upload=True).props(
            'accept=".csv,.xlsx" flat bordered data-testid="cmp-upload"'
        ).classes("w-full")
        hint("cmp.upload_hint")

    def open_record(self, entity_id: str, y: int, units: list[dict[str, Any]]) -> None:
        def fields() -> Submit:
            month = (
                ui.number(t("cmp.month"), value=1, min=1, max=12, format="%.0f")
                .props('outlined dense data-testid="f-month"')
                .classes("w-full")
            )
            kind = (
                ui.select({k: t("ek." + k) for k in KINDS}, value="fuel", label=t("cmp.kind"))
                .props('outlined dense data-testid="f-kind"')
                .classes("w-full")
            )
            item = text_field("cmp.item", "f-item", "bituminous_coal")
            unit = (
                ui.select(
                    {"": "—", **{u["id"]: u["code"] for u in units}}, value="", label=t("cmp.unit")
                )
                .props('outlined dense data-testid="f-unit"')
                .classes("w-full")
            )
            quantity = text_field("cmp.quantity", "f-quantity")
            ncv = text_field("cmp.ncv", "f-ncv")
            carbon = text_field("cmp.element_carbon", "f-element-carbon")

            async def submit(key: str) -> dict[str, Any] | None:
                params = {
                    k: (v.value or "").strip()
                    for k, v in (("ncv", ncv), ("element_carbon", carbon))
                    if (v.value or "").strip()
                }
                return await call(
                    self.c.record_months,
                    self.actor,
                    key,
                    entity_id=entity_id,
                    year_=y,
                    records=[
                        {
                            "kind": kind.value,
                            "month": whole(month.value),
                            "item": (item.value or "").strip() if kind.value in ITEM_KINDS else "",
                            "unit_id": unit.value or "",
                            "quantity": (quantity.value or "").strip(),
                            "params": params,
                        }
                    ],
                )

            return submit

        form_dialog(
            "cmp.add_record",
            "cmp-record-form",
            fields,
            self.reload,
            self.flashed(lambda r: t("cmp.recorded", n=r["recorded"])),
        )

    def open_submit(self, y: int) -> None:
        def fields() -> Submit:
            hint("cmp.submit_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.submit_report,
                    self.actor,
                    key,
                    entity_id=self.actor.entity_id or "",
                    year_=y,
                )

            return submit

        form_dialog(
            "cmp.submit_report",
            "cmp-submit-form",
            fields,
            self.reload,
            self.flashed(lambda r: t("cmp.submitted", emissions=tonnes(r["emissions"]))),
        )

    def open_surrender(self, y: int) -> None:
        def fields() -> Submit:
            unit_class = text_field("cmp.unit_class", "f-unit-class", f"CEA-{y}")
            quantity = (
                ui.number(t("cmp.quantity"), format="%.0f")
                .props('outlined dense data-testid="f-surrender-quantity"')
                .classes("w-full")
            )

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.c.surrender,
                    self.actor,
                    key,
                    entity_id=self.actor.entity_id or "",
                    year_=y,
                    unit_class=(unit_class.value or "").strip(),
                    quantity=whole(quantity.value),
                )

            return submit

        form_dialog(
            "cmp.surrender",
            "cmp-surrender-form",
            fields,
            self.reload,
            self.flashed(
                lambda r: t("cmp.surrendered_msg", status=status_badge(r["status"]["status"]))
            ),
        )

    # -------------------------------------------------------------- factor tables

    async def factors(self) -> None:
        rows = await read(self.c.factors)
        with ui.card().classes("w-full"):
            card_title("cmp.factors")
            hint("cmp.factors_hint")
            tbl = table(
                [
                    ("table", "cmp.table"),
                    ("key", "cmp.key"),
                    ("years", "cmp.years"),
                    ("value", "cmp.value"),
                    ("unit", "cmp.unit_of"),
                    ("certainty", "cmp.certainty"),
                    ("source", "cmp.source"),
                ],
                [
                    {
                        "id": n,
                        "table": f["table"],
                        "key": f["key"],
                        "years": f"{f['first']}–{f['last'] or ''}",
                        "value": f["value"],
                        "unit": f["unit"],
                        "certainty": t("cert." + f["certainty"]),
                        "flag": f["certainty"] == "unverified",
                        "source": f["source"],
                    }
                    for n, f in enumerate(rows)
                ],
                testid="cmp-factors",
            )
            tbl.props("wrap-cells")
            tbl.add_slot(
                "body-cell-certainty",
                '<q-td :props="props"><q-badge :color="props.row.flag ? \'orange-8\' : '
                '\'positive\'" :label="props.value" /></q-td>',
            )
