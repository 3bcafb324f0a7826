"""The console shell: services, the signed-in user, layout (header and drawer), login and logout,
and the one helper every page uses to call a service and show its error.

The actor lives in `app.storage.user` (server-side, keyed by a signed session cookie). Pages that
need a user call `signed_in()` and send everyone else to the login page.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from fastapi.responses import RedirectResponse
from nicegui import app, run, ui

from carbonhub.console.i18n import error_text, lang, set_lang, t
from carbonhub.core.auth import Actor, AuthService, Role
from carbonhub.core.db import Database
from carbonhub.core.errors import DomainError
from carbonhub.core.timefmt import shanghai_text
from carbonhub.registry.service import RegistryService

P = ParamSpec("P")
R = TypeVar("R")

SESSION_ACTOR: Final = "actor"
LOGIN_PATH: Final = "/login"
HOME_PATH: Final = "/"


@dataclass(frozen=True)
class Services:
    """What the pages call. Built once by `mount`."""

    db: Database
    auth: AuthService
    registry: RegistryService

    @classmethod
    def build(cls, db: Database) -> Services:
        return cls(db, AuthService(db), RegistryService(db))


# ------------------------------------------------------------------ session


def current_actor() -> Actor | None:
    raw = app.storage.user.get(SESSION_ACTOR)
    if not isinstance(raw, dict):
        return None
    try:
        return Actor(
            str(raw["user_id"]), str(raw["username"]), Role(raw["role"]), raw.get("entity_id")
        )
    except (KeyError, ValueError):
        return None


def sign_in(actor: Actor) -> None:
    app.storage.user[SESSION_ACTOR] = {
        "user_id": actor.user_id,
        "username": actor.username,
        "role": actor.role.value,
        "entity_id": actor.entity_id,
    }


def sign_out() -> None:
    app.storage.user.pop(SESSION_ACTOR, None)


def to_login() -> RedirectResponse:
    return RedirectResponse(LOGIN_PATH, status_code=303)


# ------------------------------------------------------------------ navigation


@dataclass(frozen=True)
class NavItem:
    path: str
    label_key: str
    icon: str
    visible: Callable[[Actor], bool]
    section_key: str = ""


NAV: list[NavItem] = []


def add_nav(
    path: str,
    label_key: str,
    icon: str,
    visible: Callable[[Actor], bool] | None = None,
    section_key: str = "",
) -> None:
    """Other contexts add their pages to the drawer with this."""
    if any(item.path == path for item in NAV):
        return
    NAV.append(NavItem(path, label_key, icon, visible or (lambda _a: True), section_key))


def everyone(_actor: Actor) -> bool:
    return True


def operators(actor: Actor) -> bool:
    return actor.is_operator


def holders_and_operators(actor: Actor) -> bool:
    return actor.is_operator or actor.entity_id is not None


# ------------------------------------------------------------------ layout


def lang_toggle() -> None:
    def switch() -> None:
        set_lang("zh" if lang() == "en" else "en")
        ui.navigate.reload()

    ui.button(t("lang.switch"), icon="translate", on_click=switch).props(
        'flat no-caps color=white data-testid="lang-toggle"'
    ).tooltip(t("lang.switch.tip"))


def _page_setup(title: str) -> None:
    ui.page_title(f"{title} · carbonhub")
    ui.colors(primary="#1b6b4a", secondary="#2f8f6a", accent="#c28a1e")
    ui.query("body").classes("bg-grey-1")
    ui.add_css(
        "body { font-family: 'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', "
        "'PingFang SC', 'Microsoft YaHei', sans-serif; }"
    )


@contextmanager
def frame(actor: Actor, title_key: str, active: str = "") -> Iterator[None]:
    """Header, drawer and a titled content column for a signed-in page."""
    title = t(title_key)
    _page_setup(title)
    with ui.header(elevated=True).classes("items-center bg-primary text-white q-px-md"):
        drawer_button = ui.button(icon="menu").props('flat round color=white aria-label="menu"')
        ui.label(t("app.name")).classes("text-h6 text-weight-bold")
        ui.label(t("app.tagline")).classes("text-caption gt-xs opacity-80")
        ui.space()
        ui.icon("person")
        ui.label(f"{actor.username} · {t('role.' + actor.role.value)}").props(
            'data-testid="current-user"'
        )
        lang_toggle()
        ui.button(t("logout"), icon="logout", on_click=lambda: ui.navigate.to("/logout")).props(
            'flat no-caps color=white data-testid="logout"'
        )
    drawer = ui.left_drawer(value=True, bordered=True).classes("bg-white q-pa-none")
    with drawer, ui.list().classes("w-full"):
        section = None
        for item in NAV:
            if not item.visible(actor):
                continue
            if item.section_key and item.section_key != section:
                section = item.section_key
                ui.item_label(t(section)).props("header").classes("text-weight-bold")
            testid = "nav-" + (item.path.strip("/").replace("/", "-") or "home")
            with (
                ui.item(on_click=lambda p=item.path: ui.navigate.to(p))
                .props(f'clickable data-testid="{testid}"')
                .classes("text-primary bg-green-1" if item.path == active else "")
            ):
                with ui.item_section().props("avatar"):
                    ui.icon(item.icon)
                with ui.item_section():
                    ui.item_label(t(item.label_key))
    drawer_button.on_click(drawer.toggle)
    with ui.column().classes("w-full q-pa-md gap-4").style("max-width: 1280px"):
        ui.label(title).classes("text-h5 text-weight-medium")
        yield


def register_shell(services: Services) -> None:
    """The login and logout pages."""

    @ui.page(LOGIN_PATH)
    def login_page() -> RedirectResponse | None:
        if current_actor() is not None:
            return RedirectResponse(HOME_PATH, status_code=303)
        _page_setup(t("login.title"))
        with ui.header().classes("items-center bg-primary text-white q-px-md"):
            ui.label(t("app.name")).classes("text-h6 text-weight-bold")
            ui.label(t("app.tagline")).classes("text-caption opacity-80")
            ui.space()
            lang_toggle()
        with ui.card().classes("absolute-center w-96 q-pa-lg"):
            ui.label(t("login.title")).classes("text-h5")
            username = (
                ui.input(t("login.username"))
                .props('outlined autofocus data-testid="login-username"')
                .classes("w-full")
            )
            password = (
                ui.input(t("login.password"), password=True)
                .props('outlined data-testid="login-password"')
                .classes("w-full")
            )
            error = ui.label("").classes("text-negative").props('data-testid="login-error"')
            error.visible = False

            async def submit() -> None:
                try:
                    actor = await run.io_bound(
                        services.auth.authenticate, username.value or "", password.value or ""
                    )
                except DomainError as err:
                    error.set_text(f"{t('login.failed')}: {error_text(err)}")
                    error.visible = True
                    ui.notify(error_text(err), type="negative", position="bottom")
                    password.set_value("")
                    return
                if actor is None:
                    return
                sign_in(actor)
                ui.navigate.to(HOME_PATH)

            password.on("keydown.enter", submit)
            ui.button(t("login.submit"), on_click=submit).props(
                'unelevated color=primary data-testid="login-submit"'
            ).classes("w-full")
        return None

    @ui.page("/logout")
    def logout_page() -> RedirectResponse:
        sign_out()
        return to_login()


# ------------------------------------------------------------------ calling services


async def call(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """Run a (blocking) service call off the event loop; a domain error becomes a notification
    in the current language and the result None."""
    try:
        return await run.io_bound(fn, *args, **kwargs)
    except DomainError as err:
        ui.notify(
            error_text(err),
            type="negative",
            position="bottom",
            multi_line=True,
            close_button=t("common.close"),
            timeout=8000,
        )
        return None


def notify_ok(message: str) -> None:
    ui.notify(message, type="positive", position="bottom", multi_line=True, timeout=8000)


# ------------------------------------------------------------------ formatting


def tonnes(value: object) -> str:
    return f"{int(value):,}" if isinstance(value, int) else "" if value is None else str(value)


def when(value: object) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return shanghai_text(value)
    except ValueError:
        return value


def whole(value: object) -> Any:
    """A number field's value as an int when it is whole; anything else goes to the service as
    it is, and the service says what is wrong with it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def short_id(value: object) -> str:
    return str(value)[-12:] if value else ""


