"""Exchange REST endpoints and the live market-data WebSocket: HTTP to ExchangeService, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from pydantic import Field

from carbonhub.core.api import (
    ActorDep,
    KeyDep,
    Limit,
    OptionalActorDep,
    Strict,
    caller_and_key,
    lean_body,
    lean_post,
)
from carbonhub.core.timefmt import parse_day
from carbonhub.exchange.service import ExchangeService

router = APIRouter(prefix="/api/v1/exchange", tags=["exchange"])

Price = Field(description="yuan per tonne on the 0.01 tick", examples=["80.25"], max_length=16)
Quantity = Field(description="whole tonnes, lot 1 t")
Day = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-23"])]


def svc(request: Request) -> ExchangeService:
    exchange: ExchangeService = request.app.state.exchange
    return exchange


class InstrumentBody(Strict):
    code: str = Field(examples=["CEA2024"], max_length=32)
    unit_class: str = Field(examples=["CEA-2024"], max_length=40)
    name: str = Field(min_length=1, max_length=200)
    reference_price: str = Field(description="the first day's previous close, yuan", max_length=16)
    preset: Literal["national", "hubei"] | None = "national"
    rules: dict[str, Any] | None = Field(default=None, description="per mode; overrides preset")


class StatusBody(Strict):
    suspended: bool
    reason: str = Field(default="", max_length=500)


class HolidayBody(Strict):
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    name: str = Field(min_length=1, max_length=100)


class MemberBody(Strict):
    entity_id: str = Field(max_length=36)
    account_id: str = Field(max_length=20)


class MemberStatusBody(Strict):
    suspended: bool


class OrderBody(Strict):
    instrument: str = Field(max_length=32)
    mode: Literal["LISTING", "CONTINUOUS"]
    side: Literal["B", "S"]
    price: str = Price
    quantity: int = Quantity
    tif: Literal["LIMIT", "IOC", "FOK"] = "LIMIT"


class TakeBody(Strict):
    order_id: str = Field(max_length=36, description="a listing among the best five levels")
    quantity: int = Quantity


class AmendBody(Strict):
    quantity: int = Field(description="the new, lower open quantity")


class QuoteBody(Strict):
    instrument: str = Field(max_length=32)
    side: Literal["B", "S"]
    price: str = Price
    quantity: int = Quantity


class CounterBody(Strict):
    price: str = Price
    quantity: int = Quantity


class ConfirmBody(Strict):
    version: int = Field(ge=1, le=1_000_000, description="the terms version being confirmed")


class AuctionBody(Strict):
    instrument: str = Field(max_length=32)
    side: Literal["B", "S"] = "S"
    quantity: int = Quantity
    reserve_price: str = Price
    opens_at: str = Field(description="UTC, 2026-11-23T02:00:00.000000Z", max_length=32)
    closes_at: str = Field(max_length=32)


class BidBody(Strict):
    price: str = Price
    quantity: int = Quantity


# ---------------------------------------------------------------- instruments, calendar, members


@router.get("/instruments", summary="Instruments with rules, bands and previous close (public)")
def instruments(request: Request) -> list[dict[str, Any]]:
    return svc(request).instruments()


@router.post("/instruments", status_code=201, summary="List an instrument (operator)")
def create_instrument(
    body: InstrumentBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).create_instrument(actor, key, **body.model_dump())


@router.get("/instruments/{code}", summary="One instrument (public)")
def instrument(code: str, request: Request) -> dict[str, Any]:
    return svc(request).instrument(code)


@router.post("/instruments/{code}/status", summary="Suspend or resume an instrument (operator)")
def instrument_status(
    code: str, body: StatusBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).set_instrument_status(
        actor, key, code, suspended=body.suspended, reason=body.reason
    )


@router.get("/calendar", summary="Trading days and holidays (public)")
def calendar(
    request: Request,
    start: Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")],
    days: Annotated[int, Query(ge=1, le=400)] = 31,
) -> list[dict[str, Any]]:
    return svc(request).calendar(parse_day(start, "start"), days)


@router.post("/holidays", status_code=201, summary="Announce a closed day (operator)")
def add_holiday(
    body: HolidayBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).add_holiday(actor, key, day=body.day, name=body.name)


@router.get("/members", summary="Exchange members (public)")
def members(request: Request) -> list[dict[str, Any]]:
    return svc(request).members()


@router.post("/members", status_code=201, summary="Admit a member (operator)")
def admit_member(
    body: MemberBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).admit_member(
        actor, key, entity_id=body.entity_id, account_id=body.account_id
    )


@router.post("/members/{entity_id}/status", summary="Suspend or resume a member (operator)")
def member_status(
    entity_id: str, body: MemberStatusBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).set_member_status(actor, key, entity_id, suspended=body.suspended)


@router.get("/me", summary="My membership")
def my_membership(actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).member_of(actor)


# ---------------------------------------------------------------- orders


# Order commands are async and lean (core.api): they wait on the exchange's writer without
# holding a thread, and skip FastAPI's routing, dependency solving and response serialisation.


async def _order_command(
    request: Request, name: str, body: type[Strict] | None, status: int = 200, **fields: Any
) -> Response:
    """A lean order endpoint: caller, key and body checked as ActorDep, KeyDep and FastAPI
    would, then the writer's answer as it stands."""
    actor, key = await caller_and_key(request)
    data = dict(fields)
    if body is not None:
        data.update((await lean_body(request, body)).model_dump())
    result = await svc(request).submit_async(actor, key, name, data)
    # orjson: 0.6 µs for an order's answer, where JSONResponse's json.dumps took 8.7
    return Response(orjson.dumps(result), status_code=status, media_type="application/json")


