"""Exchange pages: the market overview, one page per instrument (candles, depth, trades, order
entry, my orders and fills), block deals and one-sided auctions.

Pages read through ExchangeService queries and act through its commands, on the service the app
itself serves (`Market.of`), so the console shares the API's books in memory and its order
writer. Instrument pages poll the books every two seconds (`ui.timer`) and redraw only what
changed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, ParamSpec, TypeVar

import fastapi
from fastapi.responses import RedirectResponse
from nicegui import run, ui

from carbonhub.console.i18n import error_text, t
from carbonhub.console.registry_forms import Submit, form_dialog, quantity_field, text_field
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
    notify_ok,
    short_id,
    table,
    to_login,
    tonnes,
    when,
    whole,
)
from carbonhub.core.auth import Actor
from carbonhub.core.errors import DomainError
from carbonhub.core.ids import new_id
from carbonhub.core.quantities import fen_from_yuan, yuan_from_fen
from carbonhub.core.timefmt import SHANGHAI, iso
from carbonhub.exchange import model as xm
from carbonhub.exchange.service import TRADER_ROLES, ExchangeService
from carbonhub.settlement.service import CashService, SettlementService

P = ParamSpec("P")
R = TypeVar("R")

MARKET_PATH: Final = "/market"
DEALS_PATH: Final = "/market/deals"
AUCTIONS_PATH: Final = "/market/auctions"
REFRESH_S: Final = 2.0
LEVELS: Final = 5
MINE: Final = 100  # a trader's orders and fills of the day on an instrument page
MODE_ORDER: Final = ("LISTING", "CONTINUOUS", "BLOCK", "AUCTION")
BOOK_MODES: Final = tuple(mode.value for mode in xm.BOOK_MODES)
UP, DOWN = "#c62828", "#2e7d32"  # China's convention: red rises, green falls
TOTAL_ROW: Final = (  # a table row; the one whose `total` is true in bold
    '<q-tr :props="props" :class="{ \'text-weight-bold bg-grey-2\': props.row.total }">'
    '<q-td v-for="c in props.cols" :key="c.name" :props="props">{{ c.value }}</q-td></q-tr>'
)


@dataclass(frozen=True)
class Market:
    """The exchange, cash and settlement services the pages call."""

    exchange: ExchangeService
    cash: CashService
    settlement: SettlementService

    @classmethod
    def of(cls, app: fastapi.FastAPI, svc: Services) -> Market:
        """The services `create_app` put on `app.state`, so the console trades on the same books
        and through the same order writer as the API; an app without them gets its own."""
        state = app.state
        cash: CashService = getattr(state, "cash", None) or CashService(svc.db)
        exchange: ExchangeService = getattr(state, "exchange", None) or ExchangeService(
            svc.db, svc.registry, cash
        )
        settlement: SettlementService = getattr(state, "settlement", None) or SettlementService(
            svc.db, svc.registry, cash, exchange
        )
        return cls(exchange, cash, settlement)


# ------------------------------------------------------------------ who sees what


def traders(actor: Actor) -> bool:
    return actor.role in TRADER_ROLES


def traders_and_operators(actor: Actor) -> bool:
    return actor.is_operator or actor.role in TRADER_ROLES


# ------------------------------------------------------------------ formatting and helpers


def yuan(value: object) -> str:
    """A yuan amount as the services give it ('1234567.80') with thousands separators."""
    if value is None or value == "":
        return ""
    text = str(value)
    sign = "-" if text.startswith("-") else ""
    whole_part, _, cents = text.lstrip("-").partition(".")
    try:
        return f"{sign}{int(whole_part):,}" + (f".{cents}" if cents else "")
    except ValueError:
        return text


def yuan_total(amounts: Iterable[str], times: int = 1) -> str:
    """Yuan amounts (the services' text) added exactly, in fen, and multiplied by `times`."""
    return yuan(yuan_from_fen(sum(fen_from_yuan(a) for a in amounts) * times))


def trade_ref(trade_id: str) -> str:
    """A trade id short enough for a table: a book's trade by its number in the book, a block
    or auction trade by the end of its deal's or auction's id (and its award number)."""
    parts = trade_id.split(":")
    if len(parts) == 3 and parts[2].isdigit():
        return f"#{int(parts[2])}"
    if len(parts) >= 3:
        return "#" + "-".join([parts[2][-8:], *parts[3:]])
    return short_id(trade_id)


def signed(value: object, suffix: str = "") -> str:
    text = str(value or "0")
    return (text if text.startswith("-") else "+" + text) + suffix


def tone(price: object, reference: object) -> str:
    """Text colour of a price against the previous close."""
    try:
        p, r = float(str(price)), float(str(reference))
    except ValueError:
        return ""
    return "text-red-8" if p > r else "text-green-8" if p < r else ""


def today(svc: Services) -> str:
    """The trading day now, by the services' clock (tests move it)."""
    return xm.trading_day(svc.db.clock()).isoformat()


def clock_time(value: object) -> str:
    return when(value)[11:]


def book_modes(inst: dict[str, Any]) -> list[str]:
    return [mode for mode in MODE_ORDER if mode in inst["rules"] and mode in BOOK_MODES]


def order_status(o: dict[str, Any]) -> str:
    if o["status"] == "OPEN" and o["filled"]:
        return t("ost.PARTIAL")
    text = t("ost." + o["status"])
    return f"{text}（{t('why.' + o['reason'])}）" if o.get("reason") else text


def rules_text(inst: dict[str, Any], mode: str) -> list[tuple[str, str]]:
    """(label key, value) lines describing a mode's rules: band, previous close, sizes, hours."""
    r = inst["rules"][mode]
    low, high = inst["bands"][mode]
    sizes = f"{tonnes(r['min_qty'])} – " + (
        tonnes(r["max_qty"]) if r["max_qty"] is not None else t("mkt.no_limit")
    )
    return [
        ("mkt.prev_close", inst["prev_close"]),
        ("mkt.band", f"±{r['band_bps'] / 100:g}% · {low} – {high}"),
        ("mkt.sizes", f"{sizes} {t('common.tonnes')}"),
        ("mkt.sessions", ", ".join(f"{a}–{b}" for a, b in r["sessions"])),
        ("mkt.fee", f"{r['fee_bps'] / 100:g}%"),
    ]


def show_rules(inst: dict[str, Any], mode: str, testid: str) -> None:
    with (
        ui.grid(columns="auto 1fr")
        .classes("gap-x-4 gap-y-1 text-body2")
        .props(f'data-testid="{testid}"')
    ):
        for key, value in rules_text(inst, mode):
            ui.label(t(key)).classes("text-grey-7")
            ui.label(value).props(f'data-testid="{testid}-{key.split(".")[-1]}"')


async def quiet(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """A read for a timer: a domain error is not news every two seconds, just no data."""
    try:
        return await run.io_bound(fn, *args, **kwargs)
    except DomainError:
        return None


def error_label(err: DomainError, testid: str) -> None:
    ui.label(error_text(err)).classes("text-negative text-subtitle1").props(
        f'data-testid="{testid}"'
    )


def members_by_id(mk: Market) -> dict[str, str]:
    return {m["entity_id"]: m["name"] for m in mk.exchange.members()}


def side_toggle(value: str = "B", labels: tuple[str, str] = ("side.B", "side.S")) -> ui.toggle:
    return ui.toggle({"B": t(labels[0]), "S": t(labels[1])}, value=value).props(
        'no-caps spread toggle-color=primary data-testid="f-side"'
    )


def price_text(field: ui.input) -> str:
    """The price as typed: the service checks the tick and the band and says what is wrong."""
    return str(field.value or "").strip()


# ------------------------------------------------------------------ charts


def candle_options(
    bars: list[dict[str, Any]], *, minute: bool, name: str, volume_name: str
) -> dict[str, Any]:
    """Candles (open, close, low, high) over volume bars, the two grids sharing one x axis."""
    x = [str(b["t"])[11:] if minute else str(b["t"]) for b in bars]
    candles: list[list[float]] = []
    volumes: list[dict[str, Any]] = []
    for b in bars:
        close = float(b["c"])
        o, h, lo = (float(b[k]) if b.get(k) is not None else close for k in ("o", "h", "l"))
        candles.append([o, close, lo, h])
        volumes.append({"value": b["v"], "itemStyle": {"color": UP if close >= o else DOWN}})
    return {
        "animation": False,
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "cross"}},
        "axisPointer": {"link": [{"xAxisIndex": "all"}]},
        "grid": [
            {"left": 64, "right": 16, "top": 16, "height": "58%"},
            {"left": 64, "right": 16, "top": "78%", "height": "14%"},
        ],
        "xAxis": [
            {"type": "category", "data": x, "boundaryGap": True, "axisLabel": {"show": False}},
            {"type": "category", "data": x, "boundaryGap": True, "gridIndex": 1},
        ],
        "yAxis": [
            {"type": "value", "scale": True, "splitNumber": 4},
            {"type": "value", "gridIndex": 1, "splitNumber": 2},
        ],
        "dataZoom": [{"type": "inside", "xAxisIndex": [0, 1]}],
        "series": [
            {
                "type": "candlestick",
                "name": name,
                "data": candles,
                "itemStyle": {
                    "color": UP,
                    "color0": DOWN,
                    "borderColor": UP,
                    "borderColor0": DOWN,
                },
            },
            {
                "type": "bar",
                "name": volume_name,
                "data": volumes,
                "xAxisIndex": 1,
                "yAxisIndex": 1,
            },
        ],
    }


