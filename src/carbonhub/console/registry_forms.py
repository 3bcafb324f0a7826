"""Registry forms as dialogs. Each one takes a fresh idempotency key when it opens, so a double
click or a retry after a lost answer cannot submit twice; the service decides everything else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from nicegui import ui

from carbonhub.console.i18n import t
from carbonhub.console.shell import Services, call, notify_ok, tonnes, whole
from carbonhub.core.auth import Actor
from carbonhub.core.ids import new_id

Done = Callable[[], Awaitable[None]]
Submit = Callable[[str], Awaitable[dict[str, Any] | None]]

HOLD_KINDS = ("PLEDGE", "JUDICIAL_FREEZE", "EXCHANGE_RESERVATION")


def transfer_message(result: dict[str, Any]) -> str:
    return t(
        "result.transfer", op=t("op." + str(result["op"])), id=result["id"],
        status=t("tstatus." + str(result["status"])), quantity=tonnes(result["quantity"]),
    )


def _dialog(title_key: str, testid: str, fields: Callable[[], Submit], done: Done,
            message: Callable[[dict[str, Any]], str]) -> None:
    """Open a dialog: `fields()` builds the inputs and returns the submit function, which gets
    the key chosen now, at opening time."""
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
                button.enable()
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
    return ui.select(classes, value=classes[0] if classes else None, label=t("form.unit_class"),
                     new_value_mode="add-unique").props(
        'outlined dense data-testid="f-unit-class"'
    ).classes("w-full")


def _quantity() -> ui.number:
    return ui.number(t("form.quantity"), min=1, step=1, format="%d").props(
        'outlined dense data-testid="f-quantity"'
    ).classes("w-full")


def _text(label_key: str, testid: str, value: str = "") -> ui.input:
    return ui.input(t(label_key), value=value).props(f'outlined dense data-testid="{testid}"').classes(
        "w-full"
    )


def open_transfer(svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done) -> None:
    def fields() -> Submit:
        to = _text("form.to_account", "f-to-account")
        uc = _class_select(classes)
        qty = _quantity()
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.transfer, actor, key, from_account=account_id,
                to_account=(to.value or "").strip(), unit_class=uc.value, quantity=whole(qty.value),
                reason=reason.value or "",
            )

        return submit

    _dialog("form.transfer", "form-transfer", fields, done, transfer_message)


def open_surrender(svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done) -> None:
    def fields() -> Submit:
        uc = _class_select(classes)
        qty = _quantity()
        year = ui.number(t("form.compliance_year"), value=date.today().year - 1, step=1,
                         format="%d").props('outlined dense data-testid="f-year"').classes("w-full")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.surrender, actor, key, from_account=account_id, unit_class=uc.value,
                quantity=whole(qty.value), compliance_year=whole(year.value),
            )

        return submit

    _dialog("form.surrender", "form-surrender", fields, done, transfer_message)


def open_cancel(svc: Services, actor: Actor, account_id: str, classes: list[str], done: Done) -> None:
    def fields() -> Submit:
        uc = _class_select(classes)
        qty = _quantity()
        beneficiary = _text("form.beneficiary", "f-beneficiary")
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.cancel, actor, key, from_account=account_id, unit_class=uc.value,
                quantity=whole(qty.value), beneficiary=beneficiary.value or "",
                reason=reason.value or "",
            )

        return submit

    _dialog("form.cancel", "form-cancel", fields, done, transfer_message)


def open_hold(svc: Services, actor: Actor, account_id: str, classes: list[str],
              entities: dict[str, str], done: Done) -> None:
    def fields() -> Submit:
        kind = ui.select({k: t("hold." + k) for k in HOLD_KINDS}, value=HOLD_KINDS[0],
                         label=t("form.hold_kind")).props(
            'outlined dense data-testid="f-hold-kind"'
        ).classes("w-full")
        uc = _class_select(classes)
        qty = _quantity()
        lien = ui.select(entities, label=t("form.lien_holder"), clearable=True).props(
            'outlined dense data-testid="f-lien-holder"'
        ).classes("w-full")
        basis = _text("form.legal_basis", "f-legal-basis")
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.place_hold, actor, key, account_id=account_id, unit_class=uc.value,
                quantity=whole(qty.value), kind=kind.value, lien_holder=lien.value or None,
                legal_basis=basis.value or "", reason=reason.value or "",
            )

        return submit

    _dialog("form.hold", "form-hold", fields, done,
            lambda r: t("result.hold", id=r["id"], quantity=tonnes(r["quantity"])))


def open_release(svc: Services, actor: Actor, hold_id: str, done: Done) -> None:
    def fields() -> Submit:
        ui.label(hold_id).classes("text-caption")
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(svc.registry.release_hold, actor, key, hold_id, reason=reason.value or "")

        return submit

    _dialog("form.release", "form-release", fields, done, lambda r: t("result.released", id=r["id"]))


def open_issue(svc: Services, actor: Actor, done: Done) -> None:
    def fields() -> Submit:
        uc = _text("form.unit_class", "f-unit-class", "CEA-2024")
        qty = _quantity()
        origin = _text("form.origin", "f-origin", "420000")
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.issue, actor, key, unit_class=(uc.value or "").strip(),
                quantity=whole(qty.value), origin=origin.value or "", reason=reason.value or "",
            )

        return submit

    _dialog("form.issue", "form-issue", fields, done, transfer_message)


def open_allocate(svc: Services, actor: Actor, done: Done) -> None:
    def fields() -> Submit:
        to = _text("form.to_account", "f-to-account")
        uc = _text("form.unit_class", "f-unit-class", "CEA-2024")
        qty = _quantity()
        reason = _text("common.reason_optional", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(
                svc.registry.allocate, actor, key, to_account=(to.value or "").strip(),
                unit_class=(uc.value or "").strip(), quantity=whole(qty.value),
                reason=reason.value or "",
            )

        return submit

    _dialog("form.allocate", "form-allocate", fields, done, transfer_message)


def open_void(svc: Services, actor: Actor, transfer_id: str, done: Done) -> None:
    def fields() -> Submit:
        ui.label(transfer_id).classes("text-caption")
        reason = _text("common.reason", "f-reason")

        async def submit(key: str) -> dict[str, Any] | None:
            return await call(svc.registry.void, actor, key, transfer_id, reason=reason.value or "")

        return submit

    _dialog("appr.void", "form-void", fields, done, lambda r: t("appr.voided", id=r["id"]))