def table(
    columns: list[tuple[str, str]],
    rows: list[dict[str, Any]],
    *,
    row_key: str = "id",
    testid: str = "",
) -> ui.table:
    """A plain Quasar table: (field, label key) columns, rows of strings, no pagination."""
    cols = [
        {"name": field, "label": t(label), "field": field, "align": "left", "sortable": True}
        for field, label in columns
    ]
    tbl = ui.table(columns=cols, rows=rows, row_key=row_key, pagination=0).classes("w-full")
    tbl.props(f'flat bordered dense no-data-label="{t("common.none")}" hide-pagination')
    if testid:
        tbl.props(f'data-testid="{testid}"')
    return tbl


def link_cell(table_: ui.table, column: str, prefix: str) -> None:
    """The column's value as a link to `prefix`/value."""
    table_.add_slot(
        f"body-cell-{column}",
        f'<q-td :props="props"><a class="text-primary text-weight-medium" '
        f":href=\"'{prefix}/' + props.value\">{{{{ props.value }}}}</a></q-td>",
    )


def button_cell(
    table_: ui.table, column: str, buttons: list[tuple[str, str, str]], *, show_if: str = ""
) -> None:
    """Buttons in a cell; each emits (event, row) to the table. buttons: (event, label, color).
    With `show_if`, the buttons show only in rows whose field of that name is true."""
    cond = f' v-if="props.row.{show_if}"' if show_if else ""
    parts = "".join(
        f'<q-btn dense unelevated no-caps class="q-mr-xs q-px-sm" color="{color}"{cond} '
        f'label="{html.escape(label)}" data-testid="{event}-btn" '
        f"@click=\"() => $parent.$emit('{event}', props.row)\" />"
        for event, label, color in buttons
    )
    table_.add_slot(
        f"body-cell-{column}", f'<q-td :props="props" class="text-no-wrap">{parts}</q-td>'
    )


def card_title(key: str) -> None:
    ui.label(t(key)).classes("text-subtitle1 text-weight-medium")


def hint(key: str) -> None:
    ui.label(t(key)).classes("text-body2 text-grey-8")


def forbidden() -> None:
    """What a page for operators shows anyone else."""
    ui.label(t("ops.forbidden")).classes("text-negative text-subtitle1").props(
        'data-testid="forbidden"'
    )