# ------------------------------------------------------------------ pages


def register_exchange(svc: Services, mk: Market) -> None:
    add_nav(MARKET_PATH, "nav.market", "candlestick_chart", everyone, "nav.section.exchange")
    add_nav(DEALS_PATH, "nav.deals", "handshake", traders_and_operators, "nav.section.exchange")
    add_nav(AUCTIONS_PATH, "nav.auctions", "gavel", traders_and_operators, "nav.section.exchange")

    @ui.page(MARKET_PATH)
    async def overview() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "mkt.title", MARKET_PATH):
            await _overview(svc, mk)
        return None

    # the fixed paths first: /market/{code} would take them otherwise
    @ui.page(DEALS_PATH)
    async def deals_page() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "deal.title", DEALS_PATH):
            await DealsView(svc, mk, actor).build()
        return None

    @ui.page(AUCTIONS_PATH)
    async def auctions_page() -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "auc.title", AUCTIONS_PATH):
            await AuctionsView(svc, mk, actor).build()
        return None

    @ui.page(MARKET_PATH + "/{code}")
    async def instrument_page(code: str) -> RedirectResponse | None:
        actor = current_actor()
        if actor is None:
            return to_login()
        with frame(actor, "mkt.instrument", MARKET_PATH):
            await InstrumentView(svc, mk, actor, code).build()
        return None


# ------------------------------------------------------------------ overview


async def _overview(svc: Services, mk: Market) -> None:
    ex = mk.exchange
    instruments: list[dict[str, Any]] = await call(ex.instruments) or []
    levels: list[dict[str, Any]] = await call(ex.index) or []
    stats: dict[str, Any] = await call(ex.statistics) or {}
    quotes: list[dict[str, Any]] = []
    for inst in instruments:
        q = await call(ex.quote_summary, inst["code"])
        if q is not None:
            quotes.append(dict(q, name=inst["name"], status=inst["status"], rules=inst["rules"]))

    with ui.row().classes("w-full items-center gap-2"):
        ui.label(t("mkt.day", day=today(svc))).classes("text-subtitle1").props(
            'data-testid="market-day"'
        )
        ui.space()
        if levels:
            last = levels[-1]
            ui.label(t("mkt.index") + ":").classes("text-subtitle2")
            ui.badge(last["level"], color="primary").classes("text-body1 q-pa-sm").props(
                'data-testid="index-level"'
            )
            ui.label(f"{last['day']} · {t('mkt.index_price')} {last['price']}").classes(
                "text-caption text-grey-8"
            )

    with ui.card().classes("w-full"):
        card_title("mkt.quotes")
        rows = []
        for q in quotes:
            volume = sum(int(v) for v in q["volume"].values())
            rows.append(
                {
                    "code": q["instrument"],
                    "name": q["name"],
                    "modes": " · ".join(t("mode." + m) for m in MODE_ORDER if m in q["rules"]),
                    "last": q["last"] or "—",
                    "close": q["close"],
                    "prev_close": q["prev_close"],
                    "change": signed(q["change"]),
                    "change_pct": signed(q["change_pct"], "%"),
                    "volume": tonnes(volume),
                    "value": yuan_total(q["value"].values()),
                    "suspended": t("istatus.SUSPENDED") if q["status"] != "ACTIVE" else "",
                    "tone": tone(q["close"], q["prev_close"]),
                }
            )
        tbl = table(
            [
                ("code", "mkt.code"),
                ("modes", "mkt.modes"),
                ("last", "mkt.last"),
                ("close", "mkt.close"),
                ("change", "mkt.change"),
                ("change_pct", "mkt.change_pct"),
                ("prev_close", "mkt.prev_close"),
                ("volume", "mkt.volume"),
                ("value", "mkt.value"),
            ],
            rows,
            row_key="code",
            testid="quotes-table",
        )
        tbl.add_slot(
            "body-cell-code",
            f'<q-td :props="props"><a class="text-primary text-weight-medium" '
            f":href=\"'{MARKET_PATH}/' + props.value\">{{{{ props.value }}}}</a>"
            '<div class="text-caption text-grey-8">{{ props.row.name }} '
            '<span class="text-negative">{{ props.row.suspended }}</span></div></q-td>',
        )
        for column in ("change", "change_pct", "close"):
            tbl.add_slot(
                f"body-cell-{column}",
                '<q-td :props="props" :class="props.row.tone">{{ props.value }}</q-td>',
            )

    with ui.card().classes("w-full"):
        card_title("mkt.index_chart")
        hint("mkt.index_hint")
        ui.echart(
            {
                "animation": False,
                "tooltip": {"trigger": "axis"},
                "grid": {"left": 64, "right": 24, "top": 24, "bottom": 30},
                "xAxis": {"type": "category", "data": [r["day"] for r in levels]},
                "yAxis": {"type": "value", "scale": True, "name": t("mkt.index_level")},
                "series": [
                    {
                        "type": "line",
                        "name": t("mkt.index"),
                        "data": [float(r["level"]) for r in levels],
                        "smooth": False,
                        "symbolSize": 6,
                        "lineStyle": {"width": 2},
                        "areaStyle": {"opacity": 0.08},
                    }
                ],
            }
        ).classes("w-full h-72").props('data-testid="index-chart"')

    with ui.card().classes("w-full"):
        card_title("mkt.statistics")
        hint("mkt.statistics_hint")
        _statistics_table(stats)


