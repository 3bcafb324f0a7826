"""Registry forms as dialogs. Each one takes a fresh idempotency key when it opens, so a double
click or a retry after a lost answer cannot submit twice; the service decides everything else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from nicegui import ui

from carbonhub.console.i18n import t
from carbonhub.console.shell import Services, call, notify_ok, short_id, tonnes, whole
from carbonhub.core.auth import Actor
from carbonhub.core.ids import new_id
from carbonhub.registry import model as m

Done = Callable[[], Awaitable[None]]
Submit = Callable[[str], Awaitable[dict[str, Any] | None]]

HOLD_KINDS = ("PLEDGE", "JUDICIAL_FREEZE", "EXCHANGE_RESERVATION")


def transfer_message(result: dict[str, Any]) -> str:
    return t(
        "result.transfer",
        op=t("op." + str(result["op"])),
        id=result["id"],
        status=t("tstatus." + str(result["status"])),
        quantity=tonnes(result["quantity"]),
    )


def form_dialog(
    title_key: str,
    testid: str,
    fields: Callable[[], Submit],
    done: Done,
    message: Callable[[dict[str, Any]], str],
) -> None:
    """Open a dialog: `fields()` builds the inputs and returns the submit function, which gets
    the key chosen now, at opening time (every console form: registry, exchange, settlement)."""
    key = new_id()
    busy = False
    with ui.dialog() as dialog, ui.card().classes("w-[28rem]").props(f'data-testid="{testid}"'):
        ui.label(t(title_key)).classes("text-h6")
        submit = fields()
        ui.label(f"{t('form.key')}: {key}").classes("text-caption text-grey-7")

        async def on_submit() -> None:
            nonlocal busy
            if busy:
                return
            busy = True
            button.disable()
            try:
                result = await submit(key)
            finally:
                busy = False
                if not button.is_deleted:
                    button.enable()
            if button.is_deleted:
                return  # the page went away while the command ran; it stands, nothing to show
            if result is None:
                return  # the error is on screen; the same key may be retried with corrected input
            dialog.close()
            notify_ok(message(result))
            await done()

        with ui.row().classes("w-full justify-end"):
            ui.button(t("common.cancel"), on_click=dialog.close).props("flat no-caps")
            button = ui.button(t("common.submit"), on_click=on_submit).props(
                f'unelevated no-caps color=primary data-testid="{testid}-submit"'
            )
    dialog.on("hide", dialog.delete)
    dialog.open()


def _class_select(classes: list[str]) -> ui.select:
    return (
        ui.select(
            classes,
            value=classes[0] if classes else None,
            label=t("form.unit_class"),
            new_value_mode="add-unique",
        )
        .props('outlined dense data-testid="f-unit-class"')
        .classes("w-full")
    )


def quantity_field(value: int | None = None) -> ui.number:
    return (
        ui.number(t("form.quantity"), value=value, min=1, step=1, format="%d")
        .props('outlined dense data-testid="f-quantity"')
        .classes("w-full")
    )


def text_field(label_key: str, testid: str, value: str = "") -> ui.input:
    return (
        ui.input(t(label_key), value=value)
        .props(f'outlined dense data-testid="{testid}"')
        .classes("w-full")
    )


def open_transfer(
    svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done
) -> None:
    def fields() -> Submit:
        to = text_field("form.to_account", "f-to-account")
        uc = _class_select(classes)
        qty = quantity_field()
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.transfer,
                actor,
                key,
                from_account=account_id,
                to_account=(to.value or "").strip(),
                unit_class=uc.value,
                quantity=whole(qty.value),
                reason=reason.value or "",
            )

        return submit

    form_dialog("form.transfer", "form-transfer", fields, done, transfer_message)


def open_surrender(
    svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done
) -> None:
    def fields() -> Submit:
        uc = _class_select(classes)
        qty = quantity_field()
        year = (
            ui.number(t("form.compliance_year"), value=date.today().year - 1, step=1, format="%d")
            .props('outlined dense data-testid="f-year"')
            .classes("w-full")
        )

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.surrender,
                actor,
                key,
                from_account=account_id,
                unit_class=uc.value,
                quantity=whole(qty.value),
                compliance_year=whole(year.value),
            )

        return submit

    form_dialog("form.surrender", "form-surrender", fields, done, transfer_message)


def open_cancel(
    svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done
) -> None:
    def fields() -> Submit:
        uc = _class_select(classes)
        qty = quantity_field()
        beneficiary = text_field("form.beneficiary", "f-beneficiary")
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.cancel,
                actor,
                key,
                from_account=account_id,
                unit_class=uc.value,
                quantity=whole(qty.value),
                beneficiary=beneficiary.value or "",
                reason=reason.value or "",
            )

        return submit

    form_dialog("form.cancel", "form-cancel", fields, done, transfer_message)


def open_hold(
    svc: Services,
    actor: Actor,
    account_id: str,
    classes: list[str],
    entities: dict[str, str],
    done: Done,
) -> None:
    def fields() -> Submit:
        kind = (
            ui.select(
                {k: t("hold." + k) for k in HOLD_KINDS},
                value=HOLD_KINDS[0],
                label=t("form.hold_kind"),
            )
            .props('outlined dense data-testid="f-hold-kind"')
            .classes("w-full")
        )
        uc = _class_select(classes)
        qty = quantity_field()
        lien = (
            ui.select(entities, label=t("form.lien_holder"), clearable=True)
            .props('outlined dense data-testid="f-lien-holder"')
            .classes("w-full")
        )
        basis = text_field("form.legal_basis", "f-legal-basis")
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.place_hold,
                actor,
                key,
                account_id=account_id,
                unit_class=uc.value,
                quantity=whole(qty.value),
                kind=kind.value,
                lien_holder=lien.value or None,
                legal_basis=basis.value or "",
                reason=reason.value or "",
            )

        return submit

    form_dialog(
        "form.hold",
        "form-hold",
        fields,
        done,
        lambda r: t("result.hold", id=r["id"], quantity=tonnes(r["quantity"])),
    )


def open_release(svc: Services, actor: Actor, hold_id: str, done: Done) -> None:
    def fields() -> Submit:
        ui.label(hold_id).classes("text-caption")
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.release_hold, actor, key, hold_id, reason=reason.value or ""
            )

        return submit

    form_dialog(
        "form.release", "form-release", fields, done, lambda r: t("result.released", id=r["id"])
    )


def open_issue(svc: Services, actor: Actor, done: Done) -> None:
    def fields() -> Submit:
        uc = text_field("form.unit_class", "f-unit-class", "CEA-2024")
        qty = quantity_field()
        origin = text_field("form.origin", "f-origin", "420000")
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.issue,
                actor,
                key,
                unit_class=(uc.value or "").strip(),
                quantity=whole(qty.value),
                origin=origin.value or "",
                reason=reason.value or "",
            )

        return submit

    form_dialog("form.issue", "form-issue", fields, done, transfer_message)


def open_allocate(svc: Services, actor: Actor, done: Done) -> None:
    def fields() -> Submit:
        to = text_field("form.to_account", "f-to-account")
        uc = text_field("form.unit_class", "f-unit-class", "CEA-2024")
        qty = quantity_field()
        reason = text_field("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.allocate,
                actor,
                key,
                to_account=(to.value or "").strip(),
                unit_class=(uc.value or "").strip(),
                quantity=whole(qty.value),
                reason=reason.value or "",
            )

        return submit

    form_dialog("form.allocate", "form-allocate", fields, done, transfer_message)


def open_void(svc: Services, actor: Actor, transfer_id: str, done: Done) -> None:
    def fields() -> Submit:
        ui.label(transfer_id).classes("text-caption")
        reason = text_field("common.reason", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(svc.registry.void, actor, key, transfer_id, reason=reason.value or "")

        return submit

    form_dialog("appr.void", "form-void", fields, done, lambda r: t("appr.voided", id=r["id"]))


# ------------------------------------------------------------------ accounts

OPENABLE_TYPES = ("HOLDING", "TRADING", "CUSTODY")


def open_request_account(svc: Services, actor: Actor, entities: dict[str, str], done: Done) -> None:
    """A holder asks for an account of its own; an operator may apply for any entity."""

    def fields() -> Submit:
        type_ = (
            ui.select(
                {k: t("type." + k) for k in OPENABLE_TYPES},
                value=OPENABLE_TYPES[0],
                label=t("form.account_type"),
            )
            .props('outlined dense data-testid="f-account-type"')
            .classes("w-full")
        )
        name = text_field("form.account_name", "f-account-name")
        entity: ui.select | None = None
        if actor.is_operator:
            entity = (
                ui.select(entities, label=t("form.entity"), clearable=True)
                .props('outlined dense data-testid="f-entity"')
                .classes("w-full")
            )

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.request_account,
                actor,
                key,
                type=type_.value,
                name=name.value or "",
                entity_id=(entity.value or None) if entity is not None else None,
            )

        return submit

    form_dialog(
        "form.request_account",
        "form-request",
        fields,
        done,
        lambda r: t("result.requested", id=r["id"]),
    )


def status_targets(current: str) -> list[str]:
    """The statuses an account may move to from `current` (the registry model's transitions)."""
    allowed = m.STATUS_TRANSITIONS.get(m.AccountStatus(current), frozenset())
    return [s.value for s in m.AccountStatus if s in allowed]


def open_status(svc: Services, actor: Actor, account_id: str, current: str, done: Done) -> None:
    def fields() -> Submit:
        ui.label(account_id).classes("text-caption text-mono")
        ui.label(t("form.current_status", status=t("status." + current))).classes("text-body2")
        targets = status_targets(current)
        status = (
            ui.select(
                {s: t("status." + s) for s in targets},
                value=targets[0] if targets else None,
                label=t("form.target_status"),
            )
            .props('outlined dense data-testid="f-status"')
            .classes("w-full")
        )
        if not targets:
            ui.label(t("form.status_final")).classes("text-negative text-caption")
        reason = text_field("common.reason", "f-reason")
        ui.label(t("form.status_hint")).classes("text-caption text-grey-8")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.change_status,
                actor,
                key,
                account_id,
                status=status.value or "",
                reason=reason.value or "",
            )

        return submit

    form_dialog(
        "form.status",
        "form-status",
        fields,
        done,
        lambda r: t("result.status", id=r["id"], status=t("status." + str(r["status"]))),
    )