@lean_post(
    router, "/orders", OrderBody, status_code=201, summary="Place an order (listing or continuous)"
)
async def place_order(request: Request) -> Response:
    return await _order_command(request, "place_order", OrderBody, 201)


@router.get("/orders", summary="My orders (operators: all)")
def orders(
    actor: ActorDep,
    request: Request,
    instrument: str | None = None,
    status: Literal["OPEN", "FILLED", "CANCELLED", "EXPIRED"] | None = None,
    before: str | None = Query(default=None, max_length=32),
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return svc(request).orders(
        actor, instrument=instrument, status=status, limit=limit, before=before
    )


@router.get("/orders/{order_id}", summary="One order with its trades")
def order(order_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).order(actor, order_id)


@lean_post(router, "/orders/{order_id}/cancel", summary="Cancel an open order")
async def cancel_order(order_id: str, request: Request) -> Response:
    return await _order_command(request, "cancel_order", None, order_id=order_id)


@lean_post(router, "/orders/{order_id}/amend", AmendBody, summary="Lower an open order's quantity")
async def amend_order(order_id: str, request: Request) -> Response:
    return await _order_command(request, "amend_order", AmendBody, order_id=order_id)


@lean_post(
    router, "/takes", TakeBody, status_code=201, summary="Take a listing (摘牌) at its price"
)
async def take(request: Request) -> Response:
    return await _order_command(request, "take", TakeBody, 201)


# ---------------------------------------------------------------- block deals


@router.post("/deals", status_code=201, summary="Quote a block deal (大宗协议)")
def quote(body: QuoteBody, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).quote(actor, key, **body.model_dump())


@router.get("/deals", summary="Open quotes, and my negotiations")
def deals(
    actor: ActorDep,
    request: Request,
    instrument: str | None = None,
    status: Literal["QUOTED", "NEGOTIATING", "DONE", "WITHDRAWN", "EXPIRED"] | None = None,
) -> list[dict[str, Any]]:
    return svc(request).deals(actor, instrument=instrument, status=status)


@router.get("/deals/{deal_id}", summary="One block deal with its history")
def deal(deal_id: str, actor: ActorDep, request: Request) -> dict[str, Any]:
    return svc(request).deal(actor, deal_id)


@router.post("/deals/{deal_id}/counter", summary="Counter-quote new terms")
def counter(
    deal_id: str, body: CounterBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).counter(actor, key, deal_id, price=body.price, quantity=body.quantity)


@router.post("/deals/{deal_id}/confirm", summary="Confirm the current terms")
def confirm(
    deal_id: str, body: ConfirmBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).confirm(actor, key, deal_id, version=body.version)


@router.post("/deals/{deal_id}/withdraw", summary="Withdraw from a block deal")
def withdraw(deal_id: str, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).withdraw(actor, key, deal_id)


# ---------------------------------------------------------------- auctions


@router.post("/auctions", status_code=201, summary="Announce a one-sided auction (单向竞价)")
def announce(body: AuctionBody, actor: ActorDep, key: KeyDep, request: Request) -> dict[str, Any]:
    return svc(request).announce(actor, key, **body.model_dump())


@router.get("/auctions", summary="Auctions; results once done")
def auctions(
    actor: OptionalActorDep, request: Request, instrument: str | None = None
) -> list[dict[str, Any]]:
    return svc(request).auctions(actor, instrument=instrument)


@router.get("/auctions/{auction_id}", summary="One auction")
def auction(auction_id: str, actor: OptionalActorDep, request: Request) -> dict[str, Any]:
    return svc(request).auction(actor, auction_id)


@router.post("/auctions/{auction_id}/bids", status_code=201, summary="Bid in an auction")
def bid(
    auction_id: str, body: BidBody, actor: ActorDep, key: KeyDep, request: Request
) -> dict[str, Any]:
    return svc(request).bid(actor, key, auction_id, price=body.price, quantity=body.quantity)


# ---------------------------------------------------------------- market data (public)


@router.get("/market/{instrument}/depth", summary="Best five levels of a book")
def depth(
    instrument: str,
    request: Request,
    mode: Literal["LISTING", "CONTINUOUS"] = "LISTING",
) -> dict[str, Any]:
    return svc(request).depth(instrument, mode)


@router.get("/market/{instrument}/listings", summary="Listings a taker may choose from")
def listings(
    instrument: str, request: Request, side: Literal["B", "S"] = "S"
) -> list[dict[str, Any]]:
    return svc(request).listings(instrument, side)


@router.get("/market/{instrument}/trades", summary="Trades, newest first")
def trades(
    instrument: str,
    actor: OptionalActorDep,
    request: Request,
    day: Day = None,
    before: str | None = Query(default=None, max_length=32),
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return svc(request).trades(actor, instrument=instrument, day=day, before=before, limit=limit)


@router.get("/market/{instrument}/bars", summary="OHLCV bars: 1m for a day, or 1d")
def bars(
    instrument: str,
    request: Request,
    interval: Literal["1m", "1d"] = "1d",
    day: Day = None,
    limit: Limit = 400,
) -> list[dict[str, Any]]:
    return svc(request).bars(instrument, interval=interval, day=day, limit=limit)


@router.get("/market/{instrument}/quote", summary="The day so far: open, high, low, last, close")
def quote_summary(instrument: str, request: Request, day: Day = None) -> dict[str, Any]:
    return svc(request).quote_summary(instrument, day)


@router.get("/index", summary="The daily composite price index over vintages")
def index(request: Request, limit: Limit = 400) -> list[dict[str, Any]]:
    return svc(request).index(limit)


@router.get("/statistics", summary="Volume and value per mode: day, year, cumulative")
def statistics(request: Request, day: Day = None) -> dict[str, Any]:
    return svc(request).statistics(day)


@router.get("/trades", summary="My trades (operators: all)")
def my_trades(
    actor: ActorDep,
    request: Request,
    instrument: str | None = None,
    day: Day = None,
    before: str | None = Query(default=None, max_length=32),
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return svc(request).trades(
        actor,
        instrument=instrument,
        day=day,
        mine=not actor.is_operator,
        before=before,
        limit=limit,
    )


@router.websocket("/feed")
async def feed(websocket: WebSocket, instrument: str | None = None) -> None:
    """Live trades and depth after each commit; a depth snapshot of every book on connect."""
    exchange: ExchangeService = websocket.app.state.exchange
    await websocket.accept()
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)

    def deliver(message: dict[str, Any]) -> None:
        if instrument is None or message.get("instrument") == instrument:
            with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
                loop.call_soon_threadsafe(_offer, inbox, message)

    token = exchange.feed.subscribe(deliver)
    try:
        for inst in await asyncio.to_thread(exchange.instruments):
            if instrument is not None and inst["code"] != instrument:
                continue
            for mode in inst["rules"]:
                if mode in ("LISTING", "CONTINUOUS"):
                    snapshot = await asyncio.to_thread(exchange.depth, inst["code"], mode)
                    await websocket.send_json({"type": "depth", **snapshot})
        while True:
            await websocket.send_json(await inbox.get())
    except WebSocketDisconnect:
        pass
    finally:
        exchange.feed.unsubscribe(token)


def _offer(inbox: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    """A slow client loses the oldest messages rather than stalling the writer."""
    if inbox.full():
        inbox.get_nowait()
    inbox.put_nowait(message)