def _statistics_table(stats: dict[str, Any]) -> None:
    periods = ("today", "year", "cumulative")
    modes = [m for m in MODE_ORDER if any(m in stats.get(p, {}).get("modes", {}) for p in periods)]
    rows = []
    for mode in [*modes, "TOTAL"]:
        row: dict[str, Any] = {
            "mode": t("mkt.total") if mode == "TOTAL" else t("mode." + mode),
            "key": mode,
            "total": mode == "TOTAL",
        }
        for p in periods:
            block = stats.get(p, {})
            figs = block.get("total", {}) if mode == "TOTAL" else block.get("modes", {}).get(mode)
            figs = figs or {"volume": 0, "value": "0.00", "average": None}
            row[f"{p}_volume"] = tonnes(int(figs["volume"]))
            row[f"{p}_value"] = yuan(figs["value"])
        rows.append(row)
    columns = [("mode", "mkt.mode")]
    for p in periods:
        columns += [
            (f"{p}_volume", f"mkt.{p}_volume"),
            (f"{p}_value", f"mkt.{p}_value"),
        ]
    tbl = table(columns, rows, row_key="key", testid="statistics-table")
    tbl.add_slot("body", TOTAL_ROW)


# ------------------------------------------------------------------ one instrument


class InstrumentView:
    """One instrument: quote, candles (daily or 1-minute), five levels per book mode, the
    listings a taker may choose from, recent trades; for traders the order form with the mode's
    band and previous close, and their orders and fills with cancel buttons. A timer polls."""

    def __init__(self, svc: Services, mk: Market, actor: Actor, code: str) -> None:
        self.svc = svc
        self.ex = mk.exchange
        self.actor = actor
        self.code = code
        self.inst: dict[str, Any] = {}
        self.modes: list[str] = []
        self.member: dict[str, Any] | None = None
        self.interval = "1d"
        self.data: dict[str, Any] = {}
        self.order_key = new_id()
        self.cancel_keys: dict[str, str] = {}
        self.busy = False
        self.quote_labels: dict[str, ui.label] = {}
        self.depth_tables: dict[str, ui.table] = {}
        self.listings_table: ui.table | None = None
        self.trades_table: ui.table | None = None
        self.orders_table: ui.table | None = None
        self.fills_table: ui.table | None = None
        self.chart: ui.echart | None = None
        self.form_mode = ""

    @property
    def trader(self) -> bool:
        return self.actor.role in TRADER_ROLES and self.member is not None

    # -------------------------------------------------------------- data

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, read in one go off the event loop."""
        ex, code, actor = self.ex, self.code, self.actor
        out: dict[str, Any] = {
            "quote": ex.quote_summary(code),
            "depth": {mode: ex.depth(code, mode, LEVELS) for mode in self.modes},
            "trades": ex.trades(actor, instrument=code, limit=20),
            "bars": ex.bars(code, interval=self.interval),
        }
        if "LISTING" in self.modes:
            out["listings"] = ex.listings(code, "S", LEVELS) + ex.listings(code, "B", LEVELS)
        if self.trader:  # today's orders (and any still open) and today's fills
            day = out["quote"]["day"]
            out["orders"] = [
                o
                for o in ex.orders(actor, instrument=code, limit=MINE)
                if o["trading_day"] == day or o["status"] == "OPEN"
            ]
            out["fills"] = ex.trades(actor, instrument=code, day=day, mine=True, limit=MINE)
        return out

    async def load(self) -> bool:
        data = await quiet(self.snapshot)
        if data is None:
            return False
        self.data = data
        return True

    # -------------------------------------------------------------- building

    async def build(self) -> None:
        ex = self.ex
        try:
            inst = await run.io_bound(ex.instrument, self.code)
        except DomainError as err:
            ui.link(t("mkt.back"), MARKET_PATH).classes("text-primary")
            error_label(err, "instrument-error")
            return
        if inst is None:
            return
        self.inst = inst
        self.modes = book_modes(inst)
        self.form_mode = self.modes[0] if self.modes else ""
        if self.actor.role in TRADER_ROLES:
            self.member = await quiet(ex.member_of, self.actor)
        ui.link(t("mkt.back"), MARKET_PATH).classes("text-primary")
        try:
            data = await run.io_bound(self.snapshot)
        except DomainError as err:
            error_label(err, "instrument-error")
            return
        if data is None:
            return
        self.data = data
        self._header()
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-5 gap-4 w-full"):
            with ui.card().classes("lg:col-span-3"):
                self._chart()
            with ui.card().classes("lg:col-span-2"):
                self._depth()
        with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-5 gap-4 w-full"):
            if self.actor.role in TRADER_ROLES:
                with ui.card().classes("lg:col-span-2").props('data-testid="order-card"'):
                    self._order_form()
            elif self.modes:
                with ui.card().classes("lg:col-span-2"):
                    card_title("mkt.rules")
                    show_rules(self.inst, self.modes[0], "rules")
            with ui.card().classes("lg:col-span-3"):
                self._listings_and_trades()
        if self.trader:
            self._mine()
        self.show()
        ui.timer(REFRESH_S, self.refresh, immediate=False)

    def _header(self) -> None:
        inst = self.inst
        with ui.card().classes("w-full"):
            with ui.row().classes("items-center gap-3"):
                ui.label(inst["code"]).classes("text-h5 text-mono text-weight-bold").props(
                    'data-testid="instrument-code"'
                )
                ui.label(inst["name"]).classes("text-subtitle1")
                ui.badge(
                    t("istatus." + inst["status"]),
                    color="positive" if inst["status"] == "ACTIVE" else "negative",
                )
                for mode in MODE_ORDER:
                    if mode in inst["rules"]:
                        ui.badge(t("mode." + mode), color="primary").props("outline")
                ui.label(f"{t('form.unit_class')}: {inst['unit_class']}").classes(
                    "text-caption text-grey-8"
                )
            with ui.row().classes("items-end gap-8"):
                with ui.column().classes("gap-0"):
                    ui.label(t("mkt.last")).classes("text-caption text-grey-7")
                    self.quote_labels["last"] = (
                        ui.label().classes("text-h4 text-weight-bold").props('data-testid="q-last"')
                    )
                with ui.column().classes("gap-0"):
                    ui.label(t("mkt.change")).classes("text-caption text-grey-7")
                    self.quote_labels["change"] = (
                        ui.label().classes("text-h6").props('data-testid="q-change"')
                    )
                for key in ("open", "high", "low", "close", "prev_close", "volume", "value"):
                    with ui.column().classes("gap-0"):
                        ui.label(t("mkt." + key)).classes("text-caption text-grey-7")
                        self.quote_labels[key] = (
                            ui.label().classes("text-subtitle1").props(f'data-testid="q-{key}"')
                        )

    def _chart(self) -> None:
        with ui.row().classes("w-full items-center"):
            card_title("mkt.chart")
            ui.space()
            ui.toggle(
                {"1d": t("mkt.daily"), "1m": t("mkt.minute")},
                value=self.interval,
                on_change=lambda e: self.switch_interval(str(e.value)),
            ).props('dense no-caps toggle-color=primary data-testid="chart-interval"')
        self.chart = (
            ui.echart(self.chart_options()).classes("w-full h-96").props('data-testid="k-chart"')
        )

    def _depth(self) -> None:
        for mode in self.modes:
            card_title("mkt.depth")
            ui.label(t("mode." + mode)).classes("text-caption text-grey-8")
            tbl = table(
                [
                    ("level", "mkt.level"),
                    ("price", "mkt.depth_price"),
                    ("quantity", "mkt.depth_quantity"),
                    ("orders", "mkt.orders"),
                ],
                [],
                row_key="level",
                testid=f"depth-{mode.lower()}",
            )
            tbl.add_slot(
                "body",
                "<q-tr :props=\"props\" :class=\"props.row.ask ? 'bg-green-1' : 'bg-red-1'\">"
                '<q-td v-for="c in props.cols" :key="c.name" :props="props" '
                ":class=\"c.name === 'price' ? props.row.tone : ''\">{{ c.value }}</q-td>"
                "</q-tr>",
            )
            self.depth_tables[mode] = tbl
        if not self.modes:
            hint("mkt.no_book")

    def _order_form(self) -> None:
        card_title("ord.title")
        if self.member is None:
            ui.label(t("ord.not_member")).classes("text-negative").props('data-testid="not-member"')
            return
        if not self.modes:
            hint("mkt.no_book")
            return
        ui.label(t("ord.account", account=self.member["account_id"])).classes(
            "text-caption text-grey-8"
        )
        if len(self.modes) > 1:
            ui.toggle(
                {mode: t("mode." + mode) for mode in self.modes},
                value=self.form_mode,
                on_change=lambda e: self._switch_form(str(e.value)),
            ).props('dense no-caps data-testid="f-mode"')
        self.form()

    def _switch_form(self, mode: str) -> None:
        self.form_mode = mode
        self.order_key = new_id()
        self.form.refresh()

    @ui.refreshable_method
    def form(self) -> None:
        mode = self.form_mode
        listing = mode == "LISTING"
        hint("ord.listing_hint" if listing else "ord.continuous_hint")
        side = side_toggle()
        price = (
            ui.input(t("mkt.price"), value=self.inst["prev_close"])
            .props('outlined dense data-testid="f-price"')
            .classes("w-full")
        )
        qty = quantity_field()
        tif: ui.select | None = None
        if not listing:
            tif = (
                ui.select(
                    {k: t("tif." + k) for k in ("LIMIT", "IOC", "FOK")},
                    value="LIMIT",
                    label=t("ord.tif"),
                )
                .props('outlined dense data-testid="f-tif"')
                .classes("w-full")
            )
        show_rules(self.inst, mode, "order-rules")

        async def submit() -> None:
            if self.busy:
                return
            self.busy = True
            button.disable()
            try:
                result = await call(
                    self.ex.place_order,
                    self.actor,
                    self.order_key,
                    instrument=self.code,
                    mode=mode,
                    side=str(side.value),
                    price=price_text(price),
                    quantity=whole(qty.value),
                    tif=str(tif.value) if tif is not None else "LIMIT",
                )
            finally:
                self.busy = False
                if not button.is_deleted:
                    button.enable()
            if button.is_deleted:
                return  # the page went away while the order ran; it stands, nothing to show
            if result is None:
                return  # the error is on screen; the same key may be retried, corrected
            self.order_key = new_id()
            notify_ok(
                t(
                    "ord.placed",
                    id=short_id(result["id"]),
                    status=order_status(result),
                    filled=tonnes(result["filled"]),
                )
            )
            await self.refresh()

        button = (
            ui.button(t("ord.post" if listing else "ord.submit"), icon="send", on_click=submit)
            .props('unelevated no-caps color=primary data-testid="order-submit"')
            .classes("w-full")
        )

    def _listings_and_trades(self) -> None:
        if "LISTING" in self.modes:
            card_title("mkt.listings")
            hint("mkt.listings_hint")
            columns = [
                ("side", "mkt.listing_side"),
                ("price", "mkt.price"),
                ("open", "mkt.open_qty"),
                ("short", "col.id"),
            ]
            if self.trader:
                columns.append(("actions", "common.actions"))
            self.listings_table = table(columns, [], testid="listings-table")
            if self.trader:
                button_cell(
                    self.listings_table,
                    "actions",
                    [("take", t("mkt.take"), "primary")],
                    show_if="takeable",
                )
                self.listings_table.on("take", lambda e: self.open_take(e.args))
        card_title("mkt.trades")
        self.trades_table = table(
            [
                ("time", "col.time"),
                ("mode", "mkt.mode"),
                ("price", "mkt.price"),
                ("quantity", "col.quantity"),
                ("taker", "mkt.taker"),
            ],
            [],
            testid="trades-table",
        )

    def _mine(self) -> None:
        with ui.card().classes("w-full"):
            card_title("mkt.my_orders")
            hint("mkt.my_orders_hint")
            self.orders_table = table(
                [
                    ("time", "col.time"),
                    ("side", "mkt.side"),
                    ("price", "mkt.price"),
                    ("quantity", "col.quantity"),
                    ("filled", "mkt.filled"),
                    ("open", "mkt.open_qty"),
                    ("status", "col.status"),
                    ("tif", "ord.tif"),
                    ("short", "col.id"),
                    ("actions", "common.actions"),
                ],
                [],
                testid="my-orders",
            )
            button_cell(
                self.orders_table,
                "actions",
                [("cancel", t("ord.cancel"), "negative")],
                show_if="cancellable",
            )
            self.orders_table.on("cancel", lambda e: self.cancel(str(e.args["id"])))
        with ui.card().classes("w-full"):
            card_title("mkt.my_fills")
            self.fills_table = table(
                [
                    ("time", "col.time"),
                    ("mode", "mkt.mode"),
                    ("side", "mkt.side"),
                    ("price", "mkt.price"),
                    ("quantity", "col.quantity"),
                    ("value", "mkt.value"),
                    ("fee", "mkt.fee_paid"),
                ],
                [],
                testid="my-fills",
            )

    # -------------------------------------------------------------- showing the data

    def chart_options(self) -> dict[str, Any]:
        bars = list(self.data.get("bars", []))
        if self.interval == "1d":
            q = self.data.get("quote")
            if q and q["open"] is not None and (not bars or bars[-1]["t"] != q["day"]):
                bars.append(  # today's candle, provisional until the day is published
                    {
                        "t": q["day"],
                        "o": q["open"],
                        "h": q["high"],
                        "l": q["low"],
                        "c": q["close"],
                        "v": sum(int(v) for v in q["volume"].values()),
                    }
                )
        return candle_options(
            bars,
            minute=self.interval == "1m",
            name=t("mkt.daily" if self.interval == "1d" else "mkt.minute"),
            volume_name=t("mkt.volume"),
        )

    async def switch_interval(self, interval: str) -> None:
        self.interval = interval
        await self.refresh()

    def show(self) -> None:
        d = self.data
        self._show_quote(d["quote"])
        prev = d["quote"]["prev_close"]
        for mode, tbl in self.depth_tables.items():
            _set_rows(tbl, _depth_rows(d["depth"][mode], prev))
        if self.listings_table is not None:
            mine = {o["id"] for o in d.get("orders", []) if o["status"] == "OPEN"}
            _set_rows(
                self.listings_table,
                [
                    {
                        "id": row["id"],
                        "short": short_id(row["id"]),
                        "side": t("mkt.listing." + row["side"]),
                        "side_code": row["side"],
                        "price": row["price"],
                        "open": tonnes(row["open"]),
                        "open_qty": row["open"],
                        "takeable": row["id"] not in mine,
                    }
                    for row in d.get("listings", [])
                ],
            )
        if self.trades_table is not None:
            _set_rows(
                self.trades_table,
                [
                    {
                        "id": tr["id"],
                        "time": _trade_time(tr, d["quote"]["day"]),
                        "mode": t("mode." + tr["mode"]),
                        "price": tr["price"],
                        "quantity": tonnes(tr["quantity"]),
                        "taker": t("mkt.taker." + tr["taker_side"]) if tr["taker_side"] else "—",
                    }
                    for tr in d["trades"]
                ],
            )
        if self.orders_table is not None:
            _set_rows(self.orders_table, [_order_row(o) for o in d.get("orders", [])])
        if self.fills_table is not None:
            me = self.actor.entity_id
            _set_rows(
                self.fills_table,
                [
                    {
                        "id": tr["id"],
                        "time": clock_time(tr["at"]),
                        "mode": t("mode." + tr["mode"]),
                        "side": t("side." + ("B" if tr.get("buyer_entity") == me else "S")),
                        "price": tr["price"],
                        "quantity": tonnes(tr["quantity"]),
                        "value": yuan(tr["value"]),
                        "fee": yuan(
                            tr.get("fee_buyer" if tr.get("buyer_entity") == me else "fee_seller")
                        ),
                    }
                    for tr in d.get("fills", [])
                ],
            )
        if self.chart is not None:
            options = self.chart_options()
            if options != self.chart.options:
                self.chart.options.clear()
                self.chart.options.update(options)
                self.chart.update()

    def _show_quote(self, q: dict[str, Any]) -> None:
        labels = self.quote_labels
        colour = tone(q["close"], q["prev_close"])
        last = q["last"] or q["close"]
        labels["last"].set_text(last)
        labels["last"].classes(replace=f"text-h4 text-weight-bold {tone(last, q['prev_close'])}")
        labels["change"].set_text(f"{signed(q['change'])} ({signed(q['change_pct'], '%')})")
        labels["change"].classes(replace=f"text-h6 {colour}")
        for key in ("open", "high", "low", "close", "prev_close"):
            labels[key].set_text(q[key] or "—")
        labels["volume"].set_text(tonnes(sum(int(v) for v in q["volume"].values())))
        labels["value"].set_text(yuan_total(q["value"].values()))

    async def refresh(self) -> None:
        if await self.load():
            self.show()

    # -------------------------------------------------------------- actions

    async def cancel(self, order_id: str) -> None:
        key = self.cancel_keys.setdefault(order_id, new_id())
        result = await call(self.ex.cancel_order, self.actor, key, order_id)
        if result is not None:
            notify_ok(t("ord.cancelled", id=short_id(order_id), status=order_status(result)))
            await self.refresh()

    def open_take(self, row: dict[str, Any]) -> None:
        """摘牌: trade with one listing at its price; the taker chooses how much of it."""

        def fields() -> Submit:
            ui.label(
                t(
                    "mkt.take_terms",
                    side=t("mkt.take." + str(row["side_code"])),
                    price=row["price"],
                    open=row["open"],
                )
            ).classes("text-body1").props('data-testid="take-terms"')
            ui.label(row["id"]).classes("text-caption text-mono")
            qty = quantity_field(int(row["open_qty"]))

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.take,
                    self.actor,
                    key,
                    order_id=str(row["id"]),
                    quantity=whole(qty.value),
                )

            return submit

        form_dialog(
            "mkt.take",
            "form-take",
            fields,
            self.refresh,
            lambda r: t("ord.taken", quantity=tonnes(r["filled"]), price=r["price"]),
        )


def _set_rows(tbl: ui.table, rows: list[dict[str, Any]]) -> None:
    if tbl.rows != rows:
        tbl.update_rows(rows)


def _trade_time(trade: dict[str, Any], day: str) -> str:
    """Today's trades by their time, older ones with their day."""
    return clock_time(trade["at"]) if trade["trading_day"] == day else when(trade["at"])