def open_trust(svc: Services, actor: Actor, account_id: str, done: Done) -> None:
    def fields() -> Submit:
        trusted = text_field("form.trusted_account", "f-trusted-account")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.set_trusted,
                actor,
                key,
                account_id,
                (trusted.value or "").strip(),
                trusted=True,
            )

        return submit

    form_dialog(
        "form.trust", "form-trust", fields, done, lambda r: t("result.trusted", id=r["trusted_id"])
    )


# ------------------------------------------------------------------ operator tools


def open_market(svc: Services, actor: Actor, suspended_now: bool, done: Done) -> None:
    """Suspend the market when it is open, resume it when it is suspended."""

    def fields() -> Submit:
        reason = text_field("common.reason", "f-reason")
        ui.label(t("ops.market.hint")).classes("text-caption text-grey-8")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.set_market_suspended,
                actor,
                key,
                suspended=not suspended_now,
                reason=reason.value or "",
            )

        return submit

    form_dialog(
        "ops.resume" if suspended_now else "ops.suspend",
        "form-market",
        fields,
        done,
        lambda r: t("result.suspended" if r["market_suspended"] else "result.resumed"),
    )


def open_flag(svc: Services, actor: Actor, tainted: bool, done: Done) -> None:
    """Flag a serial range as tainted, or clear the flag on exactly that range."""

    def fields() -> Submit:
        serial = text_field("form.serial", "f-serial")
        reason = text_field("common.reason" if tainted else "common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.flag_serials,
                actor,
                key,
                serial=(serial.value or "").strip(),
                reason=reason.value or "",
                tainted=tainted,
            )

        return submit

    form_dialog(
        "form.flag" if tainted else "form.unflag",
        "form-flag" if tainted else "form-unflag",
        fields,
        done,
        lambda r: t("result.flagged" if r["tainted"] else "result.unflagged", serial=r["serial"]),
    )