def _depth_rows(depth: dict[str, Any], prev_close: str) -> list[dict[str, Any]]:
    """Five asks (the fifth best on top) over five bids; empty levels show a dash."""

    def level(side: str, n: int) -> dict[str, Any]:
        levels = depth["asks" if side == "ask" else "bids"]
        if n <= len(levels):
            lv = levels[n - 1]
            return {
                "level": t(f"mkt.{side}_level", n=n),
                "price": lv["price"],
                "quantity": tonnes(lv["quantity"]),
                "orders": lv["orders"],
                "tone": tone(lv["price"], prev_close),
                "ask": side == "ask",
            }
        return {
            "level": t(f"mkt.{side}_level", n=n),
            "price": "—",
            "quantity": "",
            "orders": "",
            "tone": "",
            "ask": side == "ask",
        }

    return [level("ask", n) for n in range(LEVELS, 0, -1)] + [
        level("bid", n) for n in range(1, LEVELS + 1)
    ]


def _order_row(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": o["id"],
        "short": short_id(o["id"]),
        "time": clock_time(o["created_at"]),
        "side": t("side." + o["side"]) + (f" · {t('mkt.take')}" if o["kind"] == "TAKE" else ""),
        "price": o["price"],
        "quantity": tonnes(o["quantity"]),
        "filled": tonnes(o["filled"]),
        "open": tonnes(o["open"]),
        "status": order_status(o),
        "tif": t("tif." + o["tif"]),
        "cancellable": o["status"] == "OPEN" and o["kind"] == "ORDER",
    }


# ------------------------------------------------------------------ block deals


def _other_side(side: str) -> str:
    return "S" if side == "B" else "B"


def _history_line(h: dict[str, Any], names: dict[str, str]) -> str:
    who = names.get(str(h.get("by")), str(h.get("by")))
    if "quote" in h:
        p, q = h["quote"]
        what = t("deal.h_quote", price=yuan(p), quantity=tonnes(int(q)))
    elif "counter" in h:
        p, q = h["counter"]
        what = t("deal.h_counter", price=yuan(p), quantity=tonnes(int(q)))
    elif "confirm" in h:
        what = t("deal.h_confirm", version=h["confirm"])
    else:
        what = t("deal.h_withdraw")
    at = when(h.get("at"))
    return f"{at} · {who} · {what}" if at else f"{who} · {what}"


class DealsView:
    """大宗协议: public quotes anyone may answer, the member's own negotiations with their
    history, and the forms to quote, counter, confirm a version and withdraw."""

    def __init__(self, svc: Services, mk: Market, actor: Actor) -> None:
        self.svc = svc
        self.ex = mk.exchange
        self.mk = mk
        self.actor = actor
        self.deals: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}
        self.instruments: list[dict[str, Any]] = []

    async def load(self) -> None:
        self.deals = await call(self.ex.deals, self.actor) or []

    async def reload(self) -> None:
        await self.load()
        self.render.refresh()

    async def build(self) -> None:
        hint("deal.hint")
        self.instruments = [
            i for i in await call(self.ex.instruments) or [] if "BLOCK" in i["rules"]
        ]
        self.names = await call(members_by_id, self.mk) or {}
        await self.load()
        if traders(self.actor):
            with ui.row().classes("gap-2"):
                ui.button(t("deal.quote"), icon="request_quote", on_click=self.open_quote).props(
                    'unelevated no-caps color=primary data-testid="open-quote"'
                )
        self.render()

    @ui.refreshable_method
    def render(self) -> None:
        me = self.actor.entity_id
        mine = [
            d for d in self.deals if me is not None and me in (d["initiator"], d["counterparty"])
        ]
        public = [d for d in self.deals if d["status"] == "QUOTED" and d not in mine]
        if not self.actor.is_operator:
            with ui.card().classes("w-full"):
                card_title("deal.public")
                tbl = table(
                    [
                        ("instrument", "mkt.code"),
                        ("side", "deal.their_side"),
                        ("price", "mkt.price"),
                        ("quantity", "col.quantity"),
                        ("value", "mkt.value"),
                        ("initiator", "deal.initiator"),
                        ("version", "deal.version"),
                        ("time", "col.time"),
                        ("actions", "common.actions"),
                    ],
                    [self._row(d) for d in public],
                    testid="public-quotes",
                )
                tbl.props(f'no-data-label="{t("deal.no_public")}"')
                if traders(self.actor):
                    button_cell(
                        tbl,
                        "actions",
                        [
                            ("accept", t("deal.accept"), "primary"),
                            ("counter", t("deal.counter"), "secondary"),
                        ],
                    )
                    tbl.on("accept", lambda e: self.open_confirm(self._deal(e.args["id"])))
                    tbl.on("counter", lambda e: self.open_counter(self._deal(e.args["id"])))
        with ui.card().classes("w-full"):
            card_title("deal.all" if self.actor.is_operator else "deal.mine")
            if self.actor.is_operator:
                columns = [
                    ("instrument", "mkt.code"),
                    ("initiator", "deal.initiator"),
                    ("side", "deal.their_side"),
                    ("counterparty", "deal.counterparty"),
                ]
            else:
                columns = [
                    ("instrument", "mkt.code"),
                    ("role", "deal.role"),
                    ("my_side", "deal.my_side"),
                    ("other", "deal.other"),
                ]
            columns += [
                ("price", "mkt.price"),
                ("quantity", "col.quantity"),
                ("version", "deal.version"),
                ("status", "col.status"),
                ("confirmed", "deal.confirmed"),
                ("time", "deal.updated"),
                ("actions", "common.actions"),
            ]
            rows = [self._row(d) for d in (self.deals if self.actor.is_operator else mine)]
            tbl = table(columns, rows, testid="my-deals")
            tbl.props("wrap-cells")
            buttons = [("history", t("deal.history"), "grey-7")]
            if traders(self.actor):
                buttons = [
                    ("confirm", t("deal.confirm"), "primary"),
                    ("counter", t("deal.counter"), "secondary"),
                    ("withdraw", t("deal.withdraw"), "negative"),
                    *buttons,
                ]
            tbl.add_slot(
                "body-cell-actions",
                '<q-td :props="props" class="text-no-wrap">'
                + "".join(
                    f'<q-btn dense unelevated no-caps class="q-mr-xs q-px-sm" color="{color}" '
                    f'label="{html.escape(label)}" data-testid="{event}-btn" '
                    + ("" if event == "history" else 'v-if="props.row.live" ')
                    + f"@click=\"() => $parent.$emit('{event}', props.row)\" />"
                    for event, label, color in buttons
                )
                + "</q-td>",
            )
            tbl.on("confirm", lambda e: self.open_confirm(self._deal(e.args["id"])))
            tbl.on("counter", lambda e: self.open_counter(self._deal(e.args["id"])))
            tbl.on("withdraw", lambda e: self.open_withdraw(self._deal(e.args["id"])))
            tbl.on("history", lambda e: self.show_history(self._deal(e.args["id"])))

    def _deal(self, deal_id: object) -> dict[str, Any]:
        return next(d for d in self.deals if d["id"] == deal_id)

    def _name(self, entity_id: str | None) -> str:
        if not entity_id:
            return "—"
        return self.names.get(entity_id, short_id(entity_id))

    def _row(self, d: dict[str, Any]) -> dict[str, Any]:
        me = self.actor.entity_id
        initiating = d["initiator"] == me
        other = d["counterparty"] if initiating else d["initiator"]
        return {
            "id": d["id"],
            "instrument": d["instrument"],
            "role": t("deal.role_initiator" if initiating else "deal.role_counterparty"),
            "side": t("side." + d["side"]),
            "my_side": t("side." + (d["side"] if initiating else _other_side(d["side"]))),
            "other": self._name(other),
            "initiator": self._name(d["initiator"]),
            "counterparty": self._name(d["counterparty"]),
            "price": d["price"],
            "quantity": tonnes(d["quantity"]),
            "value": yuan_total([d["price"]], int(d["quantity"])),
            "version": d["version"],
            "status": t("dst." + d["status"]),
            "confirmed": "、".join(
                self._name(c)
                if self.actor.is_operator
                else t("deal.me" if c == me else "deal.them")
                for c in d["confirmed"]
            ),
            "time": when(d["updated_at"]),
            "live": d["status"] in ("QUOTED", "NEGOTIATING"),
        }

    def _terms(self, d: dict[str, Any]) -> None:
        ui.label(
            t(
                "deal.terms",
                instrument=d["instrument"],
                side=t("side." + d["side"]),
                price=d["price"],
                quantity=tonnes(d["quantity"]),
                version=d["version"],
            )
        ).classes("text-body1").props('data-testid="deal-terms"')

    def _rules(self, code: str) -> None:
        inst = next((i for i in self.instruments if i["code"] == code), None)
        if inst is not None:
            show_rules(inst, "BLOCK", "deal-rules")

    def open_quote(self) -> None:
        codes = [i["code"] for i in self.instruments]

        def fields() -> Submit:
            instrument = (
                ui.select(codes, value=codes[0] if codes else None, label=t("mkt.code"))
                .props('outlined dense data-testid="f-instrument"')
                .classes("w-full")
            )
            side = side_toggle("S")
            price = text_field("mkt.price", "f-price")
            qty = quantity_field()
            rules_box = ui.column().classes("w-full")

            def show() -> None:
                rules_box.clear()
                with rules_box:
                    self._rules(str(instrument.value))

            instrument.on_value_change(show)
            show()

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.quote,
                    self.actor,
                    key,
                    instrument=str(instrument.value or ""),
                    side=str(side.value),
                    price=price_text(price),
                    quantity=whole(qty.value),
                )

            return submit

        form_dialog(
            "deal.quote",
            "form-quote",
            fields,
            self.reload,
            lambda r: t("deal.quoted", id=short_id(r["id"])),
        )

    def open_counter(self, d: dict[str, Any]) -> None:
        def fields() -> Submit:
            self._terms(d)
            price = text_field("mkt.price", "f-price", str(d["price"]))
            qty = quantity_field(int(d["quantity"]))
            self._rules(d["instrument"])

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.counter,
                    self.actor,
                    key,
                    d["id"],
                    price=price_text(price),
                    quantity=whole(qty.value),
                )

            return submit

        form_dialog(
            "deal.counter",
            "form-counter",
            fields,
            self.reload,
            lambda r: t("deal.countered", id=short_id(r["id"]), version=r["version"]),
        )

    def open_confirm(self, d: dict[str, Any]) -> None:
        def fields() -> Submit:
            self._terms(d)
            hint("deal.confirm_hint")
            version = (
                ui.number(t("deal.version"), value=d["version"], min=1, step=1, format="%d")
                .props('outlined dense data-testid="f-version"')
                .classes("w-full")
            )

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.confirm, self.actor, key, d["id"], version=whole(version.value)
                )

            return submit

        form_dialog(
            "deal.confirm",
            "form-confirm",
            fields,
            self.reload,
            lambda r: t("deal.confirmed_msg", id=short_id(r["id"]), status=t("dst." + r["status"])),
        )

    def open_withdraw(self, d: dict[str, Any]) -> None:
        def fields() -> Submit:
            self._terms(d)
            hint("deal.withdraw_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(self.ex.withdraw, self.actor, key, d["id"])

            return submit

        form_dialog(
            "deal.withdraw",
            "form-withdraw",
            fields,
            self.reload,
            lambda r: t("deal.withdrawn", id=short_id(r["id"])),
        )

    def show_history(self, d: dict[str, Any]) -> None:
        with (
            ui.dialog() as dialog,
            ui.card().classes("w-[36rem] max-w-full").props('data-testid="deal-history"'),
        ):
            ui.label(t("deal.history")).classes("text-h6")
            self._terms(d)
            ui.badge(t("dst." + d["status"]), color="primary")
            with ui.column().classes("w-full gap-1"):
                for h in d["history"]:
                    ui.label(_history_line(h, self.names)).classes("text-body2")
            with ui.row().classes("w-full justify-end"):
                ui.button(t("common.close"), on_click=dialog.close).props("flat no-caps")
        dialog.on("hide", dialog.delete)
        dialog.open()


# ------------------------------------------------------------------ one-sided auctions


def auction_state(a: dict[str, Any], now: str) -> str:
    """Announced, taking bids, closed awaiting allocation, or done (results published)."""
    if a["status"] == "DONE":
        return "DONE"
    if now < a["opens_at"]:
        return "PENDING"
    if now < a["closes_at"]:
        return "BIDDING"
    return "CLOSING"


def local_moment(day: str, hhmm: str) -> str:
    """A local (Asia/Shanghai) day and time as the service's UTC text; what does not parse goes
    to the service as typed, and the service says what is wrong with it."""
    try:
        d = date.fromisoformat(day.strip())
        h, m = (int(x) for x in hhmm.strip().split(":"))
        return iso(datetime(d.year, d.month, d.day, h, m, tzinfo=SHANGHAI))
    except ValueError:
        return f"{day.strip()}T{hhmm.strip()}"


class AuctionsView:
    """单向竞价: every auction with its state, the announce and bid forms, and the published
    results (each bid's price, size and award) once an auction is done."""

    def __init__(self, svc: Services, mk: Market, actor: Actor) -> None:
        self.svc = svc
        self.ex = mk.exchange
        self.mk = mk
        self.actor = actor
        self.auctions: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}
        self.instruments: list[dict[str, Any]] = []

    async def load(self) -> None:
        self.auctions = await call(self.ex.auctions, self.actor) or []

    async def reload(self) -> None:
        await self.load()
        self.render.refresh()

    async def build(self) -> None:
        hint("auc.hint")
        self.instruments = [
            i for i in await call(self.ex.instruments) or [] if "AUCTION" in i["rules"]
        ]
        self.names = await call(members_by_id, self.mk) or {}
        await self.load()
        if traders(self.actor):
            ui.button(t("auc.announce"), icon="campaign", on_click=self.open_announce).props(
                'unelevated no-caps color=primary data-testid="open-announce"'
            )
        self.render()

    @ui.refreshable_method
    def render(self) -> None:
        now = iso(self.svc.db.clock())
        me = self.actor.entity_id
        rows = []
        for a in self.auctions:
            state = auction_state(a, now)
            rows.append(
                {
                    "id": a["id"],
                    "instrument": a["instrument"],
                    "announcer": self.names.get(a["announcer"], short_id(a["announcer"])),
                    "side": t("auc.side." + a["side"]),
                    "quantity": tonnes(a["quantity"]),
                    "reserve": a["reserve_price"],
                    "window": f"{when(a['opens_at'])} – {when(a['closes_at'])[11:]}",
                    "state": t("ast." + state),
                    "bids": a["bids"],
                    "awarded": tonnes(a["awarded"]) if state == "DONE" else "",
                    "my_bids": "; ".join(
                        f"{b['price']} × {tonnes(b['quantity'])}" for b in a.get("my_bids", [])
                    ),
                    "biddable": state == "BIDDING" and traders(self.actor) and a["announcer"] != me,
                }
            )
        with ui.card().classes("w-full"):
            card_title("auc.list")
            tbl = table(
                [
                    ("instrument", "mkt.code"),
                    ("announcer", "auc.announcer"),
                    ("side", "auc.kind"),
                    ("quantity", "col.quantity"),
                    ("reserve", "auc.reserve"),
                    ("window", "auc.window"),
                    ("state", "col.status"),
                    ("bids", "auc.bids"),
                    ("awarded", "auc.awarded"),
                    ("my_bids", "auc.my_bids"),
                    ("actions", "common.actions"),
                ],
                rows,
                testid="auctions-table",
            )
            tbl.props("wrap-cells")
            button_cell(tbl, "actions", [("bid", t("auc.bid"), "primary")], show_if="biddable")
            tbl.on("bid", lambda e: self.open_bid(self._auction(e.args["id"])))
        done = [a for a in self.auctions if a["status"] == "DONE"]
        with ui.card().classes("w-full").props('data-testid="auction-results"'):
            card_title("auc.results")
            if not done:
                hint("auc.no_results")
            for a in done[:10]:
                self._results(a)

    def _results(self, a: dict[str, Any]) -> None:
        ui.label(
            t(
                "auc.result_title",
                instrument=a["instrument"],
                side=t("auc.side." + a["side"]),
                quantity=tonnes(a["quantity"]),
                awarded=tonnes(a["awarded"]),
                reserve=a["reserve_price"],
                day=when(a["closes_at"])[:10],
            )
        ).classes("text-subtitle2 q-mt-sm")
        tbl = table(
            [
                ("seq", "auc.seq"),
                ("price", "mkt.price"),
                ("quantity", "col.quantity"),
                ("awarded", "auc.awarded"),
                ("mine", "auc.mine"),
            ],
            [
                {
                    "seq": r["seq"],
                    "price": r["price"],
                    "quantity": tonnes(r["quantity"]),
                    "awarded": tonnes(r["awarded"]),
                    "mine": t("common.yes") if r["mine"] else "",
                }
                for r in a["results"]
            ],
            row_key="seq",
            testid="result-table",
        )
        tbl.props('separator="cell"')

    def _auction(self, auction_id: object) -> dict[str, Any]:
        return next(a for a in self.auctions if a["id"] == auction_id)

    def open_announce(self) -> None:
        codes = [i["code"] for i in self.instruments]
        day = today(self.svc)

        def fields() -> Submit:
            instrument = (
                ui.select(codes, value=codes[0] if codes else None, label=t("mkt.code"))
                .props('outlined dense data-testid="f-instrument"')
                .classes("w-full")
            )
            side = side_toggle("S", ("auc.side.B", "auc.side.S"))
            qty = quantity_field()
            reserve = text_field("auc.reserve", "f-reserve")
            on = text_field("auc.day", "f-day", day).props("type=date")
            with ui.row().classes("w-full no-wrap"):
                opens = text_field("auc.opens", "f-opens", "10:00").props("type=time")
                closes = text_field("auc.closes", "f-closes", "11:00").props("type=time")
            hint("auc.announce_hint")

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.announce,
                    self.actor,
                    key,
                    instrument=str(instrument.value or ""),
                    side=str(side.value),
                    quantity=whole(qty.value),
                    reserve_price=price_text(reserve),
                    opens_at=local_moment(str(on.value or ""), str(opens.value or "")),
                    closes_at=local_moment(str(on.value or ""), str(closes.value or "")),
                )

            return submit

        form_dialog(
            "auc.announce",
            "form-announce",
            fields,
            self.reload,
            lambda r: t("auc.announced", id=short_id(r["id"])),
        )

    def open_bid(self, a: dict[str, Any]) -> None:
        def fields() -> Submit:
            ui.label(
                t(
                    "auc.bid_terms",
                    instrument=a["instrument"],
                    side=t("auc.side." + a["side"]),
                    quantity=tonnes(a["quantity"]),
                    reserve=a["reserve_price"],
                )
            ).classes("text-body1").props('data-testid="bid-terms"')
            hint("auc.bid_hint." + a["side"])
            price = text_field("mkt.price", "f-price", str(a["reserve_price"]))
            qty = quantity_field()

            async def submit(key: str) -> dict[str, Any] | None:
                return await call(
                    self.ex.bid,
                    self.actor,
                    key,
                    a["id"],
                    price=price_text(price),
                    quantity=whole(qty.value),
                )

            return submit

        form_dialog(
            "auc.bid",
            "form-bid",
            fields,
            self.reload,
            lambda r: t("auc.bid_placed", price=r["price"], quantity=tonnes(r["quantity"])),
        )