def open_court(
    svc: Services,
    actor: Actor,
    done: Done,
    *,
    account_id: str = "",
    classes: list[str] | None = None,
    holds: list[dict[str, Any]] | None = None,
) -> None:
    """A court-ordered transfer; it may consume one of the sending account's active judicial
    freezes, offered once the sending account is known (`holds`, or read when it is entered)."""

    def fields() -> Submit:
        frm = text_field("form.from_account", "f-from-account", account_id)
        freeze = (
            ui.select({}, label=t("form.freeze"), clearable=True)
            .props('outlined dense data-testid="f-freeze"')
            .classes("w-full")
        )
        to = text_field("form.to_account", "f-to-account")
        uc = text_field("form.unit_class", "f-unit-class", classes[0] if classes else "")
        qty = quantity_field()
        basis = text_field("form.court_basis", "f-legal-basis")
        freezes: dict[str, dict[str, Any]] = {}
        loaded = ""

        def show(items: list[dict[str, Any]]) -> None:
            freezes.clear()
            freezes.update(
                {
                    h["id"]: h
                    for h in items
                    if h["kind"] == "JUDICIAL_FREEZE" and h["status"] == "ACTIVE"
                }
            )
            freeze.set_options(
                {
                    i: t(
                        "form.freeze_option",
                        id=short_id(i),
                        unit_class=h["unit_class"],
                        quantity=tonnes(h["quantity"]),
                    )
                    for i, h in freezes.items()
                },
                value=None,
            )

        async def load() -> None:
            nonlocal loaded
            acc = (frm.value or "").strip()
            if acc == loaded:
                return
            loaded = acc
            items = await call(svc.registry.holds_list, actor, account_id=acc) if acc else None
            show(items or [])

        def pick() -> None:
            h = freezes.get(freeze.value or "")
            if h is not None:
                uc.set_value(h["unit_class"])
                qty.set_value(h["quantity"])

        freeze.on_value_change(pick)
        frm.on("blur", load)
        frm.on("keydown.enter", load)
        if holds is not None:
            loaded = account_id
            show(holds)

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.court_transfer,
                actor,
                key,
                from_account=(frm.value or "").strip(),
                to_account=(to.value or "").strip(),
                unit_class=(uc.value or "").strip(),
                quantity=whole(qty.value),
                legal_basis=basis.value or "",
                hold_id=freeze.value or None,
            )

        return submit

    form_dialog("form.court", "form-court", fields, done, transfer_message)


def open_reverse(svc: Services, actor: Actor, done: Done, transfer_id: str = "") -> None:
    def fields() -> Submit:
        tid = text_field("form.transfer_id", "f-transfer-id", transfer_id)
        reason = text_field("common.reason", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.reverse,
                actor,
                key,
                transfer_id=(tid.value or "").strip(),
                reason=reason.value or "",
            )

        return submit

    form_dialog("form.reverse", "form-reverse", fields, done, transfer_message)
